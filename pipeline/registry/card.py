"""Model cards: what a registered model is, its inputs, how to call it, its data, teacher, gate and metrics.

One text per version, built from what the registry holds about it (its tags and signature), so
`recdistill registry show VERSION` and the version's description in the MLflow UI say the same.
Every number names the data it was measured on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mlflow import MlflowClient

from pipeline.config import RegistryConfig
from pipeline.lineage import Lineage
from pipeline.registry.gate import PREFIX as GATE
from pipeline.registry.request import RequestContract

# Tags a registration adds beside the lineage, read back by the card.
STUDENT_TAG = "student."  # name, kind, seed, calibration_date
TEACHER_VERSION_TAG = "teacher.version"
# The registered models' own descriptions: what every version of them is.
STUDENT_DESCRIPTION = (
    "recdistill's served ranker: a UG-Sep student distilled from the RankMixer teacher, quantized to W8A16 and "
    "exported with torch.export (loads without training code). One request is one user with N candidates; it "
    "returns one click logit per candidate, and encodes the user once per request. Call it with "
    "`recdistill registry serve` (mlflow models serve of @champion; POST /invocations, see docs/registry.md) "
    "or `mlflow.pyfunc.load_model('models:/recdistill-student@champion').predict(frame)`. Promotion to "
    "@champion only through the gate; each version's description is its model card.")
TEACHER_DESCRIPTION = (
    "recdistill's periodic teacher: RankMixer with a long-sequence encoder, its sparse embeddings on the "
    "hierarchical parameter server. A version is a pointer to its parameter-server snapshot (tag "
    "teacher.snapshot), not the tables themselves. It is not served: `recdistill logits dump --teacher-version "
    "<teacher.version>` scores training samples into the teacher_logits table that students learn from.")


def model_card(client: MlflowClient, config: RegistryConfig, name: str, version: str,
               contract: RequestContract | None = None) -> str:
    """The card of registry `version` of `name` (markdown), from its tags and, for a student, its request contract."""
    mv = client.get_model_version(name, version)
    tags = mv.tags
    aliases = [a for a, v in client.get_registered_model(name).aliases.items() if str(v) == str(version)]
    lineage = Lineage.from_tags(tags)
    title = f"# {name} version {version}" + (f" (@{', @'.join(sorted(aliases))})" if aliases else "")
    if name == config.teacher_model:
        return "\n".join([title, "", *_teacher_lines(tags, lineage)])
    return "\n".join([title, "", *_student_lines(tags, lineage, contract), "", *_gate_lines(tags)])


def _student_lines(tags: Mapping[str, str], lineage: Lineage, contract: RequestContract | None) -> list[str]:
    kind, seed = tags.get(f"{STUDENT_TAG}kind", "?"), tags.get(f"{STUDENT_TAG}seed", "?")
    lines = [f"**What**: W8A16 UG-Sep student ({kind}, seed {seed}), `{tags.get(f'{STUDENT_TAG}name', '?')}`."]
    if contract is not None:
        lines.append(f"**Inputs**: one user ({', '.join(s.name for s in contract.user_inputs)}) with up to "
                     f"{contract.max_candidates} candidates ({', '.join(s.name for s in contract.candidate_inputs)}); "
                     f"output: one click logit per candidate.")
    lines += ["**Call**: `recdistill registry serve` (POST /invocations) or "
              "`mlflow.pyfunc.load_model('models:/recdistill-student/VERSION').predict(frame)`.",
              f"**Data**: trained on {lineage.data_start} … {lineage.data_end}"
              + (f"; early-stopped and calibrated on {tags[f'{STUDENT_TAG}calibration_date']}"
                 if tags.get(f"{STUDENT_TAG}calibration_date") else "") + ".",
              f"**Teacher**: recdistill-teacher version {lineage.teacher_version}." if lineage.teacher_version
              else "**Teacher**: none (labels only)."]
    if "stream.parent_version" in tags:
        lines.append(f"**Increment**: version {tags['stream.parent_version']} fine-tuned on stream batches "
                     f"{tags['stream.first_batch']}..{tags['stream.last_batch']} ({int(tags['stream.samples']):,} "
                     f"samples, only those after the parent's data).")
    metrics = lineage.metrics
    if "parity_requests_auc_fp32" in metrics:
        lines.append(f"**AUC on the W8A16 parity requests** (the first requests of held-out day {tags.get(f'{GATE}day', '?')}): "
                     f"fp32 {metrics['parity_requests_auc_fp32']:.4f}, W8A16 {metrics['parity_requests_auc_w8a16']:.4f}.")
    if "latency_gain" in metrics:
        lines.append(f"**Latency**: W8A16 + user reuse {metrics['latency_gain']:.2f}x faster than naive fp32 scoring.")
    lines.append(f"**Lineage**: config {lineage.config_hash}, code {lineage.code_version}.")
    return lines


def _gate_lines(tags: Mapping[str, str]) -> list[str]:
    if f"{GATE}decision" not in tags:
        return ["**Gate**: not run yet."]
    day = tags.get(f"{GATE}day", "?")
    lines = [f"**Gate** on held-out day {day}: {tags[f'{GATE}decision']} "
             f"(champion before: {tags.get(f'{GATE}champion_before', 'none')})."]
    for check in json.loads(tags.get(f"{GATE}checks", "[]")):
        lines.append(f"- {check['name']}: {'pass' if check['passed'] else 'FAIL'} ({check['detail']})")
    for who in ("challenger", "champion"):
        if f"{GATE}{who}_gate_day_auc" in tags:
            lines.append(f"- AUC on gate day {day} (all its requests, W8A16), {who}: "
                         f"{float(tags[f'{GATE}{who}_gate_day_auc']):.4f}")
    return lines


def _teacher_lines(tags: Mapping[str, str], lineage: Lineage) -> list[str]:
    metrics = ", ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in sorted(lineage.metrics.items()))
    return [f"**What**: teacher `{tags.get(TEACHER_VERSION_TAG, '?')}` (RankMixer + long-sequence encoder), a "
            f"pointer to its parameter-server snapshot `{tags.get('teacher.snapshot', '?')}`.",
            f"**Use**: `recdistill logits dump --teacher-version {tags.get(TEACHER_VERSION_TAG, 'VERSION')}`.",
            f"**Data**: trained on {lineage.data_start} … {lineage.data_end}.",
            f"**Metrics on its validation day** (the day after its window, best epoch): {metrics or 'none'}.",
            f"**Lineage**: config {lineage.config_hash}, code {lineage.code_version}."]


