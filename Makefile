# Two entry points (see README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
JARS := .cache/ivy/.resolved

.PHONY: setup demo test airflow clean

setup: $(STAMP) $(JARS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip check
	rm -f $(VENV)/.installed-* && touch $@

# Spark's Ivy resolves the Delta jars from Maven Central into .cache/ivy once.
$(JARS): $(STAMP)
	$(BIN)/python -m pipeline.spark
	touch $@

demo: setup
	$(BIN)/recdistill demo

test: setup
	$(BIN)/pytest

clean:
	rm -rf lakehouse .cache/ivy .pytest_cache
