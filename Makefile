# mia-nb: two commands do everything on a fresh Debian machine with Python 3.11.
#   make study   set up .venv, install data, run the whole study headless on params/default.yaml
#   make test    set up the same environment and run the tests
PYTHON ?= python3
PARAMS ?= params/default.yaml
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup data study test clean-outputs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

data: setup
	$(BIN)/python -m mia_nb data

study: data
	$(BIN)/python -m mia_nb run --params $(PARAMS)

test: data
	$(BIN)/python -m pytest -q

clean-outputs:
	rm -rf outputs
