# The two front-door commands: `make demo` and `make test`.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck docs bench coverage clean install browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests also need the open_clip/PyTorch extras (parity tests), a few GB the demo does not use;
# one pip run installs everything (a superset of $(STAMP), which it marks done too).
TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,interop]'
	touch $(STAMP) $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/entitynet demo --out demo-out

# The explorer's browser test drives Debian's chromium through chromium-driver (apt-get, as root or
# with sudo). When they cannot be installed, that test fails and says why; the rest still runs.
browser:
	-tools/install_browser.sh

# Two workers, whole files each (module fixtures stay together); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest tests $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The unit tests without the end-to-end runs (marked `slow`): a few minutes.
test-fast: $(TEST_STAMP) browser
	$(BIN)/python -m pytest tests -m "not slow" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

LINTED := entitynet entitynet_cli beam_pipelines train configs tests benchmarks tools
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# mypy over the library (configured in pyproject.toml)
typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The documentation site (mkdocs.yml over docs/) with warnings as errors: a broken link or a page
# missing from the nav fails the build. Its own stamp: the docs extra is two small packages.
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

coverage: $(TEST_STAMP)
	$(BIN)/coverage run -m pytest tests -q
	$(BIN)/coverage report

bench: $(STAMP)
	$(BIN)/python benchmarks/kg_expand.py
	$(BIN)/python benchmarks/harvest_vs_img2dataset.py
	$(BIN)/python benchmarks/curation.py
	$(BIN)/python benchmarks/train_vs_open_clip.py
	$(BIN)/python benchmarks/retrieval.py

clean:
	rm -rf demo-out site .pytest_cache
