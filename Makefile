# `make demo` and `make test` each create .venv when it is missing, then run.
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e ".[dev,dense]"
	touch $(STAMP)

demo: $(STAMP)
	.venv/bin/spikescope demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	.venv/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/neurons.py

clean:
	rm -rf .venv build src/*.egg-info
