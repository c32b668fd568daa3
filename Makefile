# Two entry points for a new user; both set up .venv on first use (Python >= 3.10 needed).
#   make run    brings up the simulated sim-pp2 cluster and its sim-tp8 baseline, runs the seed
#               workload on both, writes report.html
#   make test   runs the plugin's own tests, every tier: sets up real SGLang and real vLLM on this
#               CPU first (make real-sglang, once: ~5 min, 11 GB; make real-vllm, once: ~3 min,
#               4 GB; both in ~/.cache/pytest-pd); the tests that may share the cores on two
#               workers, then the serial ones (timing judged, real engines) one at a time
# For your edit-test loop:
#   make test-fast     the quick tier (no real SGLang, no sshd, no browser), on three pytest-xdist
#                      workers (its tests mostly wait on sockets): about 100 s on two cores
#   make test-real     only the real-engine tiers (tests marked real_sglang or real_vllm)
#   make real-sglang   set up (once) the pinned real SGLang environment the cpu-* clusters use
#   make real-vllm     set up (once) the pinned real vLLM environment the cpu-vllm-* clusters use
#   make lint          ruff check, ruff format --check, mypy (strict on the pure core), and
#                      lint-imports (the design's layers and boundaries, pyproject.toml); .ci/run
#                      and the pre-commit hook (.pre-commit-config.yaml) run it too
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP  := $(VENV)/.installed
PYTHON ?= python3
CLUSTER ?= sim-pp2
FAST   := not e2e and not real_sglang and not real_vllm

.PHONY: run test test-fast test-real real-sglang real-vllm lint docs setup clean

# Installs with uv (seconds, where pip takes over a minute; both from PyPI), with pip where uv
# cannot be had. The venv is made without pip (0.2 s, where ensurepip takes 6 s) and gets uv from
# the creating Python's pip; pip is put in only when that fails. make run needs the plugin alone;
# make test its test tools too (pip among them: tests build wheels and install with it), and every
# package compiled to bytecode once (uv does not, pip does): where PYTHONDONTWRITEBYTECODE is set,
# each of its hundreds of Python processes would compile what it imports again (3.1 s against
# 1.65 s to import the plugin, the simulator and a tokenizer here). A file no Python can compile
# is skipped.
ENSURE_PIP = $(PY) -m pip --version > /dev/null 2>&1 || $(PY) -m ensurepip --default-pip > /dev/null
GET_UV  = $(PYTHON) -m pip --python $(PY) install --quiet uv 2>/dev/null \
          || { $(ENSURE_PIP); $(PY) -m pip install --quiet uv 2>/dev/null; } || true
INSTALL = $(PY) -m uv pip install --quiet --python $(PY)
SITE    = $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv --without-pip $(VENV)
	$(GET_UV)
	$(INSTALL) -e . || { $(ENSURE_PIP); $(PY) -m pip install --quiet -e .; }
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(INSTALL) -e '.[test]' || { $(ENSURE_PIP); $(PY) -m pip install --quiet -e '.[test]'; }
	$(PY) -m compileall -q -j 0 "$(SITE)" > /dev/null || true
	touch $(STAMP)

setup: $(STAMP)

real-sglang:
	PYTHON=$(PYTHON) bash tools/sglang_cpu/setup.sh

real-vllm:
	PYTHON=$(PYTHON) bash tools/vllm_cpu/setup.sh

run: $(RUN_STAMP)
	$(VENV)/bin/pytest suites/ --cluster=$(CLUSTER)

# every test that may share the cores on two workers (the quick tier and the end-to-end tests that
# judge no timing), then the serial ones one at a time: those that judge measured timing (two at
# once on two cores would skew them), need the one local Slurm, or run a real engine; fails if
# either fails
test: $(STAMP) real-sglang real-vllm
	$(VENV)/bin/pytest tests/ -m "not serial" -n 2 --dist worksteal $(PYTEST_ARGS); shared=$$?; \
	$(VENV)/bin/pytest tests/ -m serial $(PYTEST_ARGS); serial=$$?; \
	[ $$shared -eq 0 ] && [ $$serial -eq 0 ]

test-fast: $(STAMP)
	$(VENV)/bin/pytest tests/ -m "$(FAST)" -n 3 --dist worksteal $(PYTEST_ARGS)

test-real: $(STAMP) real-sglang real-vllm
	$(VENV)/bin/pytest tests/ -m "real_sglang or real_vllm" $(PYTEST_ARGS)

# the documentation site (docs/, mkdocs.yml): strict, so a broken link, a missing anchor or a page
# left out of the navigation fails the build; the reference pages are generated from the code
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

LINTED := pytest_pd tests benchmarks tools suites docs/hooks conftest.py
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) report.html results runs
