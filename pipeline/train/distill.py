"""Student training: the baseline (labels only), plain KD, and the debiased student.

loss = BCE(label) + λ·T²·BCE(σ(s/T), σ(t/T)) on samples that have a teacher logit t; samples
without one fall back to the label loss. With unexposed pairs, the pointwise term covers them too and,
weighted `kd_listwise_weight`, a listwise term matches each impression's softmax over itself and its
pairs. The debiased student moves the KD term to an auxiliary head on the shared trunk (the serving head
only fits labels), with the stale adapter first recalibrates the teacher's logits on a fresh labelled
slice, learns from the random-exposure uniform share where there is one, with `debias.propensity` weights
its labels by their items' inverse exposure propensity, and with `debias.doubly_robust` also fits the teacher's
probability on its serving head where it has no label (the teacher as imputation); `debias.part_search` chooses
which of these parts, and which listwise weight, a window's debiased students use, as the λ/T search
chooses λ, T and the listwise weight for KD.

Given a calibration date, every kind is also validated on it after each epoch and keeps its best
epoch (early stopping), so no kind is compared at an epoch where it has overfitted the window.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from typing import Literal

import mlflow
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from pipeline.artifacts import (Platt, StudentFolder, StudentKind, StudentManifest, atomic_path, recorded_search,
                                student_folder)
from pipeline.config import DebiasConfig, Settings, StudentTrainConfig
from pipeline.data.batches import iter_batches
from pipeline.dates import ONE_DAY
from pipeline.lineage import code_version
from pipeline.metrics import auc
from pipeline.models.config import StudentConfig
from pipeline.models.student import UGSepStudent
from pipeline.train.logit_dump import configured_label
from pipeline.train.logit_lookup import LogitLookup
from pipeline.train.loop import Batch, score, train_epoch
from pipeline.train.model_configs import student_config
from pipeline.train.exposure import exposure_split
from pipeline.train.resume import load_resume_state, save_resume_state
from pipeline.train.tracking import log_curves, log_params, training_run
from pipeline.train.unexposed import Catalogue, catalogue, unexposed_pairs
from pipeline.train.windows import holdout_period, require_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaleAdapter:
    """Platt scaling of teacher logits fitted on fresh labels: t' = a·t + b."""

    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.scale + self.shift


def fit_stale_adapter(settings: Settings, day: date, teacher_version: str,
                      rows: UniformShare | None = None) -> StaleAdapter:
    """Fit the adapter on `day`'s labels and the teacher's logits for that day (`teacher_version` is
    the logits' label, see `configured_label`), or on the uniform share's `rows` when given."""
    from sklearn.linear_model import LogisticRegression

    days = rows.days if rows is not None else [day]
    lookup = LogitLookup(settings, days, teacher_version)
    logits, labels = [], []
    batches = (rows.scoring_batches(settings) if rows is not None else
               iter_batches(settings, days, settings.student.scoring_batch_size, "student"))
    for batch in batches:
        values, found = lookup.lookup(batch["sample_id"])
        logits.append(values[found].numpy())
        labels.append(batch["click"][found].numpy())
    x, y = np.concatenate(logits), np.concatenate(labels)
    if len(x) == 0 or y.min() == y.max():
        raise ValueError(f"cannot fit the stale-logit adapter on {[str(d) for d in days]}: it needs teacher logits "
                         f"of {teacher_version!r} there and both click labels")
    model = LogisticRegression(C=1e6).fit(x.reshape(-1, 1), y)
    return StaleAdapter(float(model.coef_[0, 0]), float(model.intercept_[0]))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, found: torch.Tensor,
            temperature: float = 1.0, *, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Temperature-scaled BCE on the teacher's soft labels, averaged over samples with a logit, each weighted
    `weight` when given. At T = 1 this is also the doubly robust loss's imputed error (the teacher as the
    imputation model)."""
    if not bool(found.any()):
        return student_logits.sum() * 0.0
    soft = torch.sigmoid(teacher_logits[found] / temperature)
    per_sample = F.binary_cross_entropy_with_logits(student_logits[found] / temperature, soft, reduction="none")
    if weight is not None:
        per_sample = per_sample * weight[found]
    return per_sample.mean() * temperature**2


def listwise_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, found: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's softmax over each group (a row of `[groups, items]`: an impression
    and its unexposed pairs) against the teacher's, T²-scaled, over the groups with every teacher logit.

    Why beside the pointwise term: a softmax over one user's items ignores the teacher's per-user offset,
    so the student learns how the teacher orders a request's items (what a ranking serves) without
    inheriting how it places users against each other, where a teacher can be worse than the labels."""
    complete = found.all(dim=1)
    if not bool(complete.any()):
        return student_logits.sum() * 0.0
    soft = torch.softmax(teacher_logits[complete] / temperature, dim=1)
    log_student = torch.log_softmax(student_logits[complete] / temperature, dim=1)
    return -(soft * log_student).sum(dim=1).mean() * temperature**2


