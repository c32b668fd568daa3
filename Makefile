# Two entry points for a new user; both set up .venv on first use (Python >= 3.10 needed).
#   make run    brings up the simulated sim-pp2 cluster and its sim-tp8 baseline, runs the seed
#               workload on both, writes report.html
#   make test   runs the plugin's own tests
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= python3
CLUSTER ?= sim-pp2

.PHONY: run test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pytest suites/ --cluster=$(CLUSTER)

test: $(STAMP)
	$(VENV)/bin/pytest tests/ $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) report.html results runs
