DATA ?= ../shared/data
VENV ?= .venv
PY = $(VENV)/bin/python

all: train

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'

install: $(PY)

train: $(PY)
	test -e models/current || $(PY) train.py --config configs/traffy.toml --data $(DATA) --out models

test: $(PY)
	$(PY) -m pytest -q

.PHONY: all install train test
