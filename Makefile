# attnlab: `make demo` and `make test` work on a fresh machine.
# torch goes in first, pinned, so that resolving the project never pulls a multi-GB CUDA build.
# Override with e.g. `make test TORCH_SPEC="torch==2.14.1"`.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip

.PHONY: demo test install install-dev lint bench clean data packages

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

# The Debian packages of the real data sets and the browser tests, where missing and apt-get can
# run (root or password-less sudo; else a warning and those tests skip): scripts/debian-packages.sh
# says why each is needed.
packages:
	scripts/debian-packages.sh

test: $(VENV)/.installed-dev packages
	$(PY) -m pytest -q -n 2 --dist loadfile

# The real development corpora (docs/data.md): Debian's public-domain Bible modules, installed
# where missing (scripts/debian-packages.sh), then both corpora.
data: $(VENV)/.installed
	scripts/debian-packages.sh sword-text-web sword-text-kjv sword-text-sparv
	$(VENV)/bin/attnlab data bible --pair es-en --out data/bible-es-en --overwrite
	$(VENV)/bin/attnlab data bible --pair kjv-web --out data/bible-kjv-web --overwrite

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/attention_kernels.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
