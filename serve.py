"""Serve triage over HTTP: python serve.py --host 127.0.0.1 --port 8000 (settings: TRIAGE_* variables)."""

import argparse
import logging
import os
import sys

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--dev", action="store_true", help="serve without API keys (every caller is admin)")
    a = ap.parse_args()
    if a.dev:
        os.environ["TRIAGE_DEV_MODE"] = "1"

    import uvicorn
    from pydantic import ValidationError

    from triage import registry
    from triage.api import create_app
    from triage.config import get_settings
    from triage.errors import ConfigError, ModelError

    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.exit(f"serve.py: bad settings:\n{exc}")
    try:
        registry.read_metadata(settings.model_dir)
    except ModelError as exc:
        sys.exit(f"serve.py: {exc}\nTrain the default model with: make train "
                 f"(or python train.py --config configs/traffy.toml --data ../shared/data --out {settings.models_dir})")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except ConfigError as exc:
        sys.exit(f"serve.py: {exc}")
    uvicorn.run(app, host=a.host, port=a.port, log_level=settings.log_level, access_log=False)
