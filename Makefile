PYTHON ?= python3
PORT ?= 8501
# The test files run in parallel, one process more than the cores (at most 4: tests/conftest.py); a file
# stays in one process.
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile
# `make test` keeps one per core: its browsers (Chromium) and Ray head already fill the waits, and a third
# process on 2 cores made browser tests miss their timeouts (2 of 4 clean-clone rehearsals).
CORES := $(shell nproc 2>/dev/null || echo 2)
MLFLOW_PORT ?= 5000
# This machine's environment, like many containers', sets PYTHONDONTWRITEBYTECODE=1. Then every Python
# process a test starts (serve, Streamlit, schedulers, workers, CLI runs, Ray jobs, DDP ranks) compiles
# the studio's own modules from source again, and each test process rewrites every test file's asserts
# again. The test targets let Python keep that bytecode (in __pycache__ folders, which git ignores).
test test-fast test-slow test-ray test-e2e: export PYTHONDONTWRITEBYTECODE :=

.PHONY: install install-dev install-browser install-cluster run train-sample test test-fast test-slow test-e2e test-ray lint bench bench-tiny

install:
	$(PYTHON) -m pip install -q -r requirements.txt

install-dev:
	$(PYTHON) -m pip install -q -r requirements-dev.txt

# Ray and MLflow's basic-auth app: the Ray executor and a shared MLflow server (not needed on one machine).
install-cluster:
	$(PYTHON) -m pip install -q -r requirements-cluster.txt

# Debian's Chromium for the browser tests (never `playwright install`: it downloads a browser).
install-browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

run: install
	$(PYTHON) -m studio serve --port $(PORT) --mlflow-port $(MLFLOW_PORT)

train-sample: install
	$(PYTHON) -m studio train --data sample:wine --epochs 30 --bundle-out studio_data/wine_model.zip

lint:
	$(PYTHON) -m ruff check .

# Everything CI runs: lint, then the fast suite, the browser tests, the tiny benchmarks (what idle `serve`
# holds among them: bench/footprint.py --tiny, its report in test-artifacts/footprint.txt) and the cluster
# tests (a local Ray head: its files run one after another in one process) in one parallel run.
test: install-dev install-browser install-cluster
	$(PYTHON) -m ruff check .
	PYTEST_XDIST_AUTO_NUM_WORKERS=$(CORES) $(PYTHON) -m pytest $(PARALLEL) -m "not slow and not gpu"

test-fast: install-dev
	$(PYTHON) -m pytest $(PARALLEL) -m "not slow and not gpu and not e2e and not ray and not postgres and not bench"

test-slow: install-dev
	$(PYTHON) -m pytest -m slow

# A real local Ray head and MLflow servers (tests/cluster, tests/mlflow_server); `make test` runs them too.
test-ray: install-dev install-cluster
	$(PYTHON) -m pytest -m "(ray or postgres) and not slow"

test-e2e: install-dev install-browser
	$(PYTHON) -m pytest -m e2e

# The throughput benchmarks at their measuring size (the README's numbers).
bench: install
	$(PYTHON) bench/tabular_throughput.py
	$(PYTHON) bench/image_throughput.py
	$(PYTHON) bench/text_bow_throughput.py

# Every benchmark under bench/ at its tiny size, as tests/test_bench.py runs them in the fast suite.
bench-tiny: install-dev
	$(PYTHON) -m pytest -m bench
