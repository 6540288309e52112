# One command for each job; each creates .venv and installs what it needs the first time.
#   make reproduce   the main job on the embedded data (writes runs/tiny/report.md)
#   make test        every notebook (nbdev_test) and the pytest suite
#   make lab         the course: JupyterLab on nbs/
#   make docs        the documentation site from the executed notebooks, offline -> _docs/index.html
#   make docs-check  opens every page of _docs/ in headless Chromium (figures, maths, no console errors)
#   make outputs     re-executes chapters in place (CHAPTERS="01_forward 02_posterior"; default 00-11 and index;
#                    OUTPUTS_FLAGS=--skip-slow leaves the `#| slow` cells as they are)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch and torchvision are pinned to the releases this project is tested with.
TORCH   = torch==2.14.1 torchvision==0.29.1

.PHONY: reproduce test nbtest pytest export clean-venv bench lab docs docs-check outputs

# what `make reproduce` needs: PyTorch and sr3lit with its requirements
$(VENV)/.runtime: settings.ini setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# ... and for every other target the development tools too (nbdev, pytest, Jupyter, nbgrader, ...)
$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

reproduce: $(VENV)/.runtime
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

lab: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir=nbs

# Chapters whose committed outputs `make outputs` refreshes (each executed in place, then nbdev_clean'ed).
CHAPTERS ?= index 00_schedules 00a_images 00b_checks 01_forward 02_posterior 03_vlb 04_loss 05_unet 06_data \
            07_download 08_metrics 09_sampling 10_config 11_checkpoint
# OUTPUTS_FLAGS=--skip-slow: `#| slow` cells keep the outputs they have
OUTPUTS_FLAGS ?=
outputs: $(VENV)/.installed
	$(BIN)/python .ci/execute_nbs.py $(OUTPUTS_FLAGS) $(CHAPTERS)

# The docs have their own environment: Jupyter Book 1 (Sphinx + myst-nb), sr3lit itself for the API
# reference, Playwright for the browser check (driving Debian's chromium), and MathJax 3 from npm,
# served from the site itself so that pages render their maths offline.
DOCS_VENV ?= .venv-docs
DBIN       = $(DOCS_VENV)/bin
MATHJAX    = mathjax@3.2.2
$(DOCS_VENV)/.installed: settings.ini setup.py
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DBIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(DBIN)/python -m pip install --quiet $(TORCH)
	$(DBIN)/python -m pip install --quiet -e . "jupyter-book>=1.0.4,<2" "playwright>=1.40"
	rm -rf $(DOCS_VENV)/mathjax && mkdir -p $(DOCS_VENV)/mathjax
	cd $(DOCS_VENV)/mathjax && npm pack --silent $(MATHJAX) >/dev/null && tar xzf mathjax-*.tgz && rm mathjax-*.tgz
	touch $@

docs: $(DOCS_VENV)/.installed
	$(DBIN)/python .ci/docs.py build

docs-check: $(DOCS_VENV)/.installed
	test -f _docs/index.html || $(MAKE) docs
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(DBIN)/python .ci/docs_check.py

clean-venv:
	rm -rf $(VENV) $(DOCS_VENV)
