# Two commands set everything up on a fresh machine with python3:
#   make diagnose   - build .venv, then diagnose this node and the shipped real-node snapshot
#   make test       - build .venv with the test tools, then lint, type-check and run every test
VENV ?= .venv
PY := $(VENV)/bin/python
SNAPSHOT ?= examples/h200-dataloader-starved.json.gz

$(VENV)/.ok: pyproject.toml
	python3 -m venv $(VENV) || { rm -rf $(VENV); echo "python3 -m venv failed: on Debian/Ubuntu install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.PHONY: diagnose test lint typecheck unit
diagnose: $(VENV)/.ok
	$(VENV)/bin/nodetune diagnose
	$(VENV)/bin/nodetune diagnose --replay $(SNAPSHOT)

lint: $(VENV)/.ok
	$(VENV)/bin/ruff check agent cli config diagnosis probes tuners prefetch tests bench examples

typecheck: $(VENV)/.ok
	$(VENV)/bin/mypy agent cli config diagnosis probes tuners prefetch
	$(VENV)/bin/mypy --explicit-package-bases bench/harness

unit: $(VENV)/.ok
	$(PY) -m pytest -q

test: lint typecheck unit
