# The two front-door commands: `make demo` and `make test`.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench coverage clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/entitynet demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check entitynet beam_pipelines train configs tests benchmarks tools
	$(BIN)/ruff format --check entitynet beam_pipelines train configs tests benchmarks tools

coverage: $(STAMP)
	$(BIN)/coverage run -m pytest tests -q
	$(BIN)/coverage report

bench: $(STAMP)
	$(BIN)/python benchmarks/kg_expand.py
	$(BIN)/python benchmarks/harvest_vs_img2dataset.py
	$(BIN)/python benchmarks/curation.py
	$(BIN)/python benchmarks/train_vs_open_clip.py

clean:
	rm -rf demo-out .pytest_cache
