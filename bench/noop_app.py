"""The no-model baseline of ``bench/load.py``: the same FastAPI and uvicorn stack, no model, no store.

``POST /v1/triage`` reads the same body into the service's own request model (``ComplaintIn``,
so validation costs the same), checks the ``X-API-Key`` header and answers a fixed JSON of the
size of a real triage result. Whatever the service does above this is the model, the router and
the store: ``bench/load.py`` prints the service's requests/s as a share of this endpoint's.

    uvicorn --app-dir bench noop_app:app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Header, HTTPException, Response

from triage.schemas import ComplaintIn

KEY = os.environ.get("BENCH_KEY", "bench-intake-key")
FIXED = (b'{"case_id":1,"external_id":null,"created":true,"topics":["\xe0\xb8\x96\xe0\xb8\x99\xe0\xb8\x99"],'
         b'"topic_scores":{"\xe0\xb8\x96\xe0\xb8\x99\xe0\xb8\x99":0.9},"urgency":"medium",'
         b'"urgency_scores":{"high":0.1,"medium":0.6,"low":0.3},"urgency_cues":[],"agencies":[],'
         b'"agency_scores":{},"agency_candidates":[],"agency_explanation":{},"needs_review":false,'
         b'"review_reasons":[],"explanation":[],"model_version":"none","status":"new"}')

app = FastAPI()


@app.post("/v1/triage", status_code=201)
async def triage(body: ComplaintIn, x_api_key: str | None = Header(None)) -> Response:
    if x_api_key != KEY:
        raise HTTPException(401, "missing or unknown API key")
    return Response(FIXED, status_code=201, media_type="application/json")


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
