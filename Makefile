# twinchat: `make demo` builds demo twins from real data and serves them; `make test` runs every test.
# Both install first when needed (a .venv in this folder; torch pinned to the local CPU wheel first).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

# Nothing phones home, nothing is downloaded at run time.
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False
export RAGAS_DO_NOT_TRACK := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast serve lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# The CPU build of torch first: an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	# llama-cpp-python builds from source once (about 10 minutes); pip caches the wheel after that.
	$(BIN)/pip install --quiet -e '.[dev,evals]'
	@touch $(STAMP)

demo: install
	$(BIN)/twinchat demo --host $(HOST) --port $(PORT)

serve: install
	$(BIN)/twinchat serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check twinchat ui tests benchmarks
	$(BIN)/mypy

# Speed and scale (BENCHMARKS.md section 4) at full size, one file each in benchmarks/results; about 45 minutes
# on 2 cores, waiting first while the machine is busy. benchmarks/RESULTS.md says what the figures were.
bench: install
	$(BIN)/twinchat bench all --out benchmarks/results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
