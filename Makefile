DATA ?= ../shared/data
VENV ?= .venv
PY = $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

# From a clean clone to a running service: install, train the default model if none, serve.
all: install train serve

# Reinstalled whenever pyproject.toml changes (a checkout that pulled new dependencies gets them).
STAMP = $(VENV)/.installed-stamp
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

train: $(STAMP)
	test -e models/current || $(PY) train.py --config configs/traffy.toml --data $(DATA) --out models

# Without TRIAGE_API_KEYS this serves in development mode (no keys; it says so loudly at start).
serve: $(STAMP)
	$(PY) serve.py --host $(HOST) --port $(PORT) $(if $(TRIAGE_API_KEYS),,--dev)

bench: $(STAMP)
	$(PY) bench/load.py

# Lint, type-check, then every test tier (what .ci/run runs). `make unit` runs the fast tier only.
test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy triage

unit: $(STAMP)
	$(PY) -m pytest -q -m unit

.PHONY: all install train serve bench test lint unit
