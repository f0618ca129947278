"""The one typed configuration of recdistill.

Settings come from three layers, later wins: field defaults → a named profile (`tiny` for tests,
`demo` for the README's demo, `prod` for a cluster) → environment variables. Any field can be
overridden as ``RECDISTILL_<SECTION>__<FIELD>`` (e.g. ``RECDISTILL_SEQUENCES__TEACHER_LENGTH=1000``);
the common ones also have short names listed in ``ENV_SHORTCUTS``.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, NonNegativeFloat, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ProfileName = Literal["tiny", "demo", "prod"]
# Student sizes by serving budget, smallest first, then the unit tests' and the UG-Sep benchmark's students;
# `pipeline.models.config.StudentConfig.preset` builds each.
STUDENT_SIZES = ("xs", "s", "m")
STUDENT_PRESETS = (*STUDENT_SIZES, "tiny", "default")
ENV_PREFIX = "RECDISTILL_"
# Default folders (lakehouse, caches) live here, wherever the command runs from.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class LakehouseConfig(BaseModel):
    """Where every table and landing file lives (a local path or any URI Spark and delta-rs read)."""

    root: Path = PROJECT_ROOT / "lakehouse"

    @field_validator("root")
    @classmethod
    def _root_absolute(cls, root: Path) -> Path:
        return root.resolve()

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def truth(self) -> Path:
        """Ground truth of synthetic data (true click probabilities), never read by training."""
        return self.root / "truth"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"


class SparkConfig(BaseModel):
    """How to open Spark: local mode by default, any master (spark://, k8s://, yarn) by config."""

    master: str = "local[2]"
    app_name: str = "recdistill"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "4g"
    # Not for an in-process session, which runs many jobs in one JVM: there C2's compiled code pays back.
    submit_java_options: str = Field("", description="JVM flags of each spark-submit'd job's driver and executors")
    class_archive: bool = Field(True, description="start Spark's JVMs from the class-data archive set-up builds "
                                                  "(-XX:SharedArchiveFile), where it exists")
    # Spark's Ivy cache of the Delta jars: absolute, so no working directory downloads them again.
    ivy_dir: Path = PROJECT_ROOT / ".cache" / "ivy"
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("ivy_dir")
    @classmethod
    def _ivy_absolute(cls, ivy_dir: Path) -> Path:
        return ivy_dir.resolve()


class AirflowConfig(BaseModel):
    """How big a local Airflow (`make airflow`) is: defaults sized for a 2-core machine.

    LocalExecutor starts `parallelism` worker processes (32 by Airflow's default, ~4 GiB RSS on
    2 cores); the Spark and training pools already run one heavy task at a time.
    """

    home: Path = PROJECT_ROOT / ".cache" / "airflow"
    port: int = Field(8080, ge=1, le=65535)
    parallelism: int = Field(2, ge=1, description="task slots, and LocalExecutor worker processes")
    api_workers: int = Field(1, ge=1, description="API server (UI) worker processes")
    parsing_processes: int = Field(1, ge=1, description="DAG processor parsing processes")
    max_active_runs: int = Field(2, ge=1, description="runs of one DAG at a time (a sensor waiting on data holds one)")

    @field_validator("home")
    @classmethod
    def _home_absolute(cls, home: Path) -> Path:
        return home.resolve()


class GeneratorConfig(BaseModel):
    """Size and planted structure of the synthetic impression logs."""

    seed: int = 7
    start_date: date = date(2026, 1, 1)
    n_days: int = Field(8, ge=1)
    n_users: int = Field(2_000, ge=1)
    n_items: int = Field(5_000, ge=2)
    n_categories: int = Field(20, ge=1)
    requests_per_user_per_day: float = Field(1.5, gt=0)
    slate_size: int = Field(10, ge=1)
    zipf_alpha: float = Field(1.1, gt=0)
    interest_drift: float = Field(0.15, ge=0)
    position_bias_power: float = Field(0.8, ge=0)
    random_exposure_fraction: float = Field(0.05, ge=0, le=1)
    landing_format: Literal["jsonl", "csv", "parquet"] = "parquet"


class FeatureConfig(BaseModel):
    """Point-in-time user and item statistics."""

    ctr_prior: float = Field(0.05, gt=0, lt=1)
    ctr_prior_strength: float = Field(20.0, gt=0)
    hash_buckets: int = Field(1 << 20, ge=16)


class SequenceConfig(BaseModel):
    """Behaviour sequence lengths: the teacher's long one and the student's short one."""

    teacher_length: int = Field(256, ge=1)
    student_length: int = Field(32, ge=1)
    lookback_days: int = Field(90, ge=1)

    @model_validator(mode="after")
    def _student_not_longer(self) -> SequenceConfig:
        if self.student_length > self.teacher_length:
            raise ValueError(f"sequences.student_length ({self.student_length}) must not exceed "
                             f"sequences.teacher_length ({self.teacher_length}): the student's "
                             f"sequence is the most recent part of the teacher's")
        return self


class TeacherTrainConfig(BaseModel):
    """The periodic teacher: model preset, budget, and its parameter-server tables."""

    preset: Literal["tiny", "small", "large"] = "small"
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(2e-3, gt=0)
    sparse_lr: float = Field(0.05, gt=0)
    embedding_dim: int = Field(16, ge=1)
    memory_tier_mib: int = Field(256, ge=1)
    seed: int = 11
    # Intra-op threads: the parameter server's prefetch thread needs a core of its own, and torch's
    # spinning OpenMP workers slow a step 5× when they share cores with it (measured on 2 cores).
    threads: int = Field(1, ge=1)
    # One teacher run per period (the teacher DAG's schedule): it trains on the period's days but the
    # last, validates on the last, and warm-starts from the previous period's teacher.
    period_days: int = Field(7, ge=2)
    # The parameter server's sparse optimizer (one of `pipeline.hps.optimizers`) and its new rows' scale.
    sparse_optimizer: Literal["rowwise_adagrad", "adagrad", "adam"] = "rowwise_adagrad"
    init_scale: float = Field(0.05, ge=0, description="new sparse rows start uniform(-init_scale, init_scale)")
    # L2 on the sparse rows a step touches (`pipeline.hps.optimizers`): ids seen through a biased exposure
    # otherwise memorise it. With a grid, each window's teacher takes the value whose candidate teacher scores
    # best on the uniform share, or the calibration date without one (`pipeline.train.teacher_search`).
    sparse_weight_decay: float = Field(0.0, ge=0)
    sparse_weight_decay_search: list[NonNegativeFloat] = Field(default_factory=list)
    # Without dates (`pipeline.train.windows`): train on day 1's labels too (all labelled history before the
    # students' window), and, as an option to measure, on the students' window as well.
    first_day_labels: bool = True
    include_student_window: bool = False
    # Off: every run starts from its seed (what a study over teacher seeds needs); on, the periodic default.
    warm_start: bool = True
    # An ensemble of `members` teachers (`pipeline.models.teacher.TeacherEnsemble`), one version, one server
    # `members` × `embedding_dim` wide: the students learn from the members' mean logit.
    members: int = Field(1, ge=1)


class StudentTrainConfig(BaseModel):
    """Students (base, KD, debiased) share architecture, data and budget; only the loss differs."""

    # A size from `STUDENT_PRESETS` (xs, s, m: serving budgets); token_dim overrides its width.
    preset: str = "s"
    token_dim: int | None = Field(None, ge=8)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(2e-3, gt=0)
    kd_lambda: float = Field(1.0, ge=0)
    kd_temperature: float = Field(2.0, gt=0)
    # The built-in λ/T search: a KD student (seed 0) per grid point, the best calibration AUC wins; empty
    # lists keep kd_lambda / kd_temperature / kd_listwise_weight (`pipeline.train.distill.search_kd_weights`).
    kd_search_lambdas: list[float] = Field(default_factory=list)
    kd_search_temperatures: list[float] = Field(default_factory=list)
    kd_search_listwise_weights: list[float] = Field(default_factory=list)
    # Where the data has a uniform share (`pipeline.train.exposure`), the KD search compares its candidates
    # there (unbiased rows no KD student trains on) rather than on the biased calibration date.
    kd_search_on_uniform_share: bool = True
    # Where the data has a uniform share, students early-stop on it (the serving head's AUC on unbiased rows)
    # rather than on the biased calibration date; a student that learns from those rows (the debiased one with
    # `debias.uniform_data`) learns from a seeded half and early-stops on the other: rows it fits cannot judge it.
    early_stop_on_uniform_share: bool = False
    # ... where the rows it would score hold at least this many of either label (else the calibration date): with a
    # few clicks the AUC moves by more than the epochs differ (generated data's demo share: 148 rows, 7 clicks).
    early_stop_min_label_rows: int = Field(30, ge=1)
    # Each grid point is scored by the mean over its KD students of the first `kd_search_seeds` of `seeds`: one
    # seed picked the listwise term on Coat where three of ten seeds then fell (README, quality report).
    kd_search_seeds: int = Field(1, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    threads: int = Field(1, ge=1, description="intra-op threads; small models lose from more on a busy CPU")
    # A daily distill run for day D trains on the `window_days` days before D − 1 (D − 1 calibrates and
    # validates): a fresh window, while the teacher carries the long history (Rec-Distill's decoupling).
    window_days: int = Field(3, ge=1)
    # Scoring without training (validation, the stale adapter's fit, evaluation, the gate's requests).
    # The gate groups a date's samples into requests batch by batch, so this also bounds a request's size.
    scoring_batch_size: int = Field(4096, ge=1)
    # KD beyond the labels: items drawn from the window's catalogue per labelled impression, scored by the
    # teacher (`pipeline.train.unexposed`); 0 turns the unexposed pairs off.
    unexposed_per_impression: int = Field(1, ge=0)
    unexposed_weight: float = Field(1.0, ge=0, description="weight of the KD term on unexposed pairs")
    # Ranking KD: weight of a listwise term that matches the student's softmax over each labelled impression
    # and its unexposed pairs to the teacher's (`pipeline.train.distill.listwise_kd_loss`); 0 turns it off.
    kd_listwise_weight: float = Field(0.0, ge=0)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in STUDENT_PRESETS:
            raise ValueError(f"student.preset {name!r} (RECDISTILL_STUDENT__PRESET) is not a student preset; "
                             f"expected one of {list(STUDENT_PRESETS)}")
        return name


class DebiasConfig(BaseModel):
    """The switchable debiasing parts (each has an ablation)."""

    auxiliary_head: bool = True
    stale_adapter: bool = True
    neutral_position: bool = True
    # Selection bias: the debiased student also learns from the random-exposure uniform share
    # (`pipeline.train.exposure`), each of its rows weighted `uniform_weight`, and the stale adapter is fitted
    # there, on unbiased rows. None: on exactly when the data has a uniform share.
    uniform_data: bool | None = None
    uniform_weight: float = Field(2.0, gt=0)
    uniform_min_rows: int = Field(100, ge=1, description="a smaller uniform share is an error, not a weak fit")
    # Selection bias on the window's own labels: each labelled row's label loss on the serving head is weighted by
    # its item's inverse exposure propensity, the item's share of the window's impressions against an even
    # share (popularity propensity, after Schnabel et al. 2016, "Recommendations as Treatments"), raised to
    # `propensity_power`, clipped to [1/clip, clip] and scaled to mean 1; rows shown as often as random
    # exposure would show them keep weight ~1, popular items' rows count less.
    propensity: bool = False
    propensity_power: float = Field(0.5, gt=0, le=1)
    propensity_clip: float = Field(10.0, ge=1)
    # Doubly robust (after Wang et al. 2019, "Doubly Robust Joint Learning for Recommendation on Data Missing Not
    # at Random"), the teacher as the imputation model: the serving head also fits the teacher's probability on
    # the unexposed pairs, and on the labelled rows by (1 − w) with w the propensity weight above, so a row's label
    # error replaces its imputed one by its inverse propensity. Needs teacher logits and unexposed pairs.
    doubly_robust: bool = False
    # The built-in part search: each part named here is tried on and off, with each of the KD search's listwise
    # weights, for the debiased students of the first `student.kd_search_seeds` seeds; the combination with the
    # best mean AUC (on a held-out half of the uniform share where there is one, else the calibration date) is
    # used for every seed (`pipeline.train.distill.search_debias_parts`). The auxiliary head guards the serving
    # head against a teacher worse than the labels, but with a good teacher it keeps KD's gain out of it (Coat,
    # 10 seeds: the debiased student 0.7443 with it, 0.7488 without, KD 0.7509). Empty: the parts as set above.
    part_search: list[Literal["auxiliary_head", "stale_adapter", "propensity", "doubly_robust"]] = Field(
        default_factory=list)


class EvaluationConfig(BaseModel):
    """Held-out evaluation and the random-exposure protocol (`pipeline.train.exposure`)."""

    bootstrap_rounds: int = Field(200, ge=10)
    # Share of each user's random-exposure rows that training may use (calibration, early stopping,
    # debiasing); the rest of the held-out date's are the test share, which nothing trains on.
    uniform_share: float = Field(0.1, ge=0, lt=1)
    uniform_seed: int = 0
    # Dates with samples that one evaluation pools, from its held-out date on (`windows.holdout_period`). A
    # small data set's day can hold a dozen users (ML-100K: ~11 a day), whose placement against each other
    # then decides the global AUC; a backtest over landed data pools a week. Above 1, every pooled date
    # must exist when the evaluation runs (a daily DAG evaluates as soon as its date lands: keep 1 there).
    holdout_days: int = Field(1, ge=1)


class MLflowConfig(BaseModel):
    """MLflow tracking: a local SQLite store under the lakehouse unless a URI is given."""

    tracking_uri: str | None = None
    experiment: str = "recdistill"


class RegistryConfig(BaseModel):
    """Registered model names, aliases and the limits the promotion gate enforces."""

    student_model: str = "recdistill-student"
    teacher_model: str = "recdistill-teacher"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    auc_tolerance: float = Field(0.002, ge=0, description="the challenger's held-out AUC may trail the "
                                                           "champion's by at most this")
    parity_max_abs_logit_diff: float = Field(0.05, gt=0, description="W8A16 against fp32 on the parity "
                                                                       "requests, largest |Δlogit|")
    parity_max_auc_drop: float = Field(0.002, ge=0, description="W8A16 AUC may trail fp32 by at most this")
    # What a release exports: "measured" serves W8A16 only where it measured faster than fp32 reuse on the
    # exporting machine; "reuse" or "w8a16" pin the path, for a release that must not depend on timing
    # (the integration run compares a cluster's release with an embedded one's to the last digit).
    served_path: Literal["measured", "reuse", "w8a16"] = "measured"
    artifact_location: str | None = Field(None, description="where a new experiment keeps artifacts; "
                                                            "None: `mlartifacts` next to a local SQLite "
                                                            "store, else the tracking server's default")


DEPLOYMENT_SECTIONS = {"lakehouse", "spark", "airflow", "mlflow"}


class Settings(BaseSettings):
    """All of recdistill's settings; build with `load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    profile: ProfileName = "demo"
    lakehouse: LakehouseConfig = Field(default_factory=LakehouseConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    sequences: SequenceConfig = Field(default_factory=SequenceConfig)
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig)
    teacher: TeacherTrainConfig = Field(default_factory=TeacherTrainConfig)
    student: StudentTrainConfig = Field(default_factory=StudentTrainConfig)
    debias: DebiasConfig = Field(default_factory=DebiasConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    airflow: AirflowConfig = Field(default_factory=AirflowConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the profile passed as init values: operators override without editing code.
        return env_settings, init_settings

    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.lakehouse.root / 'mlflow.db'}"

    def config_hash(self) -> str:
        """A short, stable hash of the settings that shape data and models; recorded with artifacts for lineage.

        Where things run (paths, Spark, Airflow, MLflow) is left out: the same model from another
        checkout or port has the same hash.
        """
        payload = json.dumps(self.model_dump(mode="json", exclude=DEPLOYMENT_SECTIONS), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {
        "spark": {"shuffle_partitions": 1, "driver_memory": "2g",
                  # A tiny job's JVM lives ~25 s, most of it warming up: C2's compiler threads cost more than
                  # they return on 2 cores (measured by benchmarks/spark_submit.py, see README "Data plane").
                  "submit_java_options": "-XX:TieredStopAtLevel=1",
                  # Tiny tables: Delta's default 50 snapshot partitions dominate each job's time.
                  "conf": {"spark.databricks.delta.snapshotPartitions": "1",
                           "spark.default.parallelism": "2"}},
        # Five days: one without history, then teacher, student, calibration and held-out days.
        "generator": {"n_days": 5, "n_users": 60, "n_items": 300, "n_categories": 6,
                      "requests_per_user_per_day": 2.0, "slate_size": 6},
        "features": {"hash_buckets": 1 << 14},
        "sequences": {"teacher_length": 32, "student_length": 8, "lookback_days": 30},
        "teacher": {"preset": "tiny", "epochs": 4, "batch_size": 128, "embedding_dim": 8, "memory_tier_mib": 4,
                    "period_days": 2},
        "student": {"preset": "tiny", "epochs": 4, "batch_size": 128, "window_days": 1, "seeds": [0, 1]},
        # Tiny days hold a few dozen random-exposure rows: a larger share so the debiasing part has some.
        "evaluation": {"bootstrap_rounds": 50, "uniform_share": 0.5},
        "debias": {"uniform_min_rows": 10},
    },
    # Sized so `make demo` runs end to end in minutes on 2 cores. As in production, the teacher learns from
    # a longer window (7 days against the students' 2) and a longer sequence (8x); with 8 days and L = 16
    # most of the teacher's edge was history the student never reads, and KD transferred 20 % (34 % here).
    "demo": {
        "generator": {"n_users": 1000, "n_days": 12},
        "features": {"hash_buckets": 1 << 16},
        "sequences": {"teacher_length": 256, "student_length": 32},
        # Up to 3 epochs, the best on the validation date kept (epoch 2 on the 8-day data and on Coat, where one
        # epoch was a few steps and left the teacher at 0.6757 against 0.7038).
        # The teacher also learns from the students' window (all labelled history before the calibration date):
        # `benchmarks/distill_quality.py`, `s` students, 10 seeds, 2026-11-30: KD AUC 0.7441 → 0.7509 on Coat's
        # random-exposure test share and 0.7724 → 0.8126 on ML-100K's held-out day (teacher 0.7266 → 0.7529
        # and 0.6765 → 0.7239): a teacher without the window misses the users and items that arrive in it.
        # Batches of 128, not 512: on the real data sets a 512-row batch left the teacher a dozen steps an epoch
        # (Coat: ~6,000 ratings). Teacher alone, 2026-12-01, mean of seeds 11–12 (11–13 at 128 on Coat): Coat test
        # share 0.7448 → 0.7522, ML-100K held-out week 0.7153 → 0.7229; generated held-out day, seed 11,
        # 0.6995 → 0.7065.
        # The teacher's sparse weight decay is searched per window (`pipeline.train.teacher_search`): on Coat's
        # test share 1e-2 raised the teacher from 0.7522 to 0.7639 and 3e-2 to 0.7662 (3 seeds, 2026-12-02), while
        # on generated data 1e-2 lowered it on the random-exposure slice (0.6899 → 0.6775, seed 11); each candidate
        # is one more teacher training.
        # An ensemble of 3 (`teacher.members`): with the same seed, tables and students
        # (`benchmarks/distill_quality.py`, 10 seeds, 2026-12-02) KD rose 0.7548 → 0.7558 and the debiased student
        # 0.7549 → 0.7584 on Coat's test share (teacher 0.7666 → 0.7695), and KD 0.7344 → 0.7367 on ML-100K's
        # held-out week, where the single seed-11 teacher scored higher (0.7566 against 0.7479) but taught less;
        # the teacher took 97 s against 73 s on Coat.
        "teacher": {"preset": "tiny", "epochs": 3, "batch_size": 128, "embedding_dim": 16, "period_days": 6,
                    "include_student_window": True, "sparse_weight_decay_search": [0.0, 0.01, 0.03],
                    "members": 3},
        # Early stopping on the calibration date picks each student's epoch; lr 1e-3 beat 2e-3 on the 8-day data for
        # the base student (validation AUC 0.6818 against 0.6768, 2 seeds). Up to 6 epochs, not 3: at 3 almost every
        # student on the real data sets kept its last epoch; at 6 (`benchmarks/distill_quality.py`, 10 seeds,
        # 2026-12-02) base / KD rose from 0.7423 / 0.7399 to 0.7497 / 0.7548 on Coat's test share and from
        # 0.5520 / 0.6684 to 0.7077 / 0.7344 on ML-100K's held-out week (README, quality report).
        # The KD search also chooses the listwise term (over 4 unexposed pairs per impression), by the mean of 3
        # seeds: it chose it on ML-100K (transferability 20 % → 64 %) and generated data, and left it off on Coat,
        # where it made 3 of 10 KD seeds fall; one seed had chosen it there too (README, quality report).
        # Early stopping on the uniform share where there is one (Coat; generated data's holds 7 clicks, under
        # `early_stop_min_label_rows`; ML-100K has none): on Coat's test share, 10 seeds, 2026-12-02, base 0.7497 →
        # 0.7500 and KD 0.7558 → 0.7596 (transferability 31 % → 49 %), the debiased student 0.7584 → 0.7582.
        "student": {"preset": "s", "epochs": 6, "batch_size": 128, "lr": 1e-3, "window_days": 2, "seeds": [0, 1],
                    "kd_search_lambdas": [0.5, 2.0], "kd_search_temperatures": [1.0, 3.0],
                    "kd_search_listwise_weights": [0.0, 1.0], "kd_search_seeds": 3, "unexposed_per_impression": 4,
                    "early_stop_on_uniform_share": True},
        "debias": {"part_search": ["auxiliary_head", "stale_adapter"]},
    },
    "prod": {
        "spark": {"master": "spark://spark-master:7077", "shuffle_partitions": 400, "driver_memory": "16g"},
        "generator": {"n_days": 30, "n_users": 1_000_000, "n_items": 2_000_000, "n_categories": 200},
        "features": {"hash_buckets": 1 << 26},
        "sequences": {"teacher_length": 20_000, "student_length": 256, "lookback_days": 365},
    },
}

# Short environment names for the settings operators change most.
ENV_SHORTCUTS: dict[str, tuple[str, str]] = {
    "RECDISTILL_LAKEHOUSE_ROOT": ("lakehouse", "root"),
    "RECDISTILL_SPARK_MASTER": ("spark", "master"),
    "RECDISTILL_MLFLOW_URI": ("mlflow", "tracking_uri"),
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(profile: str | None = None, **overrides: Any) -> Settings:
    """Settings for `profile` (else $RECDISTILL_PROFILE, else `demo`), env overrides applied last.

    `overrides` are nested dicts per section, for tests and callers that build settings in code.
    """
    name = profile or os.environ.get(f"{ENV_PREFIX}PROFILE") or "demo"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (flag --profile / RECDISTILL_PROFILE); "
                         f"expected one of {sorted(PROFILES)}")
    values = _deep_merge(PROFILES[name], overrides)
    for env_name, (section, field) in ENV_SHORTCUTS.items():
        if env_name in os.environ:
            values = _deep_merge(values, {section: {field: os.environ[env_name]}})
    values["profile"] = name
    try:
        # Shortcut values are applied as init values; the generic env source still wins over them.
        settings = Settings(**values)
    except ValidationError as err:
        raise ValueError(f"invalid recdistill settings for profile {name!r}: {err}") from err
    return settings.model_copy(update={"profile": name})
