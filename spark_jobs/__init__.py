"""Spark jobs: one module per table, each with a pure `build_<table>` and a spark-submit `main()`;
`class_archive` is set-up's warm-up that runs them all in one JVM (see `pipeline.spark`)."""
