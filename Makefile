# Everything a newcomer needs: `make run` and `make test` work from a clean clone with only Python installed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test demo lint bench train evaluate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## start the service on the shipped model and a SQLite file
	$(BIN)/tagger serve

demo: $(STAMP)  ## the product on sample traffic against a local helpdesk stand-in (own SQLite file in .demo/)
	$(BIN)/python docs/demo.py

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check tagger tests benchmarks

train: $(STAMP)
	$(BIN)/tagger train

evaluate: $(STAMP)
	$(BIN)/tagger evaluate

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/classify_bench.py

clean:
	rm -rf $(VENV) .pytest_cache
