# Benchmark-only dependency, the CPU build of fbgemm matched to torch 2.13 (fbgemm 1.8 ↔ torch 2.13):
#   .venv/bin/pip install --no-deps fbgemm-gpu-cpu==1.8.0
"""Hierarchical parameter server against in-RAM embedding baselines, side by side, in one run.

64-dim fp32 rows, 26 slots, batches of 4,096 samples, a table of `--rows` rows (10M by default),
key traces uniform and Zipf (α = 1.05, 1.2). Forward + backward + Adagrad update, keys/s and peak
RSS, for (a) torch.nn.EmbeddingBag(sparse=True) + torch Adagrad, (b) fbgemm's fused table-batched
embedding with exact row-wise Adagrad, (c) recdistill HPS with the whole table in the memory tier,
(d) recdistill HPS with the memory tier at 10 % of the table and the rest on SSD. Each variant runs
in its own process so its peak memory is its own. Also: the SSD-tier backend comparison behind the
choice in pipeline/hps/ssd_tier.py, and hit rate against memory-tier size for LRU and LFU (plot).

    .venv/bin/python benchmarks/hps.py                 # everything, ~10-15 min on 2 cores
    .venv/bin/python benchmarks/hps.py --rows 1000000 --only train
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import lifetime_peak_rss_mb, markdown_table, peak_rss_mb, reset_peak_rss, run_worker  # noqa: E402

DIM = 64
SLOTS = 26
BATCH = 4096
TRACES = {"uniform": None, "zipf-1.05": 1.05, "zipf-1.2": 1.2}
VARIANTS = {
    "a": "torch EmbeddingBag + Adagrad (RAM)",
    "b": "fbgemm TBE + row-wise Adagrad (RAM)",
    "c": "HPS, memory tier = whole table",
    "d": "HPS, memory tier = 10 %, rest on SSD",
}
FBGEMM_INSTALL = ".venv/bin/pip install --no-deps fbgemm-gpu-cpu==1.8.0"
HIT_RATE_SIZES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
PASSES = 2
# One intra-op thread for every variant: on this 2-core machine two threads ran every variant,
# baselines included, 3-5× slower (OpenMP stragglers whenever the other core is busy).
THREADS = 1


# -- key traces -----------------------------------------------------------------------------------

def make_trace(alpha: float | None, rows: int, batches: int, seed: int) -> np.ndarray:
    """[batches, BATCH * SLOTS] keys; Zipf ranks are scattered over the key space by a permutation."""
    rng = np.random.default_rng(seed)
    n = batches * BATCH * SLOTS
    if alpha is None:
        return rng.integers(0, rows, n, dtype=np.int64).reshape(batches, -1)
    cdf = np.cumsum(np.arange(1, rows + 1, dtype=np.float64) ** -alpha)
    cdf /= cdf[-1]
    ranks = np.minimum(np.searchsorted(cdf, rng.random(n)), rows - 1)
    return rng.permutation(rows)[ranks].reshape(batches, -1)


# -- one variant, in a worker process ---------------------------------------------------------------

def best_of_passes(run_pass, timed_keys: int) -> float:
    """keys/s of the fastest of PASSES timed passes: other jobs on a shared machine only slow a pass down."""
    fastest = float("inf")
    for _ in range(PASSES):
        start = time.perf_counter()
        run_pass()
        fastest = min(fastest, time.perf_counter() - start)
    return timed_keys / fastest


def train_loop(step, batches: np.ndarray, warmup: int) -> tuple[float, float]:
    """Run `step` over the warm-up batches, then time passes over the rest; returns (keys/s, peak RSS MB)."""
    for ids in batches[:warmup]:
        step(torch.from_numpy(ids))
    reset_peak_rss()

    def run_pass() -> None:
        for ids in batches[warmup:]:
            step(torch.from_numpy(ids))

    return best_of_passes(run_pass, (len(batches) - warmup) * BATCH * SLOTS), peak_rss_mb()


def run_torch(rows: int, batches: np.ndarray, warmup: int, target: torch.Tensor) -> dict:
    embed = torch.nn.EmbeddingBag(rows, DIM, mode="sum", sparse=True)
    optimizer = torch.optim.Adagrad(embed.parameters(), lr=0.01, eps=1e-8)
    offsets = torch.arange(BATCH * SLOTS)

    def step(ids: torch.Tensor) -> None:
        optimizer.zero_grad()
        (embed(ids, offsets).view(BATCH, SLOTS * DIM) * target).sum().backward()
        optimizer.step()

    keys_per_s, peak = train_loop(step, batches, warmup)
    return {"keys_per_s": keys_per_s, "peak_rss_mb": peak}


def run_fbgemm(rows: int, batches: np.ndarray, warmup: int, target: torch.Tensor) -> dict:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
        ComputeDevice, EmbeddingLocation, SplitTableBatchedEmbeddingBagsCodegen)

    embed = SplitTableBatchedEmbeddingBagsCodegen(
        [(rows, DIM, EmbeddingLocation.HOST, ComputeDevice.CPU)], feature_table_map=[0] * SLOTS,
        optimizer=EmbOptimType.EXACT_ROWWISE_ADAGRAD, learning_rate=0.01, eps=1e-8)
    offsets = torch.arange(BATCH * SLOTS + 1)

    def step(ids: torch.Tensor) -> None:
        feature_major = ids.view(BATCH, SLOTS).t().reshape(-1)  # TBE wants all of feature 0, then 1, ...
        (embed(feature_major, offsets) * target).sum().backward()  # the update is fused into backward

    keys_per_s, peak = train_loop(step, batches, warmup)
    return {"keys_per_s": keys_per_s, "peak_rss_mb": peak}


def run_hps(rows: int, batches: np.ndarray, warmup: int, target: torch.Tensor, memory_share: float,
            work: Path) -> dict:
    from pipeline.hps import HPSConfig, ParameterServer, PSEmbedding
    from pipeline.hps.memory_tier import SLOT_OVERHEAD_BYTES

    row_bytes = 4 * (DIM + 1)
    config = HPSConfig(dim=DIM, num_keys=rows, optimizer="rowwise_adagrad", lr=0.01, eps=1e-8,
                       memory_capacity_bytes=int(memory_share * rows) * (row_bytes + SLOT_OVERHEAD_BYTES),
                       expected_rows=rows, ssd_path=work / "ssd")
    server = ParameterServer(config)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    for start in range(0, rows, 1 << 18):
        keys = np.arange(start, min(rows, start + (1 << 18)))
        server.load_rows(keys, (rng.standard_normal((len(keys), DIM), dtype=np.float32) * 0.01))
    load_s = time.perf_counter() - started
    embed = PSEmbedding(server, [f"slot{i}" for i in range(SLOTS)])
    target = target.view(BATCH, SLOTS, DIM)
    tensors = [torch.from_numpy(ids.reshape(BATCH, SLOTS)) for ids in batches]

    def run(part: list[torch.Tensor]) -> None:
        for ids in server.pipeline(part, keys_of=lambda x: [x]):
            (embed(ids) * target).sum().backward()

    run(tensors[:warmup])
    server.reset_stats()
    reset_peak_rss()
    keys_per_s = best_of_passes(lambda: run(tensors[warmup:]), (len(batches) - warmup) * BATCH * SLOTS)
    stats = server.stats()
    result = {"keys_per_s": keys_per_s, "peak_rss_mb": peak_rss_mb(),
              "load_s": load_s, "memory_hit_rate": stats.memory_hit_rate, "prefetch_hidden": stats.prefetch_hidden,
              "seconds": {k: round(v, 3) for k, v in stats.seconds.items() if v},
              "rows_ssd_to_memory": stats.counts["rows_ssd_to_memory"],
              "rows_memory_to_ssd": stats.counts["rows_memory_to_ssd"]}
    server.close()
    return result


def worker_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    batches = np.load(args.trace)
    target = torch.randn(BATCH, SLOTS * DIM)
    work = Path(tempfile.mkdtemp(prefix="hps-bench-", dir=args.out))
    try:
        if args.worker == "a":
            result = run_torch(args.rows, batches, args.warmup, target)
        elif args.worker == "b":
            result = run_fbgemm(args.rows, batches, args.warmup, target)
        else:
            result = run_hps(args.rows, batches, args.warmup, target, 1.0 if args.worker == "c" else 0.1, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["lifetime_peak_rss_mb"] = lifetime_peak_rss_mb()
    print(json.dumps(result))


# -- SSD backends -----------------------------------------------------------------------------------

def ssd_backends(out: Path, rows: int = 300_000, batch: int = 50_000, reads: int = 20_000) -> list[list[object]]:
    """Batched writes and uniform random batched reads of 65-float rows through each candidate store."""
    import lmdb
    from rocksdict import Rdict, WriteBatch

    from pipeline.hps.ssd_tier import SSDTier

    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, DIM + 1), dtype=np.float32)
    queries = [rng.integers(0, rows, reads) for _ in range(5)]
    results = []

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    work = Path(tempfile.mkdtemp(prefix="hps-ssd-", dir=out))
    try:
        db = Rdict(str(work / "rocks"))

        def rocks_write() -> None:
            for s in range(0, rows, batch):
                wb = WriteBatch()
                for k in range(s, min(rows, s + batch)):
                    wb.put(k.to_bytes(8, "big"), data[k].tobytes())
                db.write(wb)

        def rocks_read() -> None:
            for q in queries:
                got = db.get([k.to_bytes(8, "big") for k in q.tolist()])
                np.frombuffer(b"".join(got), dtype=np.float32)

        results.append(["rocksdict (RocksDB)", rows / timed(rocks_write), len(queries) * reads / timed(rocks_read)])
        db.close()

        env = lmdb.open(str(work / "lmdb"), map_size=1 << 33)

        def lmdb_write() -> None:
            for s in range(0, rows, batch):
                with env.begin(write=True) as txn:
                    txn.cursor().putmulti((k.to_bytes(8, "big"), data[k].tobytes())
                                          for k in range(s, min(rows, s + batch)))

        def lmdb_read() -> None:
            for q in queries:
                with env.begin() as txn:
                    got = txn.cursor().getmulti([k.to_bytes(8, "big") for k in q.tolist()])
                    np.frombuffer(b"".join(v for _, v in got), dtype=np.float32)

        results.append(["lmdb", rows / timed(lmdb_write), len(queries) * reads / timed(lmdb_read)])
        env.close()

        tier = SSDTier(work / "segments", DIM + 1, background_compaction=False, track_steps=False)
        steps = np.zeros(rows, dtype=np.int64)

        def segments_write() -> None:
            for s in range(0, rows, batch):
                tier.put(np.arange(s, min(rows, s + batch)), data[s:s + batch], steps[s:s + batch])

        def segments_read() -> None:
            for q in queries:
                tier.get(np.unique(q))

        results.append(["segment files + KeyIndex (chosen)", rows / timed(segments_write),
                        len(queries) * reads / timed(segments_read)])
        tier.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [[name, f"{w / 1e6:.2f}M", f"{r / 1e6:.2f}M"] for name, w, r in results]


# -- hit rate against memory-tier size --------------------------------------------------------------

def hit_rates(traces: dict[str, np.ndarray], rows: int, warmup: int) -> dict[tuple[str, str], list[float]]:
    """Per-batch unique-key hit rate of the memory tier's policies, after `warmup` batches.

    A key's first appearance in the trace is always a miss, so even an unbounded tier stays below 1:
    the "unbounded" curve is that ceiling for the trace's length.
    """
    from pipeline.hps.memory_tier import MemoryTier

    curves = {}
    for trace_name, batches in traces.items():
        for policy in ("lru", "lfu", "unbounded"):
            curve = []
            for share in HIT_RATE_SIZES if policy != "unbounded" else HIT_RATE_SIZES[:1]:
                capacity = max(1, int(share * rows)) if policy != "unbounded" else rows
                tier = MemoryTier(capacity, 1, "lru" if policy == "unbounded" else policy)
                hits = total = 0
                for i, keys in enumerate(batches):
                    unique = np.unique(keys)
                    slots = tier.lookup(unique)
                    found = slots >= 0
                    tier.touch(slots[found])
                    missing = unique[~found]
                    tier.insert(missing, np.zeros((len(missing), 1), np.float32), np.zeros(len(missing)), dirty=False)
                    if i >= warmup:
                        hits += int(found.sum())
                        total += len(unique)
                curve.append(hits / total)
            curves[(trace_name, policy)] = curve * len(HIT_RATE_SIZES) if policy == "unbounded" else curve
    return curves


def plot_hit_rates(curves: dict[tuple[str, str], list[float]], rows: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {name: f"C{i}" for i, name in enumerate(sorted({t for t, _ in curves}))}
    styles = {"lru": ("-", "o"), "lfu": ("--", "s"), "unbounded": (":", None)}
    for (trace_name, policy), curve in curves.items():
        linestyle, marker = styles[policy]
        ax.plot([100 * s for s in HIT_RATE_SIZES], curve, marker=marker, linestyle=linestyle,
                color=colors[trace_name], label=f"{policy.upper() if policy != 'unbounded' else policy}, {trace_name}")
    ax.set_xscale("log")
    ax.set_xlabel("memory tier size (% of table rows)")
    ax.set_ylabel("memory-tier hit rate (unique keys per batch)")
    ax.set_title(f"HPS memory tier, {rows:,} rows, batches of {BATCH * SLOTS:,} keys")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# -- the run ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per variant and trace")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hit-rate-batches", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--plot", type=Path, default=Path("docs/img/hps_hit_rate.png"))
    parser.add_argument("--only", action="append", choices=["ssd", "train", "hit-rate"])
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--trace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker_main(args)
        return
    sections = set(args.only or ["ssd", "train", "hit-rate"])
    if "train" in sections and importlib.util.find_spec("fbgemm_gpu") is None:
        sys.exit(f"benchmarks/hps.py needs fbgemm-gpu-cpu for variant (b); install it with:\n  {FBGEMM_INSTALL}")
    report = [f"# HPS benchmark, {date.today().isoformat()}",
              f"{args.rows:,} rows × {DIM} fp32, {SLOTS} slots, batches of {BATCH:,} samples "
              f"({BATCH * SLOTS:,} keys), best of {PASSES} timed passes over {args.batches} batches after "
              f"{args.warmup} warm-up, torch {torch.__version__}, {THREADS} intra-op thread per variant, "
              f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"]
    began = time.perf_counter()

    if "ssd" in sections:
        table = ssd_backends(args.out)
        report += ["", "## SSD-tier backends (300K rows of 65 floats; batched writes, uniform batched reads)", "",
                   markdown_table(["store", "write rows/s", "read rows/s"], table)]
        print("\n".join(report[-3:]), flush=True)

    if "train" in sections:
        results: dict[tuple[str, str], dict] = {}
        for trace_name, alpha in TRACES.items():
            trace_path = args.out / f"trace-{trace_name}.npy"
            np.save(trace_path, make_trace(alpha, args.rows, args.warmup + args.batches, seed=1))
            for variant in VARIANTS:
                result = run_worker(Path(__file__), ["--worker", variant, "--trace", str(trace_path),
                                                     "--rows", str(args.rows), "--warmup", str(args.warmup),
                                                     "--out", str(args.out)], timeout=1800)
                results[(trace_name, variant)] = result
                print(f"{trace_name:10s} ({variant}) {VARIANTS[variant]:40s} {result['keys_per_s'] / 1e6:6.2f}M keys/s "
                      f"peak RSS {result['peak_rss_mb']:7.0f} MB (process {result['lifetime_peak_rss_mb']:7.0f} MB) "
                      + (f"hit {result['memory_hit_rate']:.3f} prefetch hidden {result['prefetch_hidden']:.0%} "
                         f"stages {result['seconds']}" if variant in "cd" else ""), flush=True)
            trace_path.unlink()
        rows_out = []
        for trace_name in TRACES:
            r = {v: results[(trace_name, v)] for v in VARIANTS}
            rows_out.append([trace_name] + [f"{r[v]['keys_per_s'] / 1e6:.2f}M / {r[v]['peak_rss_mb'] / 1024:.2f} GB"
                                            for v in VARIANTS]
                            + [f"{r['c']['keys_per_s'] / r['a']['keys_per_s']:.2f}×",
                               f"{r['c']['keys_per_s'] / r['b']['keys_per_s']:.2f}×",
                               f"{r['d']['keys_per_s'] / r['c']['keys_per_s']:.2f}×",
                               f"{r['d']['peak_rss_mb'] / r['c']['peak_rss_mb']:.0%}",
                               f"{r['d']['memory_hit_rate']:.1%}", f"{r['d']['prefetch_hidden']:.0%}"])
        header = ["trace"] + [f"({v}) keys/s / peak RSS" for v in VARIANTS] + [
            "(c)/(a)", "(c)/(b)", "(d)/(c)", "RSS (d)/(c)", "(d) memory hit", "(d) prefetch hidden"]
        z = {v: results[("zipf-1.2", v)] for v in VARIANTS}
        goals = [
            ("(c) ≥ 1.0× (a), every trace",
             all(results[(t, "c")]["keys_per_s"] >= results[(t, "a")]["keys_per_s"] for t in TRACES)),
            ("(c) ≥ 0.5× (b), every trace",
             all(results[(t, "c")]["keys_per_s"] >= 0.5 * results[(t, "b")]["keys_per_s"] for t in TRACES)),
            ("(d) ≥ 0.7× (c) on Zipf 1.2", z["d"]["keys_per_s"] >= 0.7 * z["c"]["keys_per_s"]),
            ("(d) peak RSS ≤ 30 % of (c)'s on Zipf 1.2", z["d"]["peak_rss_mb"] <= 0.3 * z["c"]["peak_rss_mb"]),
        ]
        report += ["", "## Forward + backward + Adagrad update (keys/s, peak RSS while training)", "",
                   markdown_table(header, rows_out), "",
                   "Whole-process peak RSS (table load included), MB: " + "; ".join(
                       f"{t} " + ", ".join(f"({v}) {results[(t, v)]['lifetime_peak_rss_mb']:.0f}" for v in VARIANTS)
                       for t in TRACES), "",
                   "Goals: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in goals)]
        (args.out / "hps_results.json").write_text(json.dumps(
            {f"{t}/{v}": res for (t, v), res in results.items()}, indent=1))
        print("\n".join(report[-7:]), flush=True)

    if "hit-rate" in sections:
        traces = {name: make_trace(alpha, args.rows, args.hit_rate_batches, seed=2)
                  for name, alpha in TRACES.items() if alpha is not None}
        curves = hit_rates(traces, args.rows, warmup=args.hit_rate_batches // 3)
        plot_hit_rates(curves, args.rows, args.plot)
        report += ["", f"## Memory-tier hit rate (plot: {args.plot})", "",
                   markdown_table(["policy, trace"] + [f"{100 * s:g} %" for s in HIT_RATE_SIZES],
                                  [[f"{p.upper() if p != 'unbounded' else p}, {t}"] + [f"{h:.3f}" for h in c]
                                   for (t, p), c in curves.items()])]
        print("\n".join(report[-3:]), flush=True)

    report += ["", f"Total benchmark time: {time.perf_counter() - began:.0f} s; "
                   f"load average at end {os.getloadavg()[0]:.1f}"]
    (args.out / "hps_results.md").write_text("\n".join(report) + "\n")
    print(f"\nwrote {args.out / 'hps_results.md'}")


if __name__ == "__main__":
    main()
