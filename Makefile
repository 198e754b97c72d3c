# Two commands a new user needs: `make run` (the broker) and `make test` (the whole suite).
# Both create .venv on first use, from requirements.lock: every package at the version and
# with the hashes recorded there, then the project itself with --no-deps. `make lock`
# regenerates the lock from pyproject.toml. Where Debian's python3-gi exists, the venv is built
# on the system interpreter with its site packages, so the tray gets a real GTK/AppIndicator
# menu; the locked packages are still installed into the venv (--force-reinstall), so a Debian
# package of the same name never stands in for one, and `scripts/lock_versions.py check` proves it.

VENV ?= .venv
PY := $(VENV)/bin/python
SYSPY := $(shell /usr/bin/python3 -c 'import gi' >/dev/null 2>&1 && echo /usr/bin/python3)
BASEPY := $(or $(SYSPY),python3)
VENV_FLAGS := $(if $(SYSPY),--system-site-packages)
LOCK := requirements.lock
# `make install` links the venv's command here.
BINDIR ?= $(HOME)/.local/bin
# `make test-latest`: the unit and integration suites against the newest releases.
LATEST ?= .venv-latest
# `make lock`: uv, at a fixed release so the lock's format does not move, in a venv of its own.
UV_VERSION := 0.13.9
LOCK_TOOLS := build/lock-tools

.PHONY: run test test-fast test-latest install uninstall lock venv icons bench reliability clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(BASEPY) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --require-hashes --force-reinstall -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/lock_versions.py check $(LOCK)
	@touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/inference-broker run

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tests alone (tests/unit, about 10 s): the loop to run while working.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# A second venv with every dependency at its newest release (not the lock), then the unit and
# integration suites in it; a failure prints which packages moved.
test-latest:
	rm -rf $(LATEST)
	$(BASEPY) -m venv $(VENV_FLAGS) $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip setuptools
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[test]'
	@mkdir -p build
	@$(LATEST)/bin/python scripts/lock_versions.py report $(LOCK) | tee build/latest-versions.txt
	@$(LATEST)/bin/python -m pytest tests/unit tests/integration $(PYTEST_ARGS) || { \
	  echo "FAILED against the newest releases. Their versions against $(LOCK):"; \
	  cat build/latest-versions.txt; exit 1; }

# `inference-broker` on PATH: a link to the venv's command (the venv runs this checkout).
install: $(VENV)/.installed
	mkdir -p $(BINDIR)
	ln -sfn $(abspath $(VENV))/bin/inference-broker $(BINDIR)/inference-broker
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; \
	  *) echo "$(BINDIR) is not on PATH: add it (e.g. in ~/.profile) to run inference-broker";; esac

uninstall:
	rm -f $(BINDIR)/inference-broker

$(LOCK_TOOLS)/bin/uv:
	python3 -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install -q uv==$(UV_VERSION)

# For every platform (markers) from Python 3.11 on, from the package index's defaults only (no
# local configuration), with the hashes of every file the index has for each pinned release.
lock: $(LOCK_TOOLS)/bin/uv
	env -u UV_INDEX -u UV_INDEX_URL -u UV_DEFAULT_INDEX -u UV_EXTRA_INDEX_URL -u UV_FIND_LINKS \
	  $(LOCK_TOOLS)/bin/uv pip compile --quiet --no-config --universal --python-version 3.11 \
	  --generate-hashes --extra test pyproject.toml requirements-build.in -o $(LOCK)

# The attack, fault and soak suite alone, with the full 60 s soak; prints the figures table.
reliability: $(VENV)/.installed
	RELIABILITY_SOAK_SECONDS=$${RELIABILITY_SOAK_SECONDS:-60} RELIABILITY_FIGURES=reliability-figures.json \
	  $(PY) -m pytest tests/reliability -q
	$(PY) scripts/reliability_table.py reliability-figures.json

icons: $(VENV)/.installed
	$(PY) scripts/make_icons.py

# The whole benchmark in one interleaved run (~2 min); BENCH_ARGS=--quick for about 25 s.
bench: $(VENV)/.installed
	@mkdir -p build
	$(PY) benchmarks/proxy_overhead.py --json build/bench.json --markdown build/bench.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info
