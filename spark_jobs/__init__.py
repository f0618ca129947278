"""Spark jobs: one module per table, each with a pure `build_<table>` and a spark-submit `main()`."""
