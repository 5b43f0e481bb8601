# Two commands do all the set-up on a fresh clone: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=

.PHONY: test lint demo install clean

install: $(STAMP)

# Reinstalls only when pyproject.toml changes. torch==2.13.0 is pinned first:
# it is a CPU build on disk, where a bare `torch` pulls gigabytes of CUDA.
# The package's own dependencies (`-e .`) bring simplejpeg, the JPEG decoder.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[tensorflow,jax,torch,sklearn,plot,keras-hub,export,dev]"
	touch $(STAMP)

# One pytest process per backend (KERAS_BACKEND is read once, at import),
# run side by side to use both cores; each log is printed when all are done.
# Three processes share two cores: one compute thread each, so no thread
# pool spins on a core another process needs. JAX's default partitionable
# threefry takes seconds to compile for each new shape on CPU, and every
# Keras initializer is one: the classic threefry halves the JAX process.
# XLA compiles a program per op and shape (eager steps, initializers),
# hundreds a process, on arrays too small to gain from optimising: the
# classic emitters at -O0 compile them twice as fast (the JAX process went
# from 440 s to 288 s alone on a core).
THREADS := OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
	XLA_FLAGS="--xla_cpu_multi_thread_eigen=false --xla_cpu_use_fusion_emitters=false \
	--xla_backend_optimization_level=0" JAX_THREEFRY_PARTITIONABLE=0
test: $(STAMP)
	@rm -rf .test-logs && mkdir -p .test-logs
	@for b in $(BACKENDS); do \
		( $(THREADS) KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS) \
			> .test-logs/$$b.log 2>&1; echo $$? > .test-logs/$$b.rc ) & \
	done; wait
	@status=0; for b in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$b ==="; cat .test-logs/$$b.log; \
		[ "$$(cat .test-logs/$$b.rc)" = 0 ] || status=1; \
	done; exit $$status

# One style and one-way imports (see README, Development): ruff's lint and
# format, and import-linter's layers contract in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The strategy comparison on the bundled digits (offline, about a minute).
demo: $(STAMP)
	KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} $(PY) -m keras_transfer demo --out runs/demo --overwrite

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .test-logs
