# privobfnet: the two commands are `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml or constraints.txt changes: the stamp's name carries their hash.
PYPROJECT_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(PYPROJECT_HASH)
# The PaddleOCR text backend's own environment (pyproject's `paddle` extra), keyed the same way.
PADDLE_VENV := .venv-paddle
PADDLE_BIN := $(PADDLE_VENV)/bin
PADDLE_STAMP := $(PADDLE_VENV)/.installed-$(PYPROJECT_HASH)
PADDLE_TESTS := tests/privobfnet/masks/test_text_paddle.py
PROFILE ?= default
export PATH := $(abspath $(BIN)):$(PATH)
export GX_ANALYTICS_ENABLED := false
export MPLBACKEND := Agg

.PHONY: install paddle-venv run test lint test-paddle test-fast profile dag status ablation seeds hypotheses push pull deps prefect mlflow compare ui-check chromium clean-venv clean-paddle-venv

install: $(STAMP)

## install: the library, the pipeline, the UIs' screenshot tool and the tests, at the versions of
## constraints.txt (`pip install privobfnet` alone gives the library and the CLI)
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[pipeline,ui,crf,test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## paddle-venv: .venv-paddle, PaddleOCR without torch: the `paddle` extra, then rapidocr at the main
## pin without its dependencies (they name opencv-python-headless; paddlex pins opencv-contrib-python,
## the same cv2 package). The project is not installed there: its tests import it from the checkout.
PYPROJECT = $(PADDLE_BIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(*$(1), sep="\n")'
paddle-venv: $(PADDLE_STAMP)

$(PADDLE_STAMP): pyproject.toml constraints.txt
	@test -x $(PADDLE_BIN)/python || $(PYTHON) -m venv $(PADDLE_VENV)
	$(PADDLE_BIN)/python -m pip install --quiet --upgrade pip
	$(call PYPROJECT,p["optional-dependencies"]["paddle"]) > $(PADDLE_VENV)/requirements.txt
	$(PADDLE_BIN)/python -m pip install --quiet -r $(PADDLE_VENV)/requirements.txt
	$(PADDLE_BIN)/python -m pip install --quiet --no-deps "$$(grep '^rapidocr==' constraints.txt)"
	$(PADDLE_BIN)/python -c 'import cv2, paddleocr, rapidocr; print("cv2", cv2.__version__)'
	@rm -f $(PADDLE_VENV)/.installed-*
	@touch $@

params.yaml: | $(STAMP)
	$(BIN)/python -m tools.use_profile default

## run: the whole DVC pipeline on the profile in params.yaml (default: SynthPriv)
run: $(STAMP) params.yaml
	PRIVOBFNET_PIPELINE_ID=make-$$(date -u +%Y%m%dT%H%M%SZ)-$$$$ $(BIN)/dvc repro

## test: the whole suite, slow tests included (what CI runs), then the PaddleOCR backend's tests
## in .venv-paddle
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not paddle" --durations=20
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
	$(BIN)/python -m tools.use_profile $(PROFILE)

## ablation: the paper's Table 4 rows and the fully supervised ceiling as DVC experiments, one
## `dvc exp run --temp` after another (each runs the whole pipeline in a temporary copy; no queue),
## then collect them for the report stage. Only the rows DVC does not list yet run, so the same
## target resumes after an interruption; ALL=1 runs every row. A failed row does not stop the others
## (the target fails at the end); `--check` first stops before any run if collecting would drop
## rows of reports/ablation.json whose experiments this clone lacks (`make pull` fetches them;
## DROP_UNLISTED=1 drops those rows instead; KEEP_UNLISTED=1 keeps them, counts them as run and
## adds the new rows beside them: a clone whose experiment refs are gone).
## The rows of ablation, seeds and hypotheses are defined once, in privobfnet/report/rows.py.
UNLISTED = $(if $(DROP_UNLISTED),--drop-unlisted) $(if $(KEEP_UNLISTED),--keep-unlisted)
COLLECT = $(BIN)/python -m tools.collect_ablation $(UNLISTED)
ablation seeds hypotheses: $(STAMP) params.yaml
	$(COLLECT) --check
	$(BIN)/python -m tools.experiments $@ --run $(if $(ALL),--all) $(if $(KEEP_UNLISTED),--keep-unlisted); failed=$$?; \
	  $(COLLECT) && $(BIN)/dvc repro report && exit $$failed

## seeds: 3 seeds of the ensemble, the single model (Model-Cropped off) and the ground-truth ceiling;
## hypotheses: the ensemble trained three other ways over the same seeds (L2G's crop target, crops of
## 160, eq. 2's weight 1); both run, collected and reported like ablation (tables.md: mean +- std
## over the seeds)

## push / pull: the outputs dvc.lock names to / from DVC's default remote (the `local` remote of
## .dvc/config: ../privobfnet-dvc-remote beside the clone, offline), and the DVC experiments to /
## from the git remote origin when there is one (tools/share.py)
push pull: $(STAMP)
	$(BIN)/python -m tools.share $@

## deps: write dvc.yaml's code deps from each stage's import closure (tests/stages/test_layer.py checks it)
deps: $(STAMP)
	$(BIN)/python -m tools.dvc_deps

## prefect: a Prefect server on 127.0.0.1:$(PREFECT_PORT) (sqlite under .prefect/) serving the
## pipeline as a deployment on the cron schedule $(CRON) with parameter profile=$(PROFILE), one run
## at a time (a second run waits: ON_BUSY=enqueue, or is cancelled: ON_BUSY=cancel), each stage
## stopped after STAGE_TIMEOUT seconds (empty: the flow's default, 12 h)
PREFECT_PORT ?= 4200
CRON ?= 0 3 * * *
ON_BUSY ?= enqueue
STAGE_TIMEOUT ?=
prefect: $(STAMP) params.yaml
	PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
	  $(BIN)/python -m pipelines.serve --port $(PREFECT_PORT) --cron "$(CRON)" --profile $(PROFILE) \
	  --on-busy $(ON_BUSY) --mlflow-ui http://127.0.0.1:$(MLFLOW_PORT) \
	  $(if $(STAGE_TIMEOUT),--stage-timeout $(STAGE_TIMEOUT))

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
	$(BIN)/python -m tools.compare_runs $(A) $(B) $(if $(STAGE),--stage $(STAGE)) $(if $(GREP),--grep '$(GREP)')

## ui-check: both UIs on loopback in headless Chromium; screenshots in reports/figures/ui_*.png
ui-check: $(STAMP) params.yaml chromium
	PREFECT_HOME=$(CURDIR)/.prefect $(BIN)/python -m tools.ui_check --out reports/figures --profile $(PROFILE) --cron "$(CRON)"

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
