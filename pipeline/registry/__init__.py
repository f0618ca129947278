"""The MLflow registry of the student and the teacher (see docs/registry.md).

- `registry`: `register_student`, `register_teacher`, `promote`, `rollback`, `list_versions`,
  `serve_command`, `experiment_id`: the calls training, the DAG and the CLI make
- `lineage`: `Lineage`, the tags every version carries; `gate`: the promotion rules, `Decision`
- `evaluate`: `write_heldout` and `HeldoutAUC`, the gate's held-out evaluator
- `request`: `RequestContract`, the request format; `pyfunc` + `serving_model`: the served model
- `config`: `RegistryConfig`; `cli`: `registry_app` (`recdistill registry …`)
"""
