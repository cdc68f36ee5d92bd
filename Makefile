# privobfnet: the two commands are `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml changes: the stamp's name carries its hash.
PYPROJECT_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(PYPROJECT_HASH)
# The PaddleOCR text backend's own environment (pyproject's `paddle` extra), keyed the same way.
PADDLE_VENV := .venv-paddle
PADDLE_BIN := $(PADDLE_VENV)/bin
PADDLE_STAMP := $(PADDLE_VENV)/.installed-$(PYPROJECT_HASH)
PADDLE_TESTS := tests/test_masks_paddle.py
PROFILE ?= default
export PATH := $(abspath $(BIN)):$(PATH)
export GX_ANALYTICS_ENABLED := false
export MPLBACKEND := Agg

.PHONY: install paddle-venv run test lint test-paddle test-fast profile dag status ablation ablation-resume seeds hypotheses prefect mlflow compare ui-check chromium clean-venv clean-paddle-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## paddle-venv: .venv-paddle, PaddleOCR without torch: the `paddle` extra, then rapidocr at the main
## pin without its dependencies (they name opencv-python-headless; paddlex pins opencv-contrib-python,
## the same cv2 package). The project is not installed there: its tests import it from the checkout.
PYPROJECT = $(PADDLE_BIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(*$(1), sep="\n")'
paddle-venv: $(PADDLE_STAMP)

$(PADDLE_STAMP): pyproject.toml
	@test -x $(PADDLE_BIN)/python || $(PYTHON) -m venv $(PADDLE_VENV)
	$(PADDLE_BIN)/python -m pip install --quiet --upgrade pip
	$(call PYPROJECT,p["optional-dependencies"]["paddle"]) > $(PADDLE_VENV)/requirements.txt
	$(PADDLE_BIN)/python -m pip install --quiet -r $(PADDLE_VENV)/requirements.txt
	$(PADDLE_BIN)/python -m pip install --quiet --no-deps \
	  "$$($(call PYPROJECT,[d for d in p["dependencies"] if d.startswith("rapidocr")]))"
	$(PADDLE_BIN)/python -c 'import cv2, paddleocr, rapidocr; print("cv2", cv2.__version__)'
	@rm -f $(PADDLE_VENV)/.installed-*
	@touch $@

params.yaml: | $(STAMP)
	$(BIN)/python -m ops.use_profile default

## run: the whole DVC pipeline on the profile in params.yaml (default: SynthPriv)
run: $(STAMP) params.yaml
	PRIVOBFNET_PIPELINE_ID=make-$$(date -u +%Y%m%dT%H%M%SZ)-$$$$ $(BIN)/dvc repro

## test: the whole suite, slow tests included (what CI runs), then the PaddleOCR backend's tests
## in .venv-paddle
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not paddle"
	$(MAKE) test-paddle

## test-paddle: the tests marked paddle, in .venv-paddle; --require-paddle makes them fail, not
## skip, if PaddleOCR is missing there
test-paddle: $(PADDLE_STAMP)
	$(PADDLE_BIN)/python -m pytest -q -m paddle --require-paddle $(PADDLE_TESTS)

## lint: ruff's formatter and linter (configured in pyproject.toml), as CI runs them
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

## test-fast: unit tests only, for quick iterations
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## profile: write params.yaml from profiles/$(PROFILE).yaml, e.g. make profile PROFILE=ci
profile: $(STAMP)
	$(BIN)/python -m ops.use_profile $(PROFILE)

## ablation: the paper's Table 4 rows and the fully supervised ceiling as queued DVC experiments
## (each runs the whole pipeline in a temporary copy), then collect them for the report stage.
# the full model's switches (paper Table 4's last row), shared by ablation, seeds and hypotheses
ENSEMBLE_SWITCHES := -S train.use_cropped=true -S train.use_privacy=true -S train.use_attribute=true
ABLATION := \
  "-S train.use_cropped=false -S train.use_privacy=false -S train.use_attribute=false" \
  "-S train.use_cropped=false -S train.use_privacy=true -S train.use_attribute=false" \
  "-S train.use_cropped=false -S train.use_privacy=false -S train.use_attribute=true" \
  "-S train.use_cropped=false -S train.use_privacy=true -S train.use_attribute=true" \
  "$(ENSEMBLE_SWITCHES)" \
  "-S deeplab.labels=ground_truth"
ablation: $(STAMP) params.yaml
	for switches in $(ABLATION); do $(BIN)/dvc exp run --queue $$switches || exit 1; done
	$(MAKE) ablation-resume

## ablation-resume: run what is still queued, then collect and report (also after an interruption:
## DVC's queue worker can die on its file broker, leaving tasks queued; `dvc queue status` shows it)
ablation-resume: $(STAMP) params.yaml
	$(BIN)/dvc exp run --run-all
	$(BIN)/python -m ops.collect_ablation
	$(BIN)/dvc repro report

## hypotheses: why Model-Cropped does not help, as queued DVC experiments over the same seeds: L2G's processed
## target instead of the paper's reading of eq. 2, smaller crops, eq. 2's loss weight 1 instead of 10; collected
## and reported like `make seeds` (tables.md: "Model-Cropped, judged")
HYPOTHESES := \
  "-S train.crop_target=l2g" \
  "-S train.crop_size=160" \
  "-S train.loss_weights.image=1.0"
hypotheses: $(STAMP) params.yaml
	for seed in $(SEEDS); do for change in $(HYPOTHESES); do \
	  $(BIN)/dvc exp run --queue -S seed=$$seed $(ENSEMBLE_SWITCHES) $$change || exit 1; done; done
	$(MAKE) ablation-resume

## seeds: 3 seeds of the ensemble, the single model (Model-Cropped off) and the ground-truth ceiling
## as queued DVC experiments, then collected (reports/ablation.json, with each run's seed) and reported:
## tables.md prints mean +- std over the seeds and marks differences smaller than their spread n.s.
SEEDS ?= 0 1 2
SEED_VARIANTS := \
  "$(ENSEMBLE_SWITCHES)" \
  "-S train.use_cropped=false -S train.use_privacy=true -S train.use_attribute=true" \
  "-S deeplab.labels=ground_truth"
seeds: $(STAMP) params.yaml
	for seed in $(SEEDS); do for switches in $(SEED_VARIANTS); do \
	  $(BIN)/dvc exp run --queue -S seed=$$seed $$switches || exit 1; done; done
	$(MAKE) ablation-resume

## prefect: a Prefect server on 127.0.0.1:$(PREFECT_PORT) (sqlite under .prefect/) serving the
## pipeline as a deployment on the cron schedule $(CRON) with parameter profile=$(PROFILE)
PREFECT_PORT ?= 4200
CRON ?= 0 3 * * *
prefect: $(STAMP) params.yaml
	PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
	  $(BIN)/python -m pipelines.serve --port $(PREFECT_PORT) --cron "$(CRON)" --profile $(PROFILE)

## mlflow: the MLflow UI on the project's sqlite store
MLFLOW_PORT ?= 5000
mlflow: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
	  --default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

## compare: two selections of MLflow stage runs side by side (params that differ, every metric),
## e.g. make compare A=profile:default B=profile:ci, or A=exp:<dvc exp> B=pipeline:<id>
A ?= profile:default
B ?= profile:ci
compare: $(STAMP) params.yaml
	$(BIN)/python -m ops.compare_runs $(A) $(B) $(if $(STAGE),--stage $(STAGE)) $(if $(GREP),--grep '$(GREP)')

## ui-check: both UIs on loopback in headless Chromium; screenshots in reports/figures/ui_*.png
ui-check: $(STAMP) params.yaml chromium
	PREFECT_HOME=$(CURDIR)/.prefect $(BIN)/python -m pipelines.ui_check --out reports/figures --profile $(PROFILE) --cron "$(CRON)"

## chromium: Debian's chromium package, installed when missing (needs root or sudo)
chromium:
	@command -v chromium >/dev/null || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

dag: $(STAMP)
	$(BIN)/dvc dag

status: $(STAMP)
	$(BIN)/dvc status

clean-venv:
	rm -rf $(VENV)

clean-paddle-venv:
	rm -rf $(PADDLE_VENV)
