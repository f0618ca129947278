"""Export the student's request-level scorer: a torch.export program plus a JSON manifest.

The program is `UGSepStudent.score` traced with dynamic N (candidates) and L (sequence length), so
the artifact keeps the reuse: user side once, group tokens per candidate. It takes each input in
its canonical dtype (the spec's first); the loader casts the other accepted dtypes to it. The manifest names every
input (slot, dtype, shape, id range), the limits, the quantization and the versions; the loader
checks requests against it. Sample inputs are dropped before saving, so the archive holds only
JSON and raw tensor bytes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline.export.loader import ARTIFACT_FORMAT, MANIFEST_FILE
from pipeline.models.inputs import canonical
from pipeline.models.quantize import Int8PerTokenFFN
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import random_request

PROGRAM_FILE = "student.pt2"


class _RequestScorer(nn.Module):
    """The exported entry point: (user inputs, candidate inputs) → logits [N]."""

    def __init__(self, student: UGSepStudent) -> None:
        super().__init__()
        self.student = student

    def forward(self, user: dict[str, Tensor], candidates: dict[str, Tensor]) -> Tensor:
        return self.student.score(user, candidates)


def export_student(student: UGSepStudent, directory: str | Path, *, max_candidates: int = 4096) -> Path:
    """Write `student.pt2` and `manifest.json` into `directory`; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = student.config
    student = student.eval()
    user_specs, candidate_specs = student.user_inputs(), student.candidate_inputs()
    user, candidates = random_request(config, 8, torch.Generator().manual_seed(0))
    user, candidates = canonical(user, user_specs), canonical(candidates, candidate_specs)
    n_candidates = torch.export.Dim("n_candidates", min=1, max=max_candidates)
    length = torch.export.Dim("sequence_length", min=1, max=config.sequence_length)
    dynamic_shapes = (
        {s.name: {axis: length for axis, d in enumerate(s.shape) if d == "L"} or None for s in user_specs},
        {s.name: {0: n_candidates} for s in candidate_specs},
    )
    with torch.no_grad():
        program = torch.export.export(_RequestScorer(student), (user, candidates), dynamic_shapes=dynamic_shapes)
    program.example_inputs = None  # they would be pickled into the archive
    program_path = directory / PROGRAM_FILE
    torch.export.save(program, program_path)
    quantized = any(isinstance(m, Int8PerTokenFFN) for m in student.modules())
    manifest = {
        "format": ARTIFACT_FORMAT,
        "program": PROGRAM_FILE,
        "sha256": hashlib.sha256(program_path.read_bytes()).hexdigest(),
        "output": "serving logits, float32[N], one per candidate",
        "user_inputs": [s.to_dict() for s in user_specs],
        "candidate_inputs": [s.to_dict() for s in candidate_specs],
        "max_sequence_length": config.sequence_length,
        "max_candidates": max_candidates,
        "sequence_order": "most recent first, 0-padded after seq_length",
        "quantization": "w8a16: int8 per-channel weights, 16-bit activations" if quantized else "none (fp32)",
        "token_split": {"user_tokens": config.n_user_tokens, "group_tokens": config.n_group_tokens},
        "config": config.model_dump(mode="json"),
        "versions": {"torch": torch.__version__, "recdistill": version("recdistill"),
                     "python": platform.python_version()},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return directory
