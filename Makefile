# agent-worker — top-level tasks. Each part of the project adds its own targets in mk/*.mk.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.testbed/bin:$(PATH)

.PHONY: setup test test-fast docs clean
.DEFAULT_GOAL := help

help:
	@echo "make demo        run the main job (see README)"
	@echo "make test        run every test (what CI runs)"
	@echo "make test-fast   unit and in-process tests only"
	@echo "make testbed     build/install the local test bed into .testbed/"
	@echo "make images      build the worker and operator images (buildah, no daemon) into .testbed/images/"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The README's test command: everything, against the real test bed and its real node (which runs
# the images `make images` builds).
test: setup testbed images
	$(PY) -m pytest -q

test-fast: setup tools
	$(PY) -m pytest -q -m "not testbed"

# README.md's reference tables, generated from the code.
docs: setup
	$(PY) scripts/readme_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

-include mk/*.mk
