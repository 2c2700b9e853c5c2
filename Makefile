# agentos: `make demo` and `make test` work on a fresh machine; everything they need is
# installed here (a venv in .venv, system packages through scripts/setup-system.sh).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LOCAL  := $(VENV)/.installed-local
EMBED  := $(VENV)/.installed-embed
# The embedded model's runtime is built from source: a portable CPU build (the native one
# crashes on some CPUs), with --no-cache-dir so a natively built wheel is never reused.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: demo test bench system browser clean typecheck

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[all,dev]'
	touch $(STAMP)

# Built once (several minutes): the stamp is order-only, so a pyproject edit does not rebuild it.
$(LOCAL): | $(STAMP)
	command -v c++ >/dev/null 2>&1 || bash scripts/setup-system.sh
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) install -q --no-cache-dir 'llama-cpp-python[server]>=0.3'
	$(PIP) install -q -e '.[local]'
	touch $(LOCAL)

# Sentence embeddings (VectorRecaller): torch 2.13.0 first, so the CPU build is the one used.
$(EMBED): | $(STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[embed]'
	touch $(EMBED)

system:
	bash scripts/setup-system.sh

# The dashboard's browser tests: Debian's chromium, else the one in npm's @sparticuz/chromium.
browser: system | $(STAMP)
	bash scripts/setup-browser.sh $(VENV)

demo: $(STAMP) $(LOCAL)
	$(VENV)/bin/agentctl demo

test: $(STAMP) $(LOCAL) $(EMBED) system browser
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

typecheck: $(STAMP)
	$(PY) -m mypy src/agentos

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist
