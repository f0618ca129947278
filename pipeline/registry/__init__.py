"""The MLflow registry of the student and the teacher (see docs/registry.md).

- `registry`: `register_student`, `register_teacher`, `promote`, `rollback`, `list_versions`,
  `serve_command`: the calls training, the DAG and the CLI make
- `gate`: the promotion rules, `Decision` (lineage tags: `pipeline/lineage.py`)
- `heldout`: `write_heldout` and `HeldoutAUC`, the gate's held-out evaluator
- `request`: `RequestContract`, the request format; `pyfunc` + `serving_model`: the served model
- `cli`: `registry_app` (`recdistill registry …`); the settings are `Settings.registry` (`pipeline/config.py`)
"""
