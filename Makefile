# The README's two commands: `make demo` (set up + main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-integration lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	@# pip's and setuptools' chatter goes to a log; on a failure its end is shown.
	@echo "installing the project and its dependencies into $(VENV)/ (a few minutes the first time; log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet --no-compile -e '.[test]'; } \
		> $(VENV)/install.log 2>&1 || { tail -n 30 $(VENV)/install.log; echo "set-up failed: see $(VENV)/install.log"; exit 1; }
	@# pip compiles the installed files one by one; compileall uses every core. (Some packages ship
	@# templates that are not valid Python, so it exits non-zero: pip ignores those files too.)
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

setup: $(STAMP)  ## create .venv/ and install the project with its test extras

demo: setup  ## the main job on the embedded default: sweep experiments/quickstart.yaml on a local Ray, local MLflow
	$(PY) -m orchestrator run experiments/quickstart.yaml
	$(PY) -m orchestrator models list

test: setup  ## the whole test suite
	$(PY) -m pytest -q

test-fast: setup  ## the unit tests (tests/unit/: no Ray, no servers, no subprocess CLIs): under 3 minutes
	$(PY) -m pytest -q tests/unit

test-integration: setup  ## the unit and integration tests (CLIs, moto S3, sqlite MLflow), no Ray cluster: about 4 minutes
	$(PY) -m pytest -q -m "not slow" tests/unit tests/integration

lint: setup
	$(PY) -m ruff format --check cyclegan orchestrator tests scripts
	$(PY) -m ruff check cyclegan orchestrator tests scripts

clean:  ## remove what the demo and the tests leave in the working tree
	rm -rf runs results mlflow.db mlartifacts checkpoints .pytest_cache
