# Two commands a new user needs: `make run` (the broker) and `make test` (the whole suite).
# Both create .venv on first use. Where Debian's python3-gi exists, the venv is built on the
# system interpreter with its site packages, so the tray gets a real GTK/AppIndicator menu.

VENV ?= .venv
PY := $(VENV)/bin/python
SYSPY := $(shell /usr/bin/python3 -c 'import gi' >/dev/null 2>&1 && echo /usr/bin/python3)

.PHONY: run test venv icons bench clean

$(VENV)/.installed: pyproject.toml
	@if [ -n "$(SYSPY)" ]; then $(SYSPY) -m venv --system-site-packages $(VENV); \
	 else python3 -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/inference-broker run

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

icons: $(VENV)/.installed
	$(PY) scripts/make_icons.py

bench: $(VENV)/.installed
	$(PY) benchmarks/proxy_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
