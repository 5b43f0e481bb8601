# Two commands do all the set-up on a fresh clone: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=

.PHONY: test demo install clean

install: $(STAMP)

# Reinstalls only when pyproject.toml changes. torch==2.13.0 is pinned first:
# it is a CPU build on disk, where a bare `torch` pulls gigabytes of CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[tensorflow,jax,torch,sklearn,plot,dev]"
	touch $(STAMP)

# One pytest process per backend: KERAS_BACKEND is read once, at import.
test: $(STAMP)
	@set -e; for b in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$b ==="; \
		KERAS_BACKEND=$$b $(PY) -m pytest -q $(PYTEST_ARGS); \
	done

demo: $(STAMP)
	KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} $(PY) examples/quickstart.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