def student_loss(model: UGSepStudent, batch: Batch, cfg: StudentTrainConfig, lookup: LogitLookup | None,
                 adapter: StaleAdapter, items: Catalogue | None = None,
                 label_weight: torch.Tensor | None = None, doubly_robust: bool = False) -> torch.Tensor:
    """Label BCE on the serving head (per row weighted `label_weight` when given), plus λ·KD on the teacher's
    (adapted) logits where a lookup is given, on the labelled rows and, with a catalogue, on their unexposed
    pairs (weighted `unexposed_weight`).

    The KD term trains the auxiliary head when the model has one, so the serving head fits labels only, unless
    `doubly_robust` (which needs the catalogue and `label_weight`) adds the imputed errors on the serving head:
    the pairs' in full, the labelled rows' by 1 − their weight.
    """
    heads = model.forward_heads(batch)
    loss = F.binary_cross_entropy_with_logits(heads["serving"], batch["click"], weight=label_weight)
    if lookup is None:
        return loss
    head = "auxiliary" if model.config.auxiliary_head else "serving"
    teacher, found = lookup.lookup(batch["sample_id"])
    teacher = adapter(teacher)
    loss = loss + cfg.kd_lambda * kd_loss(heads[head], teacher, found, cfg.kd_temperature)
    if items is None:
        return loss
    pairs = unexposed_pairs(batch, items, cfg.unexposed_per_impression)
    pair_teacher, pair_found = lookup.lookup(pairs["sample_id"])
    pair_teacher = adapter(pair_teacher)
    pair_heads = model.forward_heads(pairs)
    pair_logits = pair_heads[head]
    if doubly_robust:
        assert label_weight is not None, "the doubly robust loss weighs the labelled rows' imputed error by 1 − w"
        loss = loss + (kd_loss(heads["serving"], teacher, found, weight=1 - label_weight)
                       + kd_loss(pair_heads["serving"], pair_teacher, pair_found))
    loss = loss + cfg.kd_lambda * cfg.unexposed_weight * kd_loss(pair_logits, pair_teacher, pair_found,
                                                                 cfg.kd_temperature)
    if cfg.kd_listwise_weight == 0:
        return loss
    # unexposed_pairs lays out row r's pairs at r·k … r·k + k − 1: a group is the row, then its pairs.
    rows = len(batch["sample_id"])
    groups = [torch.cat([a[:, None], b.view(rows, -1)], dim=1) for a, b in
              ((heads[head], pair_logits), (teacher, pair_teacher), (found, pair_found))]
    return loss + cfg.kd_lambda * cfg.kd_listwise_weight * listwise_kd_loss(*groups, cfg.kd_temperature)


