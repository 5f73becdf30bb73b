# attnlab: `make demo` and `make test` work on a fresh machine.
# torch goes in first, pinned, so that resolving the project never pulls a multi-GB CUDA build.
# Override with e.g. `make test TORCH_SPEC="torch==2.14.1"`.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip

.PHONY: demo test install install-dev lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/attnlab demo --overwrite  # a second `make demo` replaces runs/demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/attention_kernels.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
