# Two entry points for a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export WANDB_MODE := offline
export DS_ACCELERATOR := cpu
export DS_BUILD_OPS := 0
export TOKENIZERS_PARALLELISM := false
# haystack-ai reports usage to a remote service unless told not to (tests and CI have no network for it)
export HAYSTACK_TELEMETRY_ENABLED := False

.PHONY: venv quickstart test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,serve,eval,integrations]'
	touch $@

venv: $(VENV)/.installed

quickstart: venv
	$(PY) scripts/quickstart.py --out quickstart_out

test: venv
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q tests -m "not multiprocess and not slow"

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) quickstart_out
