# Two commands a new user needs: `make run` (the broker) and `make test` (the whole suite).
# Both create .venv on first use. Where Debian's python3-gi exists, the venv is built on the
# system interpreter with its site packages, so the tray gets a real GTK/AppIndicator menu.

VENV ?= .venv
PY := $(VENV)/bin/python
SYSPY := $(shell /usr/bin/python3 -c 'import gi' >/dev/null 2>&1 && echo /usr/bin/python3)

.PHONY: run test venv icons bench reliability clean

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
	rm -rf $(VENV) build *.egg-info
