"""Serve triage over HTTP: python serve.py --host 127.0.0.1 --port 8000 (settings: TRIAGE_* variables)."""

import argparse
import logging
import os
import sys

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=None, help="server processes (default TRIAGE_WORKERS, else one per available core, at most 4)")
    ap.add_argument("--dev", action="store_true", help="serve without API keys (every caller is admin)")
    a = ap.parse_args()
    if a.dev:
        os.environ["TRIAGE_DEV_MODE"] = "1"
    if a.workers is not None:
        os.environ["TRIAGE_WORKERS"] = str(a.workers)

    import uvicorn
    from pydantic import ValidationError

    from triage import registry
    from triage.app import create_app
    from triage.config import get_settings
    from triage.errors import ConfigError, ModelError, exit_code
    from triage.httpserver import http_options

    try:
        settings = get_settings()
        settings.check_serving()
    except (ValidationError, ConfigError) as exc:
        print(f"serve.py: bad settings: {exc}", file=sys.stderr)
        sys.exit(exit_code(ConfigError(str(exc))))
    try:
        registry.read_metadata(settings.model_dir)
    except ModelError as exc:
        print(f"serve.py: {exc}\nTrain the default model with: make train "
              f"(or python train.py --config configs/traffy.toml --data ../shared/data --out {settings.models_dir})",
              file=sys.stderr)
        sys.exit(exit_code(exc))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = {"host": a.host, "port": a.port, "log_level": settings.log_level, "access_log": False,
               **http_options(settings)}
    if settings.workers > 1:
        # each worker builds its app from the environment; a new one (SIGHUP replaces them one at a time)
        # loads and warms the model before it is ready, 3-10 s, longer than uvicorn's default 5 s wait
        uvicorn.run("triage.app:app_from_env", factory=True, workers=settings.workers, timeout_worker_healthcheck=120,
                    **options)
    else:
        uvicorn.run(create_app(settings), **options)
