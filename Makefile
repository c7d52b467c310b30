# bitbridge - every command sets itself up from nothing (virtualenv + locked dependencies).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 runs the project (as on Lambda); the scan/build tools (checkov, SAM CLI) need 3.12.
# (pyenv's shims exist for every installed version but refuse to run one that is not selected,
# so each candidate is tried before it is used.)
find_python = $(shell for p in $$HOME/.pyenv/versions/$(1).*/bin/python$(1) $$(command -v python$(1)); do \
	"$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
PYTHON313 ?= $(call find_python,3.13)
PYTHON312 ?= $(call find_python,3.12)

# Python's own bytecode cache, even where the machine turns it off (some images set PYTHONDONTWRITEBYTECODE):
# every e2e test starts stacks and CLI processes, and each would compile the project's modules again.
unexport PYTHONDONTWRITEBYTECODE

VENV := .venv
TOOLS := .venv-tools
PY := $(VENV)/bin/python

.PHONY: help dev dev-reset test lint unit deploy-check bench scale scan build deploy lock clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is required: install it (pyenv install 3.13) or run make PYTHON313=/path/to/python3.13"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON313) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(TOOLS)/.installed: requirements-tools.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 is required for SAM CLI and checkov: pyenv install 3.12, or make PYTHON312=..."; exit 1; }
	rm -rf $(TOOLS)
	$(PYTHON312) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes --no-deps -r requirements-tools.txt
	touch $@

# The local stack's state (moto's and the emulator's) is kept in .local/state (git-ignored) across restarts.
DEV_STATE := .local/state

dev: $(VENV)/.installed ## run the whole system locally (moto + Bitbucket emulator + API on :3000), state kept
	$(PY) -m infra.local --state $(DEV_STATE)

dev-reset: $(VENV)/.installed ## like dev, but delete the kept state first and start clean
	$(PY) -m infra.local --state $(DEV_STATE) --fresh

# Every stage runs, even after one has failed; .ci/stages ends with one line per stage and one overall
# (non-zero if any stage failed or could not run, e.g. for want of Python 3.12). Each stage is
# target:its setup targets.
test: ## run all tests (lint, types, pytest, deploy rehearsal), then a summary line per stage
	@bash .ci/stages "$(MAKE)" lint:$(VENV)/.installed unit:$(VENV)/.installed \
		deploy-check:$(VENV)/.installed,$(TOOLS)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

# The suite is CPU-bound on 2 cores (the stacks, moto and the emulator run in Python), yet much of each e2e test
# is waiting (retries, windows and outages played out): 4 workers at least. Files go to workers whole, except
# those tests/conftest.py spreads (SPREAD_FILES).
# Then the budget's scale case, alone: it promises waits (a person's p99 <= 2 s) that hold on a machine not also
# running the rest of the suite (on 2 cores beside the other workers it missed them in every full run).
# Temporary files (each e2e stack's stack.log) stay in .pytest-tmp until the next run: the shared
# /tmp/pytest-of-$$USER keeps only the last three runs of anyone's checkout.
UNIT_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 4 ? n : 4 )))
unit: $(VENV)/.installed
	$(PY) -m pytest -n $(UNIT_WORKERS) --dist loadfile --ignore=tests/deploy -m "not scale" --durations=15 --basetemp=.pytest-tmp
	$(PY) -m pytest tests/e2e/test_budget_scale.py -m scale -q --basetemp=.pytest-tmp/scale

scale: $(VENV)/.installed ## the rate-limit scale case alone (one person, 40 repositories, limits on; make test runs it last)
	$(PY) -m pytest tests/e2e/test_budget_scale.py -m scale -q

# tests/deploy builds with `make build` itself (tests/deploy/artifacts.py), so a bare pytest run works too.
deploy-check: $(VENV)/.installed $(TOOLS)/.installed ## deploy rehearsal: sam build, SAM's zips imported as on Lambda, stack on moto
	$(PY) -m pytest tests/deploy

bench: $(VENV)/.installed ## run the benchmarks in tests/bench (prints ratios against baselines)
	$(PY) tests/bench/cold_start.py
	$(PY) tests/bench/refresh_race.py
	$(PY) tests/bench/webhook_receiver.py
	$(PY) tests/bench/imports.py
	$(PY) tests/bench/git_data.py
	$(PY) tests/bench/service_proxy.py
	$(PY) tests/bench/console.py
	$(PY) tests/bench/emulator_seed.py
	$(PY) tests/bench/key_check.py

scan: $(VENV)/.installed $(TOOLS)/.installed ## template checks: sam validate --lint, cfn-lint, checkov
	$(TOOLS)/bin/sam validate --lint --region us-east-1 --template-file template.yaml
	$(VENV)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet

# --cached: a function or layer whose source is unchanged is copied from .aws-sam/cache, not rebuilt
# (the dependencies layer is rebuilt only when layers/deps/ changes).
build: $(TOOLS)/.installed ## sam build (arm64 layers from the locked requirements)
	PATH="$(dir $(PYTHON313)):$$PATH" $(TOOLS)/bin/sam build --cached --template-file template.yaml

# Non-interactive (no prompts, no changeset confirmation): the answers `sam deploy --guided` asks for
# are given here. Parameter overrides: ALARM_EMAIL, and any others as PARAMS="Name=Value ...".
deploy: ## deploy with AWS credentials: make deploy STACK=name REGION=region [ALARM_EMAIL=...] [PARAMS="..."]
	@test -n "$(STACK)" -a -n "$(REGION)" || { echo 'usage: make deploy STACK=<stack name> REGION=<region>' \
		'[ALARM_EMAIL=<address>] [PARAMS="PublicBaseUrl=https://... ReservedConcurrency=on"]' \
		'(or the guided deploy: see README, "Deploy to AWS")'; exit 2; }
	$(MAKE) build
	$(TOOLS)/bin/sam deploy --template-file .aws-sam/build/template.yaml --stack-name "$(STACK)" --region "$(REGION)" \
		--resolve-s3 --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
		--no-confirm-changeset --no-fail-on-empty-changeset \
		$(if $(strip $(ALARM_EMAIL)$(PARAMS)),--parameter-overrides $(if $(ALARM_EMAIL),AlarmEmail=$(ALARM_EMAIL)) $(PARAMS))

lock: ## re-lock dependencies after editing pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --no-emit-index-url --python-version 3.13 \
		--python-platform aarch64-manylinux_2_28 -o layers/deps/requirements.txt
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --no-emit-index-url \
		--python-version 3.13 -c layers/deps/requirements.txt -o requirements-dev.txt

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
