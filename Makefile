# lmpipe: `make demo` (install + demo corpus + whole pipeline), `make test` (install + tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmpipe-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench bench-peer reference clean-demo

setup: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/python -m pipeline.demo_corpus --output demo/corpus
	$(BIN)/lmpipe run --config pipeline.yaml

# Two workers: many tests wait on process start-up, Beam and file I/O rather than the CPU.
# --dist loadfile keeps a module's tests (and its module-scoped fixtures) on one worker.
XDIST := -n 2 --dist loadfile

test: setup reference
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup reference
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The PyTorch peer of `python -m bench.train_throughput`, in its own venv: lmpipe's stack
# never sees torch.
bench-peer: .venv-peer/bin/python

.venv-peer/bin/python:
	$(PYTHON) -m venv .venv-peer
	.venv-peer/bin/pip install --quiet torch==2.13.0 numpy

# The reference implementations the checkpoint import is proven equal to
# (tests/checkpoints/): torch and transformers in their own venv, never in lmpipe's.
REF_STAMP := .venv-ref/.lmpipe-reference-installed

reference: $(REF_STAMP)

$(REF_STAMP): requirements/reference.txt
	test -x .venv-ref/bin/python || $(PYTHON) -m venv .venv-ref
	.venv-ref/bin/pip install --quiet -r requirements/reference.txt
	touch $(REF_STAMP)

clean-demo:
	rm -rf runs/demo demo/corpus
