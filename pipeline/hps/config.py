"""`HPSConfig`: every setting of the hierarchical parameter server (embedded later by pipeline/config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from pipeline.hps.memory_tier import SLOT_OVERHEAD_BYTES
from pipeline.hps.optimizers import OptimizerName, SparseOptimizer, make_optimizer


class HPSConfig(BaseModel):
    """Table shape, sparse optimizer, tier sizes and policies, sharding and pipelining."""

    dim: int = Field(64, ge=1)
    num_keys: int = Field(1 << 40, ge=1, description="keys must lie in [0, num_keys)")
    optimizer: OptimizerName = "rowwise_adagrad"
    lr: float = Field(0.01, gt=0)
    eps: float = Field(1e-8, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    initial_accumulator: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0, description="L2 on the rows a step touches (`optimizers` module doc)")
    init_scale: float = Field(0.01, ge=0, description="new rows start uniform(-init_scale, init_scale)")
    seed: int = 0

    memory_capacity_bytes: int = Field(256 << 20, ge=1, description="per process, rows plus bookkeeping")
    eviction: Literal["lru", "lfu"] = "lru"
    evict_fraction: float = Field(0.01, gt=0, le=1, description="evict at least this share of capacity at once")

    admit_after: int = Field(1, ge=1, description="a key gets a row once seen this many times")
    ttl_steps: int | None = Field(None, ge=1, description="rows unused for this many steps expire")
    expire_every: int = Field(100, ge=1, description="steps between expiry sweeps")

    ssd_path: Path = Path("hps_ssd")
    expected_rows: int = Field(0, ge=0, description="rows expected per process: pre-sizes the SSD index so it "
                                                    "never doubles mid-training (0: grow as needed)")
    segment_rows: int = Field(1 << 16, ge=1)
    compact_below: float = Field(0.5, gt=0, lt=1, description="rewrite a segment once live/records drops below")
    background_compaction: bool = True

    num_shards: int | None = Field(None, ge=1, description="default: one shard per process")
    prefetch: bool = True
    device: str | None = Field(None, description="training device; default cuda when present, else cpu")
    working_set_table: Literal["memory_tier", "compact"] | None = Field(
        None, description="what the fused kernel trains: the memory tier's rows in place (CPU) or a compact "
                          "copy of the step's rows on the device; default: memory_tier on cpu, compact elsewhere")
    log_every: int = Field(0, ge=0, description="log stats every N steps (0: never)")
    keep_snapshots: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> HPSConfig:
        if not 0 < self.betas[0] < 1 or not 0 < self.betas[1] < 1:
            raise ValueError(f"betas must lie in (0, 1), got {self.betas}")
        if self.weight_decay and self.optimizer == "adagrad":
            # Measured: fbgemm 1.8's EXACT_ADAGRAD kernel leaves the rows as if weight_decay were 0.
            raise ValueError(f"weight_decay={self.weight_decay} needs optimizer 'rowwise_adagrad' or 'adam': "
                             "fbgemm's element-wise adagrad kernel has no weight decay")
        return self

    @property
    def row_width(self) -> int:
        """Floats per stored row: weights plus optimizer state."""
        return self.make_optimizer().width

    @property
    def row_bytes(self) -> int:
        return 4 * self.row_width

    def memory_rows(self, num_local_shards: int = 1) -> int:
        """Memory-tier capacity in rows for each of this process's shards."""
        return max(1, self.memory_capacity_bytes // (self.row_bytes + SLOT_OVERHEAD_BYTES) // num_local_shards)

    def make_optimizer(self) -> SparseOptimizer:
        return make_optimizer(self.optimizer, self.dim, self.lr, self.eps, self.initial_accumulator, self.betas,
                              self.weight_decay)
