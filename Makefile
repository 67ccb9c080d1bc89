# radioalign — `make paper` reproduces the study, `make test` runs the offline tests.
# Each target builds or refreshes .venv from pyproject.toml when it is missing or stale.

PYTHON   ?= python3
PROFILE  ?= paper
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
# A CPU-friendly torch pin: a CPU wheel on CI, the regular wheel elsewhere.
# Override for another build, e.g. `make TORCH_SPEC="torch==2.13.0 --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
TIMEOUT  ?= 7200

export HF_HUB_DISABLE_TELEMETRY := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help setup paper test test-fast lab bench download references notebooks-index controls-published pdf clean

help:
	@echo "make paper [PROFILE=paper|cpu|smoke]  run the numbered notebooks headless, write results/<profile>/"
	@echo "make test                            the offline test suite (runs the smoke study once)"
	@echo "make test-fast                       the tests not marked slow (under a minute)"
	@echo "make lab                             JupyterLab on notebooks/"
	@echo "make bench                           throughput benchmark (no download)"
	@echo "make bench-survey                    survey tool benchmark: ingest, Ray vs local, search side by side with FAISS and hnswlib at 10^6 (--quick: 10^5)"
	@echo "make download                        prefetch data, captions and model for offline nodes"
	@echo "make references                      regenerate tests/notebooks/ (smoke profile)"
	@echo "make notebooks-index                 rewrite the Colab cells and the README's notebook table"
	@echo "make controls-published              measure the published-caption controls (offline) and regenerate their prose"
	@echo "make pdf                             build the reproduction report in paper/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "radioalign needs Python >= 3.10")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

setup: $(STAMP)

# nbval re-executes the committed smoke references (tests/notebooks/) into a fresh
# results folder and compares the cells marked # NBVAL_CHECK_OUTPUT: that is the session's
# one smoke study; tests/test_pipeline.py checks what it wrote (tests/conftest.py orders
# it after the references). Then the unit tests.
TEST_RESULTS := build/test-results
OFFLINE  := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
test: $(STAMP)
	rm -rf $(TEST_RESULTS)
	$(OFFLINE) RADIOALIGN_RESULTS_DIR=$(CURDIR)/$(TEST_RESULTS) \
	  $(BIN)/python -m pytest --nbval-lax --nbval-sanitize-with tests/notebooks/sanitize.cfg \
	  --nbval-cell-timeout=600 $(PYTEST_ARGS)

# No notebooks, nothing marked slow.
test-fast: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

paper: $(STAMP)
	$(BIN)/python -m radioalign.tools.pipeline --profile $(PROFILE) --timeout $(TIMEOUT)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python -m radioalign.tools.bench

.PHONY: bench-survey
bench-survey: $(STAMP)
	$(BIN)/python -m radioalign.survey.bench $(BENCH_ARGS)

download: $(STAMP)
	$(BIN)/python -m radioalign.tools.pipeline --download --profile $(PROFILE)

references: $(STAMP)
	$(BIN)/python -m radioalign.tools.pipeline --references

notebooks-index: $(STAMP)
	$(BIN)/python -m radioalign.tools.notebooks_index

# The text-only baselines over 20 fold seeds and the caption audit on the authors' published
# test captions (../shared or the downloaded files), offline, into
# paper/measurements/controls_published.json; then the prose generated from it.
controls-published: $(STAMP)
	$(OFFLINE) $(BIN)/python -m radioalign.study.published_controls
	$(BIN)/python -m radioalign.tools.notebooks_index

pdf: $(STAMP)
	$(BIN)/python -m radioalign.tools.report --profile $(PROFILE)

clean:
	rm -rf build .pytest_cache
