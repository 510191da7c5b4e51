# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mmgen-installed
TORCH_PINS := $(shell grep -E '^torch' constraints.txt | tr '\n' ' ')
PYTEST_ARGS ?=

.PHONY: demo test setup sysdeps lint bench clean

setup: $(STAMP) sysdeps

# The registry's CUDA torch build runs on CPU; constraints.txt pins it so nothing later replaces it.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# System packages used by the speech features (espeak-ng). Installed when missing; a clear note when impossible.
sysdeps:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "mmgen: installing espeak-ng (speech data)"; \
	    (apt-get update -qq >/dev/null 2>&1 || true); \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null 2>&1 \
	      || echo "mmgen: could not install espeak-ng with apt-get; speech data/tests will be skipped (install it: apt-get install espeak-ng)"; \
	  else \
	    echo "mmgen: espeak-ng is missing and cannot be installed here (needs root + apt-get); speech data/tests will be skipped"; \
	  fi; }

demo: setup
	$(BIN)/mmgen demo

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check mmgen tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py

clean:
	rm -rf $(VENV) runs outputs
