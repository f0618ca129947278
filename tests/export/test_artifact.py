"""The exported student artifact: same scores as the module, loads without model code or pickle."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.export.artifact import PROGRAM_FILE, export_student
from pipeline.export.loader import MANIFEST_FILE, ArtifactError, load_student_artifact
from pipeline.models.config import StudentConfig
from pipeline.models.inputs import InputError
from pipeline.models.quantize import quantize_w8a16
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import random_request

CONFIG = StudentConfig.preset("tiny")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def student() -> UGSepStudent:
    torch.manual_seed(0)
    return UGSepStudent(CONFIG).eval()


@pytest.fixture(scope="module")
def artifact_dir(student, tmp_path_factory) -> Path:
    return export_student(student, tmp_path_factory.mktemp("fp32"), max_candidates=512)


@pytest.fixture(scope="module")
def quantized_artifact(student, tmp_path_factory) -> tuple[UGSepStudent, Path]:
    quantized = quantize_w8a16(student)
    return quantized, export_student(quantized, tmp_path_factory.mktemp("w8a16"), max_candidates=512)


@pytest.mark.parametrize(("n_candidates", "length"), [(1, 8), (5, 3), (300, 8)])
def test_artifact_scores_equal_the_module(student, artifact_dir, n_candidates, length):
    user, candidates = random_request(CONFIG, n_candidates, torch.Generator().manual_seed(n_candidates), length)
    with torch.no_grad():
        expected = student.score(user, candidates)
    torch.testing.assert_close(load_student_artifact(artifact_dir).score(user, candidates), expected,
                               rtol=0, atol=1e-6)


def test_w8a16_artifact_scores_equal_the_quantized_module(quantized_artifact):
    quantized, directory = quantized_artifact
    user, candidates = random_request(CONFIG, 40, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = quantized.score(user, candidates)
    artifact = load_student_artifact(directory)
    torch.testing.assert_close(artifact(user, candidates), expected, rtol=0, atol=1e-6)
    assert artifact.manifest["quantization"].startswith("w8a16")


def test_artifact_takes_time_gaps_as_float_or_int_seconds(student, artifact_dir):
    user, candidates = random_request(CONFIG, 6, torch.Generator().manual_seed(4))
    artifact = load_student_artifact(artifact_dir)
    as_int = {**user, "seq_time_gap": user["seq_time_gap"].long()}
    with torch.no_grad():
        expected = student.score(user, candidates)
    torch.testing.assert_close(artifact(user, candidates), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(artifact(as_int, candidates), expected, rtol=0, atol=1e-6)


def test_manifest_names_slots_shapes_and_versions(artifact_dir):
    manifest = json.loads((artifact_dir / MANIFEST_FILE).read_text())
    assert [s["name"] for s in manifest["candidate_inputs"]] == ["item_id", "item_category", "dense_item"]
    dense_user = next(s for s in manifest["user_inputs"] if s["name"] == "dense_user")
    assert dense_user["shape"] == ["B", 9] and dense_user["dtypes"] == ["float32"]
    assert manifest["token_split"] == {"user_tokens": 6, "group_tokens": 2}
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["max_sequence_length"] == 8 and manifest["max_candidates"] == 512


def test_artifact_checks_requests_against_its_manifest(artifact_dir):
    artifact = load_student_artifact(artifact_dir)
    user, candidates = random_request(CONFIG, 4, torch.Generator().manual_seed(2))
    with pytest.raises(InputError, match="missing input.*'item_category'"):
        artifact({**user}, {k: v for k, v in candidates.items() if k != "item_category"})
    too_many = random_request(CONFIG, 513, torch.Generator().manual_seed(3))[1]
    with pytest.raises(InputError, match="at most 512"):
        artifact(user, too_many)


def test_loading_imports_no_model_code(artifact_dir):
    script = (
        "import sys\n"
        "from pipeline.export.loader import load_student_artifact\n"
        f"artifact = load_student_artifact({str(artifact_dir)!r})\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pipeline'))\n"
        "assert loaded == ['pipeline', 'pipeline.export', 'pipeline.export.loader', 'pipeline.models',\n"
        "                  'pipeline.models.inputs'], loaded\n"
        "assert 'pydantic' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True)


def _rewrite_program(directory: Path, edit) -> None:
    """Rewrite the archive through `edit(name, data) -> data | None` and re-sign the manifest."""
    program = directory / PROGRAM_FILE
    entries = {}
    with zipfile.ZipFile(program) as archive:
        for info in archive.infolist():
            data = edit(info.filename, archive.read(info))
            if data is not None:
                entries[info.filename] = data
    with zipfile.ZipFile(program, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["sha256"] = hashlib.sha256(program.read_bytes()).hexdigest()
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def _mark_first_weight_pickled(name: str, data: bytes) -> bytes:
    if not name.endswith("_weights_config.json"):
        return data
    config = json.loads(data)
    next(iter(config["config"].values()))["use_pickle"] = True
    return json.dumps(config).encode()




@pytest.mark.parametrize(("edit", "message"), [
    (_mark_first_weight_pickled, "are pickled"),
    (lambda name, data: b"\x80\x02}q\x00." if "sample_inputs" in name else data, "pickled sample inputs"),
])
def test_loader_refuses_anything_it_would_unpickle(artifact_dir, tmp_path, edit, message):
    tampered = shutil.copytree(artifact_dir, tmp_path / "tampered")
    _rewrite_program(tampered, edit)
    with pytest.raises(ArtifactError, match=message):
        load_student_artifact(tampered)


def test_loader_refuses_unknown_archive_entries(artifact_dir, tmp_path):
    tampered = shutil.copytree(artifact_dir, tmp_path / "tampered")
    root = next(iter(zipfile.ZipFile(tampered / PROGRAM_FILE).namelist())).split("/")[0]
    with zipfile.ZipFile(tampered / PROGRAM_FILE, "a") as archive:
        archive.writestr(f"{root}/data/constants/custom_obj_0", b"\x80\x02.")
    _rewrite_program(tampered, lambda name, data: data)
    with pytest.raises(ArtifactError, match="unexpected archive entry .*custom_obj_0"):
        load_student_artifact(tampered)


def test_loader_refuses_a_program_that_does_not_match_its_manifest(artifact_dir, tmp_path):
    tampered = shutil.copytree(artifact_dir, tmp_path / "tampered")
    with open(tampered / PROGRAM_FILE, "ab") as program:
        program.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        load_student_artifact(tampered)
