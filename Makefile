# privobfnet: the two commands are `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml changes: the stamp's name carries its hash.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
PROFILE ?= default
export PATH := $(abspath $(BIN)):$(PATH)
export GX_ANALYTICS_ENABLED := false
export MPLBACKEND := Agg

.PHONY: install run test test-fast profile dag status clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

params.yaml: | $(STAMP)
	$(BIN)/python -m stages.use_profile default

## run: the whole DVC pipeline on the profile in params.yaml (default: SynthPriv)
run: $(STAMP) params.yaml
	PRIVOBFNET_PIPELINE_ID=make-$$(date -u +%Y%m%dT%H%M%SZ)-$$$$ $(BIN)/dvc repro

## test: the whole suite, slow tests included (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-fast: unit tests only, for quick iterations
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## profile: write params.yaml from profiles/$(PROFILE).yaml, e.g. make profile PROFILE=ci
profile: $(STAMP)
	$(BIN)/python -m stages.use_profile $(PROFILE)

dag: $(STAMP)
	$(BIN)/dvc dag

status: $(STAMP)
	$(BIN)/dvc status

clean-venv:
	rm -rf $(VENV)
