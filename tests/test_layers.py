"""Imports only point down the layers (docs/architecture.md) and never take another module's private name.

Every `import` in pipeline/, spark_jobs/ and dags/ counts, including the lazy ones inside functions:
a lazy import still makes the lower layer depend on the higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lowest first. A unit is a top-level module or package of pipeline/ (or a module of a package placed on its
# own), or spark_jobs / dags as a whole.
LAYERS: list[set[str]] = [
    # base: settings, metrics, lineage, the landing contract every layer's rows are checked against, progress
    {"config", "slots", "dates", "metrics", "lineage", "mlflow_store", "data.contract", "progress", "process_tree"},
    {"tables", "spark", "artifacts"},  # where data and artifacts live
    {"data", "hps", "models"},
    {"spark_jobs", "export", "readiness"},
    {"registry"},
    {"train"},
    {"streaming"},
    {"cli", "airflow", "dags"},
]
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """`pipeline.train.teacher` → `train`; `pipeline.data.contract` → `data.contract` (a module placed on its
    own); `spark_jobs.x` → `spark_jobs`; anything else → None."""
    parts = module.split(".")
    if parts[0] == "pipeline":
        if len(parts) > 2 and ".".join(parts[1:3]) in LAYER_OF:
            return ".".join(parts[1:3])
        return parts[1] if len(parts) > 1 else None
    return parts[0] if parts[0] in ("spark_jobs", "dags") else None


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported unit) of every import of this project's modules in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pipeline import assets` imports the unit `assets`.
            modules = [f"{node.module}.{a.name}" for a in node.names] if node.module == "pipeline" else [node.module]
        else:
            continue
        found += [(node.lineno, unit) for module in modules if (unit := unit_of(module)) is not None]
    return found


def source_files() -> list[tuple[Path, str]]:
    files = []
    for root in ("pipeline", "spark_jobs", "dags"):
        for path in sorted((REPO / root).rglob("*.py")):
            unit = unit_of(".".join(path.relative_to(REPO).with_suffix("").parts))
            if unit is not None and unit != "__init__":
                files.append((path, unit))
    return files


def test_every_unit_has_a_layer():
    units = {unit for _, unit in source_files()}
    assert units - set(LAYER_OF) == set(), "add the new module to a layer in LAYERS (and docs/architecture.md)"


@pytest.mark.parametrize("path,unit", source_files(), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else "")
def test_no_import_runs_up_a_layer(path: Path, unit: str):
    upward = [f"line {line}: {unit} (layer {LAYER_OF[unit]}) imports {target} (layer {LAYER_OF[target]})"
              for line, target in project_imports(path)
              if target in LAYER_OF and unit in LAYER_OF and LAYER_OF[target] > LAYER_OF[unit]]
    assert upward == []


@pytest.mark.parametrize("path,unit", source_files(), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else "")
def test_no_module_imports_another_modules_private_name(path: Path, unit: str):
    private = [f"line {node.lineno}: {node.module}.{alias.name}"
               for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.ImportFrom) and node.module and unit_of(node.module) is not None
               for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert private == []


def test_the_check_catches_an_upward_import(tmp_path):
    planted = tmp_path / "metrics.py"
    planted.write_text("def f():\n    from pipeline.train.loop import score\n")
    assert project_imports(planted) == [(2, "train")]
    assert LAYER_OF["train"] > LAYER_OF["metrics"]
