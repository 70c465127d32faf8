# Every target installs what it needs: a fresh machine has python3, make and git, nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A private, pinned uv installed with pip into .tools/ (git-ignored), never one found on PATH:
# every machine, a developer's laptop, a GitHub runner, Cloud Build and CI, takes the same path
# a fresh machine takes. `make UV=uv ...` uses your own uv instead.
UV_VERSION := 0.13.9
PRIVATE_UV := $(CURDIR)/.tools/bin/uv
UV ?= $(PRIVATE_UV)
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= prod

.PHONY: help setup plan test lint local image-smoke bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(PRIVATE_UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(filter $(PRIVATE_UV),$(UV))
	$(UV) sync --frozen --all-groups
	@touch $@

setup: $(VENV)/.synced ## install the project and its tools into .venv

plan: setup ## evaluate the stack offline (STACK=prod): inventory and preflight; then the bootstrap program
	$(VENV)/bin/platform plan --stack $(STACK)
	$(VENV)/bin/platform bootstrap-plan

test: setup ## run the whole test suite
	$(PY) -m pytest

local: plan ## the main job: plan and preflight, then the stack on Google's emulators: up, a demo batch, down
	@trap '$(VENV)/bin/platform local down' EXIT; \
	$(VENV)/bin/platform local up --stack $(STACK) && $(VENV)/bin/platform local demo

image-smoke: ## build both images for real with buildah (as root; apt-installs it) and start each
	scripts/image_smoke.sh

lint: setup ## ruff (lint rules, formatting) and lint-imports (the layers, pyproject.toml); CI runs it
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

clean: ## remove the venv and caches
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .hypothesis
