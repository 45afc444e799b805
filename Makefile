# The two commands the README promises: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv run test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml client/pyproject.toml $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(BIN)/python -m backupd.demo

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/bench_engine.py

# The fault-injection suite's long profile; its figures become docs/RELIABILITY.md (even when a trial fails).
.PHONY: torture
torture: venv
	BACKUPD_FAULTS_PROFILE=long BACKUPD_FAULTS_RESULTS=.faults-results.json $(BIN)/python -m pytest -q tests/faults; \
	status=$$?; $(BIN)/python -m tests.faults.report .faults-results.json > docs/RELIABILITY.md && exit $$status

.PHONY: bench-destinations
bench-destinations: venv
	$(BIN)/python bench/bench_destinations.py

clean:
	rm -rf $(VENV) demo-state demo build client/build
