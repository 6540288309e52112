# One command for each job; each creates .venv and installs what it needs the first time.
#   make reproduce   the main job on the embedded data (writes runs/tiny/report.md)
#   make test        every notebook (nbdev_test) and the pytest suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch and torchvision are pinned to the releases this project is tested with.
TORCH   = torch==2.14.1 torchvision==0.29.1

.PHONY: reproduce test nbtest pytest export clean-venv bench

$(VENV)/.installed: settings.ini setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

reproduce: $(VENV)/.installed
	$(BIN)/sr3lit reproduce tiny --out runs/tiny

test: nbtest pytest

nbtest: $(VENV)/.installed
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests

export: $(VENV)/.installed
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python .ci/readme.py

bench: $(VENV)/.installed
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
