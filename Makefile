# textnorm: one command for everything (`make all`), one for all tests (`make test`).
# Offline? Set TEXTNORM_TIA2_MIRROR to a folder holding the nine TIA2 files (CI: ../shared/tia2).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

# Notebooks run in other working directories (papermill, nbval): make the mirror path absolute.
ifdef TEXTNORM_TIA2_MIRROR
export TEXTNORM_TIA2_MIRROR := $(abspath $(TEXTNORM_TIA2_MIRROR))
endif
# Tests and notebooks use one torch thread: two busy processes on two cores slow torch 40-90x.
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE ?= 1

.PHONY: all install lock data notebooks nb nb-usage book book-only browser test unit nbval clean synth overopt overopt-longer overopt-confirm overopt-confirm16 overopt16 study

all: book  ## set up, fetch TIA2, execute the notebooks, build the HTML book

# requirements.lock pins every package to the versions that produced the committed outputs (nbval compares them)
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

# rewrite requirements.lock: resolve pyproject.toml's dependencies afresh in a scratch environment (not
# constrained by the old lock, so raised version floors resolve), then freeze it
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	@{ echo "# Pins of every package in the environment that produced the committed notebook outputs (pip freeze of"; \
	  echo "# make lock on Python $$(.venv-lock/bin/python -c 'import sys; print(sys.version.split()[0])'), $$(uname -s) $$(uname -m), CPU). make install uses it as a constraints file:"; \
	  echo '#   pip install -c requirements.lock -e ".[dev]"'; \
	  echo "# Refresh it after changing pyproject.toml: make lock (then re-execute the chapters and check them with nbval)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^textnorm' | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; \
	} > requirements.lock.new && mv requirements.lock.new requirements.lock && rm -rf .venv-lock
	@echo "requirements.lock: $$(grep -vc '^#' requirements.lock) pins; run make install to use them"

install: $(VENV)/.installed

data: install
	$(BIN)/textnorm fetch

notebooks: data
	@for nb in $(NOTEBOOKS); do \
	  echo "papermill $$nb"; \
	  $(BIN)/papermill --log-level WARNING --no-progress-bar -k python3 $$nb $$nb || exit 1; \
	done

book: notebooks book-only

book-only: install
	rm -rf _build/html   # no stale pages of renamed chapters
	$(BIN)/jupyter-book build . -W --all --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

# make test T=tests/test_metrics.py: that test file (or -k expression via T="tests/x.py -k name") only
ifdef T
test: install
	$(BIN)/python -m pytest -q $(T)
else
test: unit nbval book-only browser  ## unit tests, nbval on every notebook, book build with -W, pages in Chromium
endif

unit: install
	$(BIN)/python -m pytest -q

# every built page in headless Chromium at 1280 px and at 390 px (a phone): no sideways scroll, images load,
# no console errors, figure text of at least 9 px with alt text, the phone's navigation and contents open.
# make browser SCREENSHOTS=shots: also full-page PNGs of the first page and the overoptimization chapter.
# Installs Debian's chromium when it is missing (as root, or with sudo).
browser: book-only
	@if [ -z "$$CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
	    && ! command -v google-chrome >/dev/null 2>&1; then \
	  if ! command -v apt-get >/dev/null 2>&1; then echo "no Chromium: install it, or set CHROMIUM=/path/to/chrome"; exit 1; fi; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null \
	  || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
	  || { echo "could not install chromium with apt (root or passwordless sudo needed); set CHROMIUM=/path/to/chrome"; exit 1; }; \
	fi
	$(BIN)/python book/check_pages.py _build/html $(if $(SCREENSHOTS),--screenshots $(SCREENSHOTS))

# make nb NB=notebooks/01_tia2.ipynb: execute one chapter in place; make nbval NB=...: check only it
nb: $(if $(NB),data,nb-usage)
	$(BIN)/papermill --log-level WARNING --no-progress-bar -k python3 $(NB) $(NB)

nb-usage:
	@echo "usage: make nb NB=notebooks/01_tia2.ipynb"; exit 2

nbval: install
	$(BIN)/python -m pytest -q --nbval $(or $(NB),$(NOTEBOOKS)) --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Retrain the synthetic world from scratch (about 45 minutes on 2 cores); replaces the artifacts in data/synth
synth: install
	$(BIN)/textnorm train-generator --out data/synth/generator --steps 3000 --overwrite
	$(BIN)/textnorm train-proxy --kind contrastive --out data/synth/proxy_contrastive --overwrite
	$(BIN)/textnorm train-proxy --kind preference --out data/synth/proxy_preference --overwrite
	$(BIN)/textnorm train-proxy --kind preference --n-pairs 16000 --threads 1 --out data/synth/proxy_preference_n16000 --overwrite
	$(BIN)/textnorm train-proxy --kind preference --n-pairs 1000 --threads 1 --out data/synth/proxy_preference_n1000 --overwrite
	$(BIN)/textnorm build-synth-benchmark --generator data/synth/generator --out data/synth/tia2_synth.npz --overwrite

# Re-run the pre-registered over-optimisation grid, params/overopt_cpu.yaml (about 6 hours on 2 cores;
# after a kill, `make overopt` again goes on: finished runs are kept, a run in training resumes from its
# checkpoint, one or two minutes old at most, with the same numbers);
# replaces the logs in data/overopt once every run has finished
overopt: install
	$(BIN)/textnorm overopt --grid params/overopt_cpu.yaml --out data/overopt --overwrite

# Re-run the registered addition, params/overopt_gold_48.yaml: the DDPO gold control for 48 rounds, seeds 0, 3
# and 4 (three workers, so that the three runs end together: about 75 minutes on 2 cores); seeds 1 and 2 are the
# pilot's runs in data/overopt_pilot_48 (params/pilots/gold_48_rounds.yaml). Chapter 03 reads both folders.
overopt-longer: install
	$(BIN)/textnorm overopt --grid params/overopt_gold_48.yaml --out data/overopt_gold_48 --overwrite --workers 3

# Re-run its confirmatory run on fresh seeds, params/overopt_gold_48_confirm.yaml: the same runs on seeds 5 to 9
# (about 90 minutes on 2 cores); chapter 03 reads it through confirm_gold
overopt-confirm: install
	$(BIN)/textnorm overopt --grid params/overopt_gold_48_confirm.yaml --out data/overopt_gold_48_confirm --overwrite --workers 2

# The third registration (2026-12-07), committed before its runs: the gold control's confirmatory run on 16
# training prompts, params/overopt_gold_48_16prompts_confirm.yaml (48 rounds, seeds 5 to 10, about 105 minutes on
# 2 cores), and the 16-prompt grid, params/overopt_cpu_16prompts.yaml (about 6-7 hours on 2 cores, over several
# sessions: a kill goes on from the checkpoints), which replaces the grid above once every run has finished
overopt-confirm16: install
	$(BIN)/textnorm overopt --grid params/overopt_gold_48_16prompts_confirm.yaml --out data/overopt_gold_48_16prompts_confirm --overwrite --workers 2

overopt16: install
	$(BIN)/textnorm overopt --grid params/overopt_cpu_16prompts.yaml --out data/overopt_16prompts --overwrite --workers 2

# Re-make the human-evaluation study's images from the over-optimisation logs (15 minutes on 2 cores for the
# first grid's logs; the second grid's runs take 4x the samples a round). Chapter 04 refuses a study of other logs
study: install
	$(BIN)/textnorm study --logs data/overopt --out data/study --overwrite

clean:
	rm -rf _build
