"""MLflow registry of the student and teacher: registration with lineage, the gated promotion with
aliases, rollback and serving. `registry` holds the calls training and the DAG make; `pyfunc` and
`request` are what the served model runs."""
