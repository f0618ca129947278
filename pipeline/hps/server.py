"""`ParameterServer`: the hierarchical parameter server one training process talks to.

A step follows the paper's workflow. Plan (may run ahead, in the prefetch thread): de-duplicate
the batch's keys, send each to the rank that owns it, and there resolve it through the memory
tier, then the SSD tier, pinning the rows. Materialize (training thread, in step order): admit
new keys, look the rows up through the shard's fused kernel, send each requester its weights.
Push (inside backward, when the working set's gradient is complete): send gradients to the
owners, which sum them and let the kernel's fused backward apply the sparse optimizer to the
rows where they live (`kernels.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
import torch
import torch.distributed as dist

from pipeline.hps import checkpoint
from pipeline.hps.config import HPSConfig
from pipeline.hps.device_tier import DeviceTier, WorkingSet
from pipeline.hps.hashing import shard_of
from pipeline.hps.shard import Shard
from pipeline.hps.sharding import local_shards, make_exchanges, owner_of
from pipeline.hps.stats import HPSStats, StatsRecorder
from pipeline.hps.validation import flatten_keys

log = logging.getLogger(__name__)

StepInput = Union[torch.Tensor, np.ndarray, tuple[torch.Tensor, torch.Tensor]]
Batch = TypeVar("Batch")


@dataclass
class _Plan:
    """A step's keys, where they went and which memory slots hold them (pinned)."""

    keys: np.ndarray              # sorted unique keys of this rank's batch
    inverse: np.ndarray           # position in `keys` of every input id, inputs concatenated
    order: np.ndarray | None      # keys[order] is grouped by owner rank (None: one process)
    splits: list[int]             # keys sent to each rank
    owned: np.ndarray             # unique keys this rank serves, from all ranks
    counts: np.ndarray            # occurrences of each owned key in the global batch
    sources: list[np.ndarray] | None  # per source rank: position in `owned` of each key it sent
    groups: list[tuple[Shard, np.ndarray | None]]  # local shard and positions in `owned` (None: all)
    slots: list[np.ndarray]       # per group: memory slot of each key, -1 if no row


@dataclass
class _Gathered:
    """One local shard's rows of a step, as its kernel looked them up."""

    shard: Shard
    keys: np.ndarray              # keys that have a row
    slots: np.ndarray             # their memory slots (pinned)
    at: torch.Tensor              # their positions among the owned keys
    weights: torch.Tensor         # the kernel's lookup, which its update consumes


@dataclass
class _Step:
    plan: _Plan
    working_set: WorkingSet
    gathered: list[_Gathered]
    pushed: bool = False


