"""Load a student artifact and score requests with it, without the model code.

Imports only torch, the standard library and `pipeline.models.inputs` (the input contract, itself
torch-only). `torch.export.load` reads graphs as JSON and plain tensors as raw bytes, but would
unpickle tensor subclasses, custom objects, legacy weight files or non-empty sample inputs if an
archive held them; `load_student_artifact` opens the archive first and refuses any such entry, so
loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipeline.models.inputs import InputSpec, canonical, check_inputs

ARTIFACT_FORMAT = "recdistill.student-scorer/1"
MANIFEST_FILE = "manifest.json"

# Every entry a pickle-free PT2 archive may hold, relative to its root folder.
_ALLOWED_ENTRIES = re.compile(
    r"^(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|extra/[\w./-]+"
    r"|data/weights/weight_\d+|data/weights/[\w.-]+_weights_config\.json"
    r"|data/constants/tensor_\d+|data/constants/[\w.-]+_constants_config\.json"
    r"|data/sample_inputs/[\w.-]+\.pt)$")


class ArtifactError(ValueError):
    """The artifact is missing, corrupt, of another format, or holds something that would be unpickled."""


def _refuse_pickles(program: Path) -> None:
    """Raise unless every archive entry is JSON or raw tensor bytes."""
    try:
        archive = zipfile.ZipFile(program)
    except (OSError, zipfile.BadZipFile) as err:
        raise ArtifactError(f"{program}: not a readable PT2 archive ({err})") from err
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            entry = info.filename.split("/", 1)[-1]
            if not _ALLOWED_ENTRIES.match(entry):
                raise ArtifactError(f"{program}: unexpected archive entry {info.filename!r}; "
                                    f"only JSON and raw tensor payloads are loaded")
            if entry.startswith("data/sample_inputs/") and info.file_size:
                raise ArtifactError(f"{program}: {info.filename!r} holds pickled sample inputs; "
                                    f"re-export with export_student")
            if entry.endswith("_config.json"):
                payloads = json.loads(archive.read(info)).get("config", {})
                pickled = [name for name, meta in payloads.items() if meta.get("use_pickle")]
                if pickled:
                    raise ArtifactError(f"{program}: payloads {pickled} in {info.filename!r} are pickled "
                                        f"(tensor subclasses or custom objects); refusing to load them")


class StudentArtifact:
    """A loaded student: `score(user_inputs, candidate_inputs) -> FloatTensor[N]` serving logits."""

    def __init__(self, program: torch.nn.Module, manifest: Mapping[str, Any]) -> None:
        self.program = program
        self.manifest = dict(manifest)
        self.user_specs = [InputSpec.from_dict(s) for s in manifest["user_inputs"]]
        self.candidate_specs = [InputSpec.from_dict(s) for s in manifest["candidate_inputs"]]

    def score(self, user_inputs: Mapping[str, Tensor], candidate_inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits [N] for one request: user inputs have 1 row, candidate inputs N rows."""
        check_inputs(user_inputs, self.user_specs, what="user inputs", dims={"B": 1},
                     max_dims={"L": self.manifest["max_sequence_length"]})
        check_inputs(candidate_inputs, self.candidate_specs, what="candidate inputs",
                     max_dims={"B": self.manifest["max_candidates"]})
        # The program takes exactly these keys, in manifest order, in their canonical dtypes.
        with torch.inference_mode():
            return self.program(canonical(user_inputs, self.user_specs),
                                canonical(candidate_inputs, self.candidate_specs))

    __call__ = score


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact in folder `path`, checked to be of this format (the program is not read)."""
    manifest_path = Path(path) / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{manifest_path}: cannot read the artifact manifest ({err})") from err
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{manifest_path}: format {manifest.get('format')!r}; expected {ARTIFACT_FORMAT!r}")
    return manifest


def load_student_artifact(path: str | Path) -> StudentArtifact:
    """Read the manifest, verify the program's digest and contents, and load it."""
    directory = Path(path)
    manifest = read_manifest(directory)
    program_path = directory / manifest["program"]
    digest = hashlib.sha256(program_path.read_bytes()).hexdigest() if program_path.exists() else None
    if digest != manifest["sha256"]:
        raise ArtifactError(f"{program_path}: sha256 {digest} does not match the manifest's {manifest['sha256']}")
    _refuse_pickles(program_path)
    try:
        program = torch.export.load(program_path).module()
    except Exception as err:
        raise ArtifactError(f"{program_path}: torch {torch.__version__} cannot load it (exported with torch "
                            f"{manifest['versions']['torch']}): {err}") from err
    return StudentArtifact(program, manifest)
