# attnlab: `make demo` and `make test` work on a fresh machine.
# torch goes in first, pinned, so that resolving the project never pulls a multi-GB CUDA build.
# Override with e.g. `make test TORCH_SPEC="torch==2.14.1"`.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip

.PHONY: demo test install install-dev lint bench clean data

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

# The real development corpora (docs/data.md): Debian's public-domain Bible modules, installed
# with apt-get where missing when run as root (else a warning naming them), then both corpora.
SWORD_PACKAGES := sword-text-web sword-text-kjv sword-text-sparv
SWORD_CONFS    := $(addprefix /usr/share/sword/mods.d/,engWEB2015eb.conf engKJV2006eb.conf \
                  spaRV1909eb.conf)
data: $(VENV)/.installed
	@if ls $(SWORD_CONFS) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get install $(SWORD_PACKAGES)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq $(SWORD_PACKAGES); } >/dev/null \
		|| echo "warning: apt-get install $(SWORD_PACKAGES) failed"; \
	else \
		echo "warning: not root (or no apt-get); install the modules with:" \
		     "sudo apt-get install $(SWORD_PACKAGES)"; \
	fi
	$(VENV)/bin/attnlab data bible --pair es-en --out data/bible-es-en --overwrite
	$(VENV)/bin/attnlab data bible --pair kjv-web --out data/bible-kjv-web --overwrite

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/attention_kernels.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