class ParameterServer:
    """Sparse rows for one training process: its shards' tiers plus the exchange with other ranks.

    Create one per process after `torch.distributed.init_process_group` (or without it for one
    process); every rank must make the same sequence of calls.
    """

    def __init__(self, config: HPSConfig) -> None:
        self.config = config
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.world_size = dist.get_world_size() if distributed else 1
        self.num_shards = config.num_shards or self.world_size
        if self.num_shards < self.world_size:
            raise ValueError(f"num_shards={self.num_shards} is below the number of processes {self.world_size}")
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.optimizer = config.make_optimizer()
        self.dim = config.dim
        self.stats_recorder = StatsRecorder()
        owned = local_shards(self.num_shards, self.rank, self.world_size)
        memory_rows = config.memory_rows(len(owned))
        expected_rows = config.expected_rows // len(owned)
        self.shards = {s: Shard(s, config, self.optimizer, memory_rows, expected_rows, self.stats_recorder,
                                self.device) for s in owned}
        self.exchange, self.prefetch_exchange = make_exchanges(self.device)
        self.device_tier = DeviceTier(self.device)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hps-prefetch") if config.prefetch else None
        self._pending: tuple[tuple[StepInput, ...], np.ndarray, Future[_Plan] | None] | None = None
        self._active: _Step | None = None
        self.step = 0
        self.updates = 0

    # -- the step ----------------------------------------------------------------------------

    def prefetch(self, *inputs: StepInput) -> None:
        """Start planning the next batch (keys as given to its `begin_step`) while this one trains."""
        if self._pending is not None:
            raise RuntimeError("a prefetched batch is waiting: begin_step it (or cancel_prefetch) first")
        keys = flatten_keys(inputs, self.config.num_keys)
        future = self._executor.submit(self._timed_plan, keys) if self._executor else None
        self._pending = (inputs, keys, future)

    def begin_step(self, *inputs: StepInput, train: bool = True) -> WorkingSet:
        """Pull the rows of every id in `inputs` (tensors of ids, or (ids, mask) pairs) onto the device.

        With `train`, unseen keys are counted for admission, rows are stamped and the working set's
        gradient is pushed back by backward. Returns the working set the embedding modules read.
        """
        self._finish_active()
        plan = self._take_pending(inputs)
        if plan is None:
            plan = self._plan(flatten_keys(inputs, self.config.num_keys))
        self._active = self._materialize(plan, inputs, train)
        if self.config.log_every and train and self.step % self.config.log_every == 0:
            log.info("hps step %d: %s", self.step, self.stats().summary())
        return self._active.working_set

    def pipeline(self, batches: Iterable[Batch], keys_of: Callable[[Batch], Sequence[StepInput]],
                 train: bool = True) -> Iterator[Batch]:
        """Yield batches with their step begun and the next batch already prefetching."""
        iterator = iter(batches)
        current = next(iterator, None)
        if current is None:
            return
        self.prefetch(*keys_of(current))
        try:
            while current is not None:
                upcoming = next(iterator, None)
                self.begin_step(*keys_of(current), train=train)
                if upcoming is not None:
                    self.prefetch(*keys_of(upcoming))
                yield current
                current = upcoming
            self._finish_active()
        finally:
            self.cancel_prefetch()

    @property
    def working_set(self) -> WorkingSet:
        """The current step's working set (what the embedding modules read)."""
        if self._active is None:
            raise RuntimeError("no step in progress: call begin_step(...) or iterate pipeline(...) first")
        return self._active.working_set

    def cancel_prefetch(self) -> None:
        """Drop a prefetched batch that will not be used, releasing its rows."""
        if self._pending is None:
            return
        _, _, future = self._pending
        self._pending = None
        if future is not None:
            self._release(future.result())

    # -- plan (may run in the prefetch thread) --------------------------------------------------

    def _take_pending(self, inputs: tuple[StepInput, ...]) -> _Plan | None:
        if self._pending is None:
            return None
        pending_inputs, pending_keys, future = self._pending
        same = len(inputs) == len(pending_inputs) and all(a is b for a, b in zip(inputs, pending_inputs))
        if not same and not np.array_equal(flatten_keys(inputs, self.config.num_keys), pending_keys):
            raise ValueError("begin_step was given other keys than the prefetched batch; "
                             "prefetch exactly the inputs of the next begin_step")
        self._pending = None
        if future is None:
            return self._plan(pending_keys)
        with self.stats_recorder.timer("prefetch_wait"):
            return future.result()

    def _timed_plan(self, keys: np.ndarray) -> _Plan:
        with self.stats_recorder.timer("prefetch"):
            return self._plan(keys)

    def _plan(self, keys_flat: np.ndarray) -> _Plan:
        with self.stats_recorder.timer("dedupe"):
            keys, inverse, counts = np.unique(keys_flat, return_inverse=True, return_counts=True)
        self.stats_recorder.add(keys=len(keys_flat), unique_keys=len(keys))
        with self.stats_recorder.timer("route"):
            if self.world_size == 1:
                order, splits, owned, owned_counts, sources = None, [len(keys)], keys, counts, None
            else:
                owner = owner_of(keys, self.num_shards, self.world_size)
                order = np.argsort(owner, kind="stable")
                splits = np.bincount(owner, minlength=self.world_size).tolist()
                sent_keys = torch.from_numpy(keys[order]).split(splits)
                sent_counts = torch.from_numpy(counts[order]).split(splits)
                got_keys = [t.numpy() for t in self.prefetch_exchange.all_to_all(list(sent_keys))]
                got_counts = [t.numpy() for t in self.prefetch_exchange.all_to_all(list(sent_counts))]
                owned, where = np.unique(np.concatenate(got_keys), return_inverse=True)
                owned_counts = np.bincount(where, weights=np.concatenate(got_counts),
                                           minlength=len(owned)).astype(np.int64)
                sources = np.split(where, np.cumsum([len(k) for k in got_keys])[:-1])
        with self.stats_recorder.timer("resolve"):
            groups = self._group_by_shard(owned)
            slots = [shard.resolve(owned if at is None else owned[at]) for shard, at in groups]
        return _Plan(keys, inverse, order, splits, owned, owned_counts, sources, groups, slots)

    def _group_by_shard(self, owned: np.ndarray) -> list[tuple[Shard, np.ndarray | None]]:
        if len(self.shards) == 1:
            return [(next(iter(self.shards.values())), None)]
        shard_ids = shard_of(owned, self.num_shards)
        return [(shard, np.flatnonzero(shard_ids == s)) for s, shard in self.shards.items()]

    # -- materialize and push (training thread) ---------------------------------------------------

    def _materialize(self, plan: _Plan, inputs: tuple[StepInput, ...], train: bool) -> _Step:
        if train:
            self.step += 1
        with self.stats_recorder.timer("admit"):
            for i, (shard, at) in enumerate(plan.groups):
                counts = plan.counts if at is None else plan.counts[at]
                keys = plan.owned if at is None else plan.owned[at]
                plan.slots[i] = shard.admit(keys, counts, plan.slots[i], self.step, train)
        if train and self.config.ttl_steps and self.step % self.config.expire_every == 0:
            with self.stats_recorder.timer("expire"):
                for shard in self.shards.values():
                    shard.expire(self.step - self.config.ttl_steps)
        with self.stats_recorder.timer("gather"):
            gathered, owned_weights = self._gather(plan, train)
            if self.world_size == 1:
                weights = owned_weights
            else:
                parts = [owned_weights[torch.from_numpy(at).to(self.device)] for at in plan.sources]
                received = torch.cat(self.exchange.all_to_all(parts)).to(self.device)
                weights = torch.empty_like(received)
                weights[torch.from_numpy(plan.order).to(self.device)] = received
        if train:
            self.stats_recorder.add(steps=1)
        working_set = self.device_tier.working_set(self.step, plan.keys, weights, train, self._push)
        self._bind_inputs(working_set, inputs, plan.inverse)
        return _Step(plan=plan, working_set=working_set, gathered=gathered)

    def _gather(self, plan: _Plan, train: bool) -> tuple[list[_Gathered], torch.Tensor]:
        """Each local shard's rows through its kernel, and the owned keys' weights (zeros: no row)."""
        gathered = []
        for (shard, at), slots in zip(plan.groups, plan.slots):
            has_row = np.flatnonzero(slots >= 0)
            positions = has_row if at is None else at[has_row]
            keys = plan.owned[positions]
            rows = shard.gather(slots[has_row], train)
            gathered.append(_Gathered(shard, keys, slots[has_row], torch.from_numpy(positions).to(rows.device), rows))
            self.stats_recorder.add(rows_memory_to_device=len(keys), bytes_memory_to_device=rows.numel() * 4)
        if len(gathered) == 1 and len(gathered[0].keys) == len(plan.owned):
            return gathered, gathered[0].weights.detach()
        owned = torch.zeros((len(plan.owned), self.dim), device=self.device)
        for part in gathered:
            owned[part.at] = part.weights.detach().to(self.device)
        return gathered, owned

    def _bind_inputs(self, working_set: WorkingSet, inputs: tuple[StepInput, ...], inverse: np.ndarray) -> None:
        start = 0
        for item in inputs:
            ids, mask = item if isinstance(item, tuple) else (item, None)
            shape = tuple(ids.shape)
            if mask is None:
                n = int(np.prod(shape, dtype=np.int64))
                index = torch.from_numpy(inverse[start:start + n].reshape(shape))
            else:
                mask_np = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
                n = int(mask_np.sum())
                full = np.zeros(shape, dtype=np.int64)
                full[mask_np] = inverse[start:start + n]
                index = torch.from_numpy(full)
            working_set.bind(ids, mask, index.to(self.device))
            start += n

    def _push(self, grads: torch.Tensor) -> None:
        step = self._active
        if step is None or step.working_set.weights.grad is not grads:
            raise RuntimeError("gradient arrived for a working set that is no longer active")
        if step.pushed:
            raise RuntimeError("a second backward in one step: accumulate losses and call backward once per step")
        plan = step.plan
        with self.stats_recorder.timer("push"):
            if self.world_size == 1:
                owned_grads = grads
            else:
                ordered = grads[torch.from_numpy(plan.order).to(grads.device)]
                received = self.exchange.all_to_all(list(ordered.split(plan.splits)))
                owned_grads = torch.zeros((len(plan.owned), self.dim), dtype=grads.dtype, device=self.device)
                for at, part in zip(plan.sources, received):
                    owned_grads.index_add_(0, torch.from_numpy(at).to(self.device), part.to(self.device))
                # Each rank's loss is a mean over its own batch: average like DDP does for dense grads.
                owned_grads /= self.world_size
        with self.stats_recorder.timer("optimize"):
            self.updates += 1
            for part in step.gathered:
                grads = owned_grads if len(step.gathered) == 1 and len(part.keys) == len(plan.owned) \
                    else owned_grads[part.at.to(owned_grads.device)]
                part.shard.update(part.keys, part.slots, part.weights, grads, self.updates)
                self.stats_recorder.add(rows_device_to_memory=len(part.keys),
                                        bytes_device_to_memory=grads.numel() * 4)
        self._release(plan)
        step.pushed = True

    def _release(self, plan: _Plan) -> None:
        for (shard, _), slots in zip(plan.groups, plan.slots):
            shard.release(slots)

    def _finish_active(self) -> None:
        """Close the current step; rows of a step that had no backward are released unchanged."""
        if self._active is not None and not self._active.pushed:
            self._release(self._active.plan)
        self._active = None

    # -- whole-table operations -------------------------------------------------------------------

    def _wait_prefetch(self) -> None:
        """Let background planning finish so whole-table reads see a still table (the plan stays pending)."""
        if self._pending is not None and self._pending[2] is not None:
            self._pending[2].result()

    def quiesce(self) -> None:
        """Bring the server to a step boundary: no background work, no step open."""
        self._wait_prefetch()
        self._finish_active()

    def load_rows(self, keys: np.ndarray | torch.Tensor, weights: np.ndarray | torch.Tensor, step: int = 0) -> None:
        """Bulk-load weights (e.g. a trained teacher table) for the keys this process owns, with fresh
        optimizer state. Like a restore, a load is a baseline: exports report changes made after it."""
        keys = flatten_keys((keys,), self.config.num_keys)
        weights = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
        if weights.shape != (len(keys), self.dim) or weights.dtype != np.float32:
            raise ValueError(f"load_rows: weights must be float32 [{len(keys)}, {self.dim}], "
                             f"got {weights.dtype} {list(weights.shape)}")
        if len(np.unique(keys)) != len(keys):
            raise ValueError("load_rows: keys must be unique")
        self.quiesce()
        state = self.optimizer.initial_state(len(keys)).numpy()
        rows = np.concatenate([weights, state], axis=1)
        shard_ids = shard_of(keys, self.num_shards)
        for s, shard in self.shards.items():
            mine = shard_ids == s
            shard.load(keys[mine], rows[mine], np.full(int(mine.sum()), step, dtype=np.int64))

    def read_rows(self, keys: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(full rows, found) for keys this process owns, from whichever tier holds them; no side effects."""
        keys = flatten_keys((keys,), self.config.num_keys)
        self._wait_prefetch()
        rows = np.zeros((len(keys), self.optimizer.width), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        shard_ids = shard_of(keys, self.num_shards)
        for s, shard in self.shards.items():
            at = np.flatnonzero(shard_ids == s)
            rows[at], found[at] = shard.peek(keys[at])
        return rows, found

    @property
    def layout(self) -> checkpoint.Layout:
        """What a snapshot records about this process and checks when restoring into it."""
        return checkpoint.Layout(rank=self.rank, world_size=self.world_size, num_shards=self.num_shards,
                                 dim=self.dim, optimizer=self.config.optimizer, row_width=self.optimizer.width,
                                 tracks_steps=self.config.ttl_steps is not None,
                                 keep_snapshots=self.config.keep_snapshots)

    def checkpoint(self, directory: str | Path, dense: dict[str, Any] | None = None) -> Path:
        """Atomic snapshot of every shard's rows, optimizer state, admission counts and `dense`."""
        self.quiesce()
        with self.stats_recorder.timer("checkpoint"):
            counters = checkpoint.Counters(step=self.step, updates=self.updates)
            return checkpoint.save_snapshot(Path(directory), self.layout, self.shards, self.exchange, counters,
                                            dense or {})

    def restore(self, directory: str | Path) -> dict[str, Any]:
        """Replace all state by the latest snapshot in `directory` (any shard count); returns its dense part."""
        self.cancel_prefetch()
        self._finish_active()
        counters, dense = checkpoint.load_snapshot(Path(directory), self.layout, self.shards)
        self.step, self.updates = counters.step, counters.updates
        return dense

    def export_changes(self, directory: str | Path) -> Path:
        """Write the rows changed and the keys deleted since the last snapshot (for streaming and serving)."""
        self.quiesce()
        return checkpoint.export_changes(Path(directory), self.layout, self.shards, self.exchange, self.step)

    def stats(self) -> HPSStats:
        """Cumulative counters and stage times of this process."""
        shards = self.shards.values()
        return self.stats_recorder.snapshot(
            sizes={"memory_rows": sum(len(s.memory) for s in shards),
                   "memory_bytes": sum(s.memory.nbytes for s in shards),
                   "ssd_rows": sum(len(s.ssd) for s in shards),
                   "ssd_bytes": sum(s.ssd.disk_bytes for s in shards)},
            extra_counts={"bytes_sent": self.exchange.bytes_sent + self.prefetch_exchange.bytes_sent,
                          "bytes_received": self.exchange.bytes_received + self.prefetch_exchange.bytes_received},
        )

    def reset_stats(self) -> None:
        """Start counting afresh (e.g. per epoch, or after warm-up)."""
        self.stats_recorder.reset()

    def close(self) -> None:
        self.cancel_prefetch()
        self._finish_active()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for shard in self.shards.values():
            shard.close()

    def __enter__(self) -> ParameterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
