# make test: venv + package with its test extra + pytest.   make demo: train and evaluate on PushT, offline.
SHELL := /bin/bash
PYTHON312 ?= $(shell command -v python3.12 2>/dev/null || ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export WANDB_MODE := disabled

# Demo knobs (see README): DATA=expert (default, needs nothing) or DATA=human (the zarr in ../shared).
DATA ?= expert
DEMO_DIR ?= demo_out
DEMO_STEPS ?= 5000
DEMO_BATCH ?= 64
DEMO_EPISODES ?= 100
EVAL_EPISODES ?= 50

.PHONY: install test test-all demo clean

# --no-cache-dir: torch's CUDA wheels (about 3 GiB) are not kept a second time in ~/.cache; a full disk
# is the one way this install has failed on a fresh machine, hence also the warning.
$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "error: Python 3.12 not found; set PYTHON312=/path/to/python3.12"; exit 1; }
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4/1048576)}'); test "$$free" -ge 9 || \
		echo "warning: $$free GiB free here; the venv needs about 6 GiB (torch's CUDA build) plus the download"
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest

test-all: $(VENV)/.installed
	$(PY) -m pytest -m ''

demo: $(VENV)/.installed
	DATA=$(DATA) DEMO_DIR=$(DEMO_DIR) DEMO_STEPS=$(DEMO_STEPS) DEMO_BATCH=$(DEMO_BATCH) DEMO_EPISODES=$(DEMO_EPISODES) EVAL_EPISODES=$(EVAL_EPISODES) \
		bash examples/pusht/demo.sh $(VENV)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
