# agentos: `make demo` and `make test` work on a fresh machine; everything they need is
# installed here (a venv in .venv, system packages through scripts/setup-system.sh).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test bench system clean typecheck

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[all,dev]'
	touch $(STAMP)

system:
	bash scripts/setup-system.sh

demo: $(STAMP)
	$(VENV)/bin/agentctl demo

test: $(STAMP) system
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

typecheck: $(STAMP)
	$(PY) -m mypy src/agentos

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist
