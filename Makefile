# Two entry points (see README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
# Written last by `python -m pipeline.spark`, after the jars' record.
SPARK_READY := .cache/ivy/spark-classes.jsa

.PHONY: setup constraints demo test unit integration compose-check airflow mlflow-server clean

setup: $(STAMP) $(SPARK_READY)

# uv installs the same pinned set as pip (pip freeze alike), from empty caches in 57 s against pip's 199 s here.
# --compile-bytecode writes every package's .pyc now: where the environment sets PYTHONDONTWRITEBYTECODE (this
# machine's does), nothing is cached at import, and each of the suite's processes compiled torch, mlflow,
# airflow and sklearn from source again (`import pipeline.train.students` 12.4 s here, 5.6 s with the .pyc).
INSTALL := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python
# constraints.txt pins every package of the set that last passed `make test`, so that a later release of a
# dependency's dependency cannot change what a fresh checkout installs (`make constraints` rewrites it).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.9
	$(INSTALL) -c constraints.txt -e '.[dev]'
	$(BIN)/pip check
	rm -f $(VENV)/.installed-* && touch $@

# Spark's Ivy resolves the Delta jars from Maven Central into .cache/ivy once (its report prints here) and
# pipeline/spark.py records the jar files, which every later Spark start loads without Ivy; then one JVM runs
# every job on tiny data and archives the classes it loaded, which every later Spark JVM maps (AppCDS).
$(SPARK_READY): $(STAMP)
	$(BIN)/python -m pipeline.spark

# After a change to pyproject.toml's pins: the newest set it allows, installed and recorded; then `make test`.
constraints: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.9
	$(INSTALL) -e '.[dev]'
	$(BIN)/uv pip freeze -q --python $(BIN)/python --exclude-editable --exclude pip --exclude uv > constraints.txt

demo: setup
	$(BIN)/recdistill demo

# Debian's docker-compose validates docker/compose.yaml in tests/docker (no Docker engine needed).
COMPOSE := /usr/bin/docker-compose
$(COMPOSE):
	apt-get update && apt-get install -y docker-compose

# The whole suite, what .ci/run runs: the unit tests, then the cluster-shaped integration run (in the recipe,
# not as a second prerequisite, so that `make -j` cannot start both at once on the same cores).
test: unit
	$(MAKE) integration

unit: setup $(COMPOSE)
	$(BIN)/pytest

# The cluster-shaped run: PostgreSQL (installed if missing), Spark standalone and an MLflow server on
# 127.0.0.1, the tiny profile end to end on them against the embedded run, two fault drills.
integration: setup
	integration/run.sh

# Opt-in, needs root and ~25 GB of disk: the compose stack built and started for real (docker/check.sh).
compose-check:
	docker/check.sh

# Airflow standalone: SQLite in .cache/airflow, DAGs from dags/ (they start paused), spark_default = local[*],
# sized by the `airflow` settings (2-core defaults); UI on :8080 (RECDISTILL_AIRFLOW__PORT), admin password in
# .cache/airflow/simple_auth_manager_passwords.json.generated. Ctrl+C or SIGTERM stops every process it started.
airflow: setup
	$(BIN)/python -m pipeline.airflow.env standalone

# An MLflow tracking server over the lakehouse's SQLite store (see mlflow/README.md).
mlflow-server: setup
	mlflow/server.sh

clean:
	rm -rf lakehouse .cache/ivy .cache/airflow .pytest_cache