@dataclass(frozen=True)
class UniformShare:
    """The random-exposure rows training may use (`pipeline.train.exposure`), as the batches reader takes them,
    with their click labels in the same order."""

    days: list[date]
    ids: pa.Array
    labels: np.ndarray

    @property
    def digest(self) -> str:
        """Identifies the rows (a search candidate's name and a search record's key carry it)."""
        return hashlib.sha1(self.ids.to_numpy().tobytes()).hexdigest()

    def halves(self, seed: int) -> tuple[UniformShare, UniformShare]:
        """A seeded split into a fit half and a scoring half, each with half of either label's rows: the
        debiasing search trains its candidates on the first and compares them on the second, rows none of
        them learnt from (`search_debias_parts`)."""
        rng = np.random.default_rng(seed)
        ids = self.ids.to_numpy()
        fit = np.zeros(len(ids), bool)
        for label in (0.0, 1.0):
            rows = rng.permutation(np.flatnonzero(self.labels == label))
            fit[rows[:len(rows) // 2]] = True
        return (UniformShare(self.days, pa.array(ids[fit]), self.labels[fit]),
                UniformShare(self.days, pa.array(ids[~fit]), self.labels[~fit]))

    def scoring_batches(self, settings: Settings) -> Iterator[Batch]:
        """The rows in scoring batches, in the order of `labels`: what early stopping and the searches score."""
        return iter_batches(settings, self.days, settings.student.scoring_batch_size, "student", sample_ids=self.ids)


UNIFORM_ROW = "uniform_share_row"  # marks a batch of uniform-share rows for the training step


def uniform_share(settings: Settings, calibration_day: date, debias: DebiasConfig) -> UniformShare | None:
    """The uniform share of the run whose calibration date is `calibration_day` (held-out the day after),
    or None without random exposure. No share, or one too small to learn from, is an error naming its numbers
    when the part was asked for (`debias.uniform_data`); left to its default, the part is off and the log says why."""
    holdout = calibration_day + ONE_DAY
    split = exposure_split(settings, calibration_day, holdout)
    if not split.exists:
        if debias.uniform_data:
            raise ValueError(f"debias.uniform_data is on, but {calibration_day} and the day after have no "
                             f"random-exposure rows to draw a uniform share from")
        return None
    days = [calibration_day, *holdout_period(settings, holdout)]
    batches = list(iter_batches(settings, days, settings.student.scoring_batch_size, "student",
                                sample_ids=pa.array(split.uniform)))
    labels = np.concatenate([b["click"].numpy() for b in batches] or [np.zeros(0)])
    ids = np.concatenate([b["sample_id"].numpy() for b in batches] or [np.zeros(0, np.int64)])
    minimum = debias.uniform_min_rows
    if len(labels) < minimum or labels.min() == labels.max():
        problem = (f"the uniform share of {calibration_day}..{holdout} is too small for the selection-bias "
                   f"debiasing part: {len(labels)} rows ({int(labels.sum())} clicks) with "
                   f"evaluation.uniform_share = {settings.evaluation.uniform_share}; it needs ≥ {minimum} "
                   f"rows (debias.uniform_min_rows) and both labels")
        if not debias.uniform_data:
            log.warning("%s; the part is off (set debias.uniform_data = true to make this an error)", problem)
            return None
        raise ValueError(f"{problem} (raise the share or set debias.uniform_data = false)")
    return UniformShare(days, pa.array(ids), labels)


@dataclass
class StudentRun:
    """Where a trained student lives and what it was trained from."""

    name: str
    kind: StudentKind
    seed: int
    folder: StudentFolder
    teacher_version: str | None
    run_id: str


def student_name(settings: Settings, kind: StudentKind, seed: int, days: list[date], teacher_version: str | None,
                 debias: DebiasConfig, calibration_day: date | None, uniform: UniformShare | None = None) -> str:
    """Names everything that changes the weights; the calibration date (or its window's uniform share) early-stops
    every kind. `uniform`: the uniform-share rows a search candidate learns from instead of the whole share."""
    parts = (f"{kind}|{seed}|{days[0]}|{days[-1]}|{teacher_version}|{debias.model_dump_json()}|{calibration_day}|"
             f"{settings.config_hash()}")
    if uniform is not None:
        parts += f"|uniform {uniform.digest}"
    return f"student-{kind}-s{seed}-{days[-1]}-{hashlib.sha1(parts.encode()).hexdigest()[:8]}"


def train_student(settings: Settings, kind: StudentKind, days: list[date], seed: int,
                  teacher_version: str | None = None, calibration_day: date | None = None,
                  debias: DebiasConfig | None = None, role: Literal["student", "search"] = "student",
                  uniform: UniformShare | None = None, stop_on: UniformShare | None = None) -> StudentRun:
    """Train one student on `days` and save it (weights + manifest) under the lakehouse artifacts.

    `role` "search" marks a search candidate, which evaluation leaves out; `uniform` (a debiasing search
    candidate's) replaces the window's uniform share, and `stop_on` (its held half) the rows it early-stops on."""
    require_samples(settings, days, f"{kind} student training")
    debias = debias or settings.debias
    if uniform is not None and kind != "debiased":
        raise ValueError(f"only a debiased student learns from uniform-share rows, not a {kind} student")
    # The settings as configured identify the student for release (`artifacts.find_student`); the λ/T the
    # search picks from them are recorded beside it (kd_lambda, kd_temperature).
    config_hash = settings.config_hash()
    if kind != "base" and teacher_version is None:
        raise ValueError(f"a {kind} student needs --teacher-version (the logits to learn from)")
    kd_search = kind != "base" and bool(settings.student.kd_search_lambdas or settings.student.kd_search_temperatures
                                        or settings.student.kd_search_listwise_weights)
    part_search = kind == "debiased" and bool(debias.part_search)
    if (kd_search or part_search) and calibration_day is None:
        searched = " and ".join(name for name, on in (("λ/T", kd_search), ("debiasing part", part_search)) if on)
        raise ValueError(f"the {searched} search needs a calibration date (--calibration-date)")
    if kind == "debiased" and (debias.stale_adapter or debias.uniform_data) and calibration_day is None:
        raise ValueError("the stale adapter and the uniform share need a calibration date (--calibration-date)")
    # The window's uniform share, read once for both searches and the training: strictly where the debiased
    # student asks for it (`debias.uniform_data`), else leniently (off with a warning when too small).
    share = None
    if uniform is None and calibration_day is not None and (
            kd_search and settings.student.kd_search_on_uniform_share
            or settings.student.early_stop_on_uniform_share
            or kind == "debiased" and debias.uniform_data is not False):
        share = uniform_share(settings, calibration_day,
                              debias if kind == "debiased" else debias.model_copy(update={"uniform_data": None}))
    if kind == "debiased" and debias.uniform_data is not False and uniform is None:
        uniform = share
    listwise_grid = settings.student.kd_search_listwise_weights
    if kd_search:
        settings = search_kd_weights(settings, days, teacher_version, calibration_day,  # type: ignore[arg-type]
                                     share if settings.student.kd_search_on_uniform_share else None)
    if part_search:
        settings, debias = search_debias_parts(settings, days, teacher_version, calibration_day,  # type: ignore[arg-type]
                                               debias, listwise_grid, uniform)
    cfg = settings.student
    # Early stopping's rows (`validation_auc`): with `early_stop_on_uniform_share`, the window's uniform share, or,
    # for a student that learns from it, a seeded half it then does not learn from (the debiasing search's split),
    # where those rows hold enough of either label (`judges`).
    if stop_on is None and share is not None and settings.student.early_stop_on_uniform_share:
        learns = uniform is share
        fit, judged = share.halves(settings.evaluation.uniform_seed) if learns else (None, share)
        if judges(settings, judged):
            uniform, stop_on = fit, judged
    name = student_name(settings, kind, seed, days, teacher_version, debias, calibration_day, uniform)
    folder = student_folder(settings, name)
    auxiliary = kind == "debiased" and debias.auxiliary_head
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    model = UGSepStudent(student_config(settings, auxiliary_head=auxiliary))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # Position debiasing: learn from the neutral-position logits unless the ablation turns it off.
    label = configured_label(settings, teacher_version, debias.neutral_position) if teacher_version else None
    lookup = LogitLookup(settings, days, label) if label is not None and kind != "base" else None
    adapter = StaleAdapter()
    if kind == "debiased" and debias.stale_adapter:
        adapter = fit_stale_adapter(settings, calibration_day, label, uniform)  # type: ignore[arg-type]
    pairs = lookup is not None and cfg.unexposed_per_impression > 0
    doubly_robust = kind == "debiased" and debias.doubly_robust
    if doubly_robust and not pairs:
        raise ValueError("debias.doubly_robust needs the teacher's logits and unexposed pairs "
                         f"(student.unexposed_per_impression = {cfg.unexposed_per_impression})")
    propensity = kind == "debiased" and (debias.propensity or doubly_robust)
    items = catalogue(settings, days) if pairs or propensity else None
    # Per item, once: a step only indexes it.
    item_weight = (items.inverse_propensity(debias.propensity_power, debias.propensity_clip)  # type: ignore[union-attr]
                   if propensity else None)

    def step(batch: Batch) -> torch.Tensor:
        if UNIFORM_ROW in batch:  # unbiased labels, weighted; their logits are not in the window's lookup
            return debias.uniform_weight * student_loss(model, batch, cfg, None, adapter)
        weight = None
        if item_weight is not None:
            weight = item_weight[items.index(batch["item_id"])]  # type: ignore[union-attr]
        return student_loss(model, batch, cfg, lookup, adapter, items if pairs else None, weight, doubly_robust)

    def epoch_batches(epoch: int) -> Iterator[Batch]:
        yield from iter_batches(settings, days, cfg.batch_size, "student", seed=seed * 1000 + epoch)
        if uniform is not None:
            for batch in iter_batches(settings, uniform.days, cfg.batch_size, "student", seed=seed * 1000 + epoch,
                                      sample_ids=uniform.ids):
                yield {**batch, UNIFORM_ROW: torch.ones(len(batch["click"]))}

    fingerprint = f"{name}|{settings.config_hash()}"
    state = load_resume_state(folder.resume_state, fingerprint)
    start_epoch, losses, val_aucs = 1, [], []
    best_model: dict[str, torch.Tensor] | None = None  # the weights of the first epoch with max(val_aucs)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, losses, val_aucs = int(state["epoch"]) + 1, list(state["losses"]), list(state["val_aucs"])
        best_model = state["best_model"]
        log.info("resuming %s after epoch %d", name, start_epoch - 1)
    tags = {"recdistill.kind": kind, "recdistill.teacher_version": str(teacher_version),
            "recdistill.data_dates": f"{days[0]}..{days[-1]}"}
    with training_run(settings, name, tags) as run:
        log_params({"kind": kind, "seed": seed, "kd_lambda": cfg.kd_lambda, "kd_temperature": cfg.kd_temperature,
                    "kd_listwise_weight": cfg.kd_listwise_weight,
                    "preset": cfg.preset, "unexposed_per_impression": cfg.unexposed_per_impression, "role": role,
                    "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, **debias.model_dump(),
                    "adapter_scale": adapter.scale, "adapter_shift": adapter.shift,
                    "uniform_share_rows": len(uniform.ids) if uniform is not None else 0,
                    "logits_available": len(lookup) if lookup else 0})
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            losses.append(train_epoch(epoch_batches(epoch), step, optimizer, f"{kind} epoch {epoch}"))
            mlflow.log_metric("train_loss", losses[-1], step=epoch)
            if calibration_day is not None:
                val_aucs.append(validation_auc(model, settings, calibration_day, stop_on))
                mlflow.log_metric("val_auc", val_aucs[-1], step=epoch)
                if val_aucs[-1] > max(val_aucs[:-1], default=-1.0):
                    best_model = copy.deepcopy(model.state_dict())
            save_resume_state(folder.resume_state, {"fingerprint": fingerprint, "epoch": epoch, "losses": losses,
                                              "val_aucs": val_aucs, "best_model": best_model,
                                              "model": model.state_dict(), "optimizer": optimizer.state_dict()})
        best_epoch = int(np.argmax(val_aucs)) + 1 if val_aucs else cfg.epochs
        if best_model is not None:
            model.load_state_dict(best_model)
            mlflow.log_metric("best_epoch", best_epoch)
        log_curves({"train loss": losses, **({"validation AUC": val_aucs} if val_aucs else {})}, f"{name}",
                   "curves/train_loss.png")
        save_student(model, folder, StudentManifest(
            name=name, kind=kind, seed=seed, teacher_version=teacher_version, data_dates=days,
            calibration_date=calibration_day, adapter=Platt(scale=adapter.scale, shift=adapter.shift),
            debias=debias.model_dump(), best_epoch=best_epoch, validation_aucs=val_aucs, preset=cfg.preset,
            kd_lambda=cfg.kd_lambda, kd_temperature=cfg.kd_temperature, kd_listwise_weight=cfg.kd_listwise_weight,
            role=role,
            uniform_share_rows=len(uniform.ids) if uniform is not None else 0,
            config_hash=config_hash, code_version=code_version(), run_id=run.info.run_id,
            student_config=model.config.model_dump(mode="json"), finished_at=datetime.now(timezone.utc)))
        mlflow.log_artifact(str(folder.manifest_path))
    return StudentRun(name, kind, seed, folder, teacher_version, run.info.run_id)


def search_kd_weights(settings: Settings, days: list[date], teacher_version: str, calibration_day: date,
                      uniform: UniformShare | None) -> Settings:
    """`settings` with the (λ, T, listwise weight) of the grid `kd_search_lambdas × kd_search_temperatures ×
    kd_search_listwise_weights` whose KD students (the first `kd_search_seeds` of `student.seeds`) reach the
    best mean AUC on the calibration date (on the window's `uniform` share instead where there is one: the
    caller passes it where `kd_search_on_uniform_share`), the search itself switched off. The listwise term is
    searched, not on or off everywhere: it raised KD's AUC on ML-100K and lowered it on Coat's random-exposure
    test (README, quality report).

    Every grid point is a normal KD student run, so it resumes from its artifact when it exists: the
    search costs its students once per window, teacher and config, and the winner's students are reused as is.
    The choice is recorded (`_recorded_search`): the window's later students read it.
    """
    cfg = settings.student
    grid = itertools.product(cfg.kd_search_lambdas or [cfg.kd_lambda], cfg.kd_search_temperatures or [cfg.kd_temperature],
                             cfg.kd_search_listwise_weights or [cfg.kd_listwise_weight])
    seeds = cfg.seeds[:cfg.kd_search_seeds]

    def chosen(kd_lambda: float, temperature: float, listwise: float) -> Settings:
        return settings.model_copy(update={"student": cfg.model_copy(update={
            "kd_lambda": kd_lambda, "kd_temperature": temperature, "kd_listwise_weight": listwise,
            "kd_search_lambdas": [], "kd_search_temperatures": [], "kd_search_listwise_weights": []})})

    def run() -> dict[str, object]:
        scored = []
        for point in grid:
            candidate = chosen(*point)
            aucs = [_candidate_auc(candidate, "kd", days, teacher_version, calibration_day, candidate.debias, seed,
                                   uniform) for seed in seeds]
            scored.append((float(np.mean(aucs)), point))
        _, best = max(scored, key=lambda row: row[0])  # the first grid point wins a tie
        log.info("λ/T search on %s, seeds %s: %s → λ = %s, T = %s, listwise weight %s",
                 "the uniform share" if uniform else calibration_day, seeds, scored, *best)
        return {"choice": best, "scored_on": "uniform share" if uniform else str(calibration_day), "scores": scored}

    record = _recorded_search(settings, "kd", days, teacher_version, calibration_day, run, uniform)
    return chosen(*record["choice"])  # type: ignore[misc]


def search_debias_parts(settings: Settings, days: list[date], teacher_version: str, calibration_day: date,
                        debias: DebiasConfig, listwise_grid: list[float],
                        uniform: UniformShare | None) -> tuple[Settings, DebiasConfig]:
    """`settings` and `debias` with each part of `debias.part_search` on or off and the listwise weight from
    `listwise_grid` (the KD search's grid; empty: the weight as set), the combination whose debiased
    students (the first `kd_search_seeds` of `student.seeds`, as in the KD search) score best on average, the
    searches themselves switched off.

    The debiased student chooses its own listwise weight: its KD term trains an auxiliary head, so a term
    that lowered plain KD can still raise it (Coat, README quality report). Where it learns from a uniform
    share (`uniform`), candidates learn from a seeded half of it and are compared on the other half, rows none
    of them saw (the whole share would favour whichever fitted it most); the winner is then trained on the
    whole share, or, with `student.early_stop_on_uniform_share`, is the candidate itself (it learnt from one
    half and early-stopped on the other). Without one, candidates are compared on the calibration date and the
    winner's are those seeds' students.
    """
    cfg = settings.student

    def chosen(*values: object) -> tuple[Settings, DebiasConfig]:
        *parts, listwise = values
        return (settings.model_copy(update={"student": cfg.model_copy(update={
                    "kd_listwise_weight": listwise, "kd_search_listwise_weights": []})}),
                debias.model_copy(update={**dict(zip(debias.part_search, parts)), "part_search": []}))

    def run() -> dict[str, object]:
        fit, held = None, None
        if uniform is not None and np.bincount(uniform.labels.astype(np.int64), minlength=2).min() >= 2:
            fit, held = uniform.halves(settings.evaluation.uniform_seed)  # each half keeps both labels
        scored = []
        for point in itertools.product(*[(True, False)] * len(debias.part_search),
                                       listwise_grid or [cfg.kd_listwise_weight]):
            weighted, candidate = chosen(*point)
            aucs = [_candidate_auc(weighted, "debiased", days, teacher_version, calibration_day, candidate, seed,
                                   held, fit) for seed in cfg.seeds[:cfg.kd_search_seeds]]
            scored.append((float(np.mean(aucs)), point))
        _, best = max(scored, key=lambda row: row[0])  # the first (parts on, the grid's first weight) wins a tie
        where = "half the uniform share" if held is not None else str(calibration_day)
        log.info("debiasing search on %s over %s × listwise %s: %s → %s", where, debias.part_search, listwise_grid,
                 scored, best)
        return {"choice": best, "scored_on": where, "scores": scored}

    record = _recorded_search(settings, "debias", days, teacher_version, calibration_day, run, uniform,
                              f"{debias.model_dump_json()}|{listwise_grid}")
    return chosen(*record["choice"])  # type: ignore[misc]


def _recorded_search(settings: Settings, search: str, days: list[date], teacher_version: str, calibration_day: date,
                     run: Callable[[], dict[str, object]], uniform: UniformShare | None,
                     extra: str = "") -> dict[str, object]:
    """The search's record for this window, teacher, config and uniform share (its choice, where it scored,
    every point's score), or `run()`'s, recorded: the later seeds of a window read the choice instead of
    re-scoring every candidate, and an operator can see why it was made."""
    rows = uniform.digest if uniform is not None else "no uniform share"
    key = (f"{search}|{days[0]}|{days[-1]}|{teacher_version}|{calibration_day}|{settings.config_hash()}|{rows}|"
           f"{extra}")
    return recorded_search(settings, search, days[-1], key, run)


def _candidate_auc(settings: Settings, kind: StudentKind, days: list[date], teacher_version: str,
                   calibration_day: date, debias: DebiasConfig, seed: int, scored_on: UniformShare | None = None,
                   learns_from: UniformShare | None = None) -> float:
    """The AUC of a search candidate of `seed` (trained unless a finished one exists): its best calibration
    AUC, or, given uniform-share rows `scored_on`, its AUC there; `learns_from` replaces the uniform share it
    trains on, and with `student.early_stop_on_uniform_share` it early-stops on `scored_on`."""
    name = student_name(settings, kind, seed, days, teacher_version, debias, calibration_day, learns_from)
    folder = student_folder(settings, name)
    if not folder.manifest_path.exists():  # a finished candidate (maybe the winner, now a student) is read
        judged = learns_from is not None and scored_on is not None and judges(settings, scored_on)
        stop_on = scored_on if judged else None
        folder = train_student(settings, kind, days, seed, teacher_version, calibration_day, debias=debias,
                               role="search", uniform=learns_from, stop_on=stop_on).folder
    if scored_on is None:
        return max(folder.manifest().validation_aucs)
    scored = score(scored_on.scoring_batches(settings), load_student(folder), "scoring on the uniform share")
    return auc(scored.labels, scored.logits)


def judges(settings: Settings, rows: UniformShare) -> bool:
    """Whether early stopping scores uniform-share `rows` (`student.early_stop_on_uniform_share`): only where they
    hold `student.early_stop_min_label_rows` of either label, else the calibration date does (and the log says)."""
    cfg = settings.student
    if not cfg.early_stop_on_uniform_share:
        return False
    rarer = int(np.bincount(rows.labels.astype(np.int64), minlength=2).min())
    if rarer < cfg.early_stop_min_label_rows:
        log.info("early stopping on the calibration date: the uniform-share rows it would score hold %d of the rarer "
                 "label (student.early_stop_min_label_rows = %d)", rarer, cfg.early_stop_min_label_rows)
        return False
    return True


def validation_auc(model: UGSepStudent, settings: Settings, day: date, share: UniformShare | None = None) -> float:
    """The serving head's AUC on `day` (the calibration date), or on the uniform share's rows when given: what
    early stopping compares."""
    batches = (iter_batches(settings, [day], settings.student.scoring_batch_size, "student") if share is None else
               share.scoring_batches(settings))
    model.eval()
    try:
        scored = score(batches, model, f"validating on {day if share is None else 'the uniform share'}")
    finally:
        model.train()
    return auc(scored.labels, scored.logits)


def save_student(model: UGSepStudent, folder: StudentFolder, manifest: StudentManifest) -> None:
    """Weights (a plain state dict), then the manifest that marks the student finished."""
    with atomic_path(folder.weights) as tmp:
        torch.save(model.state_dict(), tmp)
    manifest.write(folder.manifest_path)


def load_student(folder: StudentFolder) -> UGSepStudent:
    """The trained student from `save_student`'s files (weights only, nothing unpickled)."""
    model = UGSepStudent(StudentConfig.model_validate(folder.manifest().student_config))
    model.load_state_dict(torch.load(folder.weights, weights_only=True))
    return model.eval()


