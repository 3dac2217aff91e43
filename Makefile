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

.PHONY: all install data notebooks book book-only test unit nbval clean synth

all: book  ## set up, fetch TIA2, execute the notebooks, build the HTML book

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

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
	$(BIN)/jupyter-book build . -W --all --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

test: unit nbval book-only  ## unit tests, nbval on every notebook, book build with -W

unit: install
	$(BIN)/python -m pytest -q

nbval: install
	$(BIN)/python -m pytest -q --nbval $(NOTEBOOKS) --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Retrain the synthetic world from scratch (about 35 minutes on 2 cores); replaces the artifacts in data/synth
synth: install
	$(BIN)/textnorm train-generator --out data/synth/generator --steps 3000 --overwrite
	$(BIN)/textnorm train-proxy --kind contrastive --out data/synth/proxy_contrastive --overwrite
	$(BIN)/textnorm train-proxy --kind preference --out data/synth/proxy_preference --overwrite
	$(BIN)/textnorm build-synth-benchmark --generator data/synth/generator --out data/synth/tia2_synth.npz --overwrite

clean:
	rm -rf _build
