# mia-nb: two commands do everything on a fresh Debian machine with Python 3.11.
#   make study   set up .venv, install data, run the whole study headless on params/default.yaml
#   make test    set up the same environment and run the tests (all of them: smoke study, benchmarks' tiny runs)
#   make test-fast  the edit-test loop: every test not marked slow (under 2 minutes on 2 cores)
#   make lab     JupyterLab on notebook 00 (the lesson); saving a notebook under notebooks/ strips its outputs
#                (jupyter_server_config.py), so the committed notebooks stay clean. LAB_ARGS="--no-browser --port 8899"
#                The notebooks opened there run PARAMS' profile (make lab PARAMS=params/smoke.yaml), its first seed.
PYTHON ?= python3
PARAMS ?= params/default.yaml
LAB_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup chromium data study test test-fast lab clean-outputs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP) chromium

# Debian's chromium, which the browser test (tests/test_browser.py) drives through Playwright; installed when
# missing and we are root, else a message with the command (the study itself never needs a browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
		else echo "chromium is missing and this is not root: skipping it; the browser test needs it:" \
			"sudo apt-get update && sudo apt-get install -y chromium"; fi; }

data: setup
	$(BIN)/python -m mia_nb data

study: data
	$(BIN)/python -m mia_nb run --params $(PARAMS)

test: data
	$(BIN)/python -m pytest -q

test-fast: data
	$(BIN)/python -m pytest -q -m "not slow"

lab: data
	MIA_NB_PARAMS="$(abspath $(PARAMS))" $(BIN)/jupyter lab --config=$(CURDIR)/jupyter_server_config.py --ServerApp.root_dir=$(CURDIR) $(LAB_ARGS) \
		notebooks/00_membership_inference_in_ten_minutes.ipynb

clean-outputs:
	rm -rf outputs
