"""UG-Sep student, side by side: naive vs request-level reuse vs reuse + W8A16, in one run.

The same trained student weights are scored three ways at N candidates per request:
  naive   – the user's inputs copied to every candidate row, all T tokens per row;
  reuse   – UG-Sep: user tokens once per request, only the G group tokens per candidate;
  w8a16   – reuse with int8 per-channel weights and bf16 activations (`quantize_w8a16`).
Reported: p50/p99 latency per request, requests/s at a few concurrency levels, FLOPs per request,
weight bytes, W8A16 parity against fp32, and accuracy on a planted click model: the student against
a RankMixer without the mask (the reference) and against itself without information compensation.

Accuracy is compared on an "accuracy twin": the default student's tokens, split and depth at
D = 64, which trains for several epochs within the time budget (the serving width, D = 256, gets
one epoch here; its AUC is listed too, and its weights are the ones scored for speed).

The accuracy variants train with `--seeds` seeds (default 5); the student's gap to the reference is
the mean over seeds with a paired seed×row bootstrap interval (`pipeline.metrics.paired_gain`).

    .venv/bin/python benchmarks/ugsep.py            # full run, 5 seeds
    .venv/bin/python benchmarks/ugsep.py --quick    # a smoke run of every step
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from pipeline.export.parity import parity_report
from pipeline.metrics import Estimate, auc, paired_gain
from pipeline.models.config import StudentConfig
from pipeline.models.quantize import fast_activation_dtype, quantize_w8a16
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import PlantedClicks, PlantedClickWorld

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

Request = tuple[Mapping[str, Tensor], ...]  # (user, candidates), or (user,) for the user side alone
Scorer = Callable[..., object]
CANDIDATE_COUNTS = (16, 64, 256, 1024)
CONCURRENCY = (1, 2, 4)
THROUGHPUT_COUNTS = (64, 256)
REFERENCE, STUDENT, NO_COMPENSATION = ("RankMixer, no mask (reference)", "UG-Sep + compensation",
                                       "UG-Sep, compensation off")


@dataclass(frozen=True)
class Settings:
    threads: int
    train_requests: int
    validation_requests: int
    twin_width: int
    twin_epochs: int
    serving_epochs: int
    seconds_per_latency_cell: float
    seconds_per_throughput_cell: float
    parity_requests: int


FULL = Settings(threads=1, train_requests=6000, validation_requests=2500, twin_width=64, twin_epochs=4,
                serving_epochs=1, seconds_per_latency_cell=4.0, seconds_per_throughput_cell=3.0,
                parity_requests=1000)
QUICK = Settings(threads=1, train_requests=300, validation_requests=200, twin_width=64, twin_epochs=1,
                 serving_epochs=1, seconds_per_latency_cell=0.3, seconds_per_throughput_cell=0.3,
                 parity_requests=50)


def cpu_pressure() -> str:
    """Load from other processes on this shared machine: it inflates and spreads latencies."""
    try:
        some = Path("/proc/pressure/cpu").read_text().split("\n")[0]
        return f"loadavg {os.getloadavg()[0]:.2f}, cpu pressure {some.split()[1]}"
    except OSError:
        return f"loadavg {os.getloadavg()[0]:.2f}"


# ---- accuracy -----------------------------------------------------------------------------
def train_briefly(config: StudentConfig, train: PlantedClicks, epochs: int, learning_rate: float,
                  seed: int = 3, batch_size: int = 512) -> UGSepStudent:
    """Adam on click BCE, bf16 autocast (the CPU has native bf16); same init and order per seed."""
    torch.manual_seed(seed)
    student = UGSepStudent(config)
    optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows, labels in train.batches(batch_size, order):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = student(rows)
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return student.eval()


def validation_logits(student: UGSepStudent, validation: PlantedClicks) -> np.ndarray:
    """Logits of all validation rows: per-row forward under bf16 autocast, identical for every variant."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.cat([student({k: v[i:i + 4096] for k, v in validation.rows.items()}).float()
                            for i in range(0, validation.labels.shape[0], 4096)])
    return logits.numpy()


def validation_auc(student: UGSepStudent, validation: PlantedClicks) -> float:
    return auc(validation.labels.numpy(), validation_logits(student, validation))


# ---- speed --------------------------------------------------------------------------------
def latencies(scorers: Mapping[str, Scorer], requests: list[Request], seconds: float) -> dict[str, list[float]]:
    """Per-request seconds, methods interleaved so that background load hits all of them alike."""
    with torch.inference_mode():
        estimate = {}
        for name, scorer in scorers.items():
            for request in requests[:2]:
                scorer(*request)  # warm-up
            start = time.perf_counter()
            scorer(*requests[0])
            estimate[name] = time.perf_counter() - start
        repeats = {n: int(min(400, max(20, seconds / max(t, 1e-6)))) for n, t in estimate.items()}
        samples: dict[str, list[float]] = {n: [] for n in scorers}
        for i in range(max(repeats.values())):
            request = requests[i % len(requests)]
            for name, scorer in scorers.items():
                if i < repeats[name]:
                    start = time.perf_counter()
                    scorer(*request)
                    samples[name].append(time.perf_counter() - start)
    return samples


def _serve(scorer: Scorer, requests: list[Request], concurrency: int, seconds: float) -> tuple[int, float]:
    """(requests done, seconds) with `concurrency` client threads calling `scorer` back to back."""
    done = [0] * concurrency
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        with torch.inference_mode():
            i = index
            while time.perf_counter() < stop:
                scorer(*requests[i % len(requests)])
                done[index] += 1
                i += concurrency

    start = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done), time.perf_counter() - start


def throughputs(scorers: Mapping[str, Scorer], requests: list[Request], concurrency: int, seconds: float,
                windows: int = 4) -> dict[str, float]:
    """Requests/s per scorer with `concurrency` clients, in interleaved windows (background load is shared)."""
    totals = {name: [0, 0.0] for name in scorers}
    for _ in range(windows):
        for name, scorer in scorers.items():
            done, took = _serve(scorer, requests, concurrency, seconds / windows)
            totals[name][0] += done
            totals[name][1] += took
    return {name: done / took for name, (done, took) in totals.items()}


def flops_per_request(scorer: Scorer, request: Request) -> int:
    """Matmul FLOPs of one request, including the int8 kernel (2·M·N·K like any matmul)."""
    def int8_mm(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[0]

    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten._weight_int8pack_mm: int8_mm})
    with torch.inference_mode(), counter:
        scorer(*request)
    return counter.get_total_flops()


def weight_bytes(student: UGSepStudent) -> int:
    """Dense weights a request reads (embedding tables excluded: they live in the provider)."""
    tables = {id(t) for m in student.modules() if isinstance(m, torch.nn.Embedding) for t in m.parameters()}
    tensors = [t for t in list(student.parameters()) + list(student.buffers()) if id(t) not in tables]
    return sum(t.numel() * t.element_size() for t in tensors)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- report ---------------------------------------------------------------------------------
def plot(results: dict[int, dict[str, list[float]]], path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for name, style in (("naive", "o-"), ("reuse", "s-"), ("w8a16", "^-")):
        counts = sorted(results)
        p50 = [1e3 * statistics.median(results[n][name]) for n in counts]
        p99 = [1e3 * percentile(results[n][name], 0.99) for n in counts]
        line, = axis.plot(counts, p50, style, label=f"{name} p50")
        axis.plot(counts, p99, ":", color=line.get_color(), label=f"{name} p99")
    axis.set(xscale="log", yscale="log", xlabel="candidates per request (N)", ylabel="latency per request (ms)",
             title=title)
    axis.set_xticks(CANDIDATE_COUNTS, [str(n) for n in CANDIDATE_COUNTS])
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, ncols=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def accuracy(settings: Settings, config: StudentConfig, world: PlantedClickWorld, seeds: int
             ) -> tuple[UGSepStudent, PlantedClicks, Estimate]:
    """Train the variants on planted clicks with `seeds` seeds each; return the serving student, the
    validation set and the student's AUC gap to the reference (mean over seeds, paired seed×row interval)."""
    train = world.sample(settings.train_requests, 16, config.sequence_length, seed=1)
    validation = world.sample(settings.validation_requests, 16, config.sequence_length, seed=2)
    labels = validation.labels.numpy()
    twin = config.model_copy(update={"token_dim": settings.twin_width})
    variants = {REFERENCE: twin.model_copy(update={"user_group_mask": False, "compensation": False}),
                STUDENT: twin, NO_COMPENSATION: twin.model_copy(update={"compensation": False})}
    # Wider models need a smaller step to stay stable. Seeds 3, 4, … (3 was the single seed before).
    logits = {name: np.stack([validation_logits(train_briefly(variant, train, settings.twin_epochs, 5e-3, seed=3 + k),
                                                validation) for k in range(seeds)])
              for name, variant in variants.items()}
    aucs = {name: np.array([auc(labels, row) for row in stack]) for name, stack in logits.items()}
    serving = train_briefly(config, train, settings.serving_epochs, 2e-3)
    oracle = auc(labels, validation.click_probability.numpy())
    print(f"## Accuracy: planted click model, {train.labels.numel():,} training rows, "
          f"{validation.labels.numel():,} validation rows (AUC of the true click probability: {oracle:.4f}), "
          f"{seeds} seeds per variant\n")
    print("| model | D | epochs | val AUC (mean ± std over seeds) | ΔAUC vs reference [90 % CI, paired seed×row "
          "bootstrap], seeds above |\n| --- | --- | --- | --- | --- |")
    gaps = {name: paired_gain(labels, logits[name], logits[REFERENCE]) for name in variants if name != REFERENCE}
    for name, values in aucs.items():
        gap = (f"{gaps[name].value:+.4f} [{gaps[name].low:+.4f}, {gaps[name].high:+.4f}], "
               f"{int((values > aucs[REFERENCE]).sum())}/{seeds}") if name in gaps else "–"
        print(f"| {name} | {twin.token_dim} | {settings.twin_epochs} | {values.mean():.4f} ± {values.std():.4f} | "
              f"{gap} |")
    print(f"| {STUDENT}, serving width (the weights timed below) | {config.token_dim} | "
          f"{settings.serving_epochs} | {validation_auc(serving, validation):.4f} | – |")
    return serving, validation, gaps[STUDENT]


def latency_table(scorers: Mapping[str, Scorer], pool: Callable[[int, int], list[Request]],
                  seconds: float) -> dict[int, dict[str, list[float]]]:
    """Print p50/p99 per request and FLOPs for every N; return the raw samples for the plot."""
    results: dict[int, dict[str, list[float]]] = {}
    print("| N | naive p50 | naive p99 | reuse p50 | reuse p99 | w8a16 p50 | w8a16 p99 | reuse vs naive "
          "| w8a16 vs reuse | GFLOP naive / reuse / w8a16 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in CANDIDATE_COUNTS:
        requests = pool(n, 10 + n)
        results[n] = latencies(scorers, requests, seconds)
        flops = {name: flops_per_request(scorer, requests[0]) / 1e9 for name, scorer in scorers.items()}
        p50 = {name: 1e3 * statistics.median(v) for name, v in results[n].items()}
        p99 = {name: 1e3 * percentile(v, 0.99) for name, v in results[n].items()}
        print(f"| {n} | {p50['naive']:.2f} | {p99['naive']:.2f} | {p50['reuse']:.2f} | {p99['reuse']:.2f} | "
              f"{p50['w8a16']:.2f} | {p99['w8a16']:.2f} | {p50['naive'] / p50['reuse']:.2f}x | "
              f"{p50['reuse'] / p50['w8a16']:.2f}x | {flops['naive']:.3f} / {flops['reuse']:.3f} / "
              f"{flops['w8a16']:.3f} |")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run of every step")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for everything (default 1: serving-style, parallel "
                             "across requests; on a shared box a second intra-op thread stalls on others' load)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per accuracy variant (the gap's interval)")
    parser.add_argument("--plot", type=Path, default=Path(__file__).resolve().parents[1] / "docs/img/ugsep_latency.png")
    args = parser.parse_args()
    settings = replace(QUICK if args.quick else FULL, threads=args.threads)
    torch.set_num_threads(settings.threads)
    config = StudentConfig()
    print(f"# UG-Sep benchmark, {date.today().isoformat()}, torch {torch.__version__}, "
          f"{settings.threads} intra-op thread(s), {torch.backends.cpu.get_cpu_capability()}, "
          f"W8A16 activations {fast_activation_dtype()}")
    print(f"default student: T={config.n_tokens} tokens (user {config.n_user_tokens}, group "
          f"{config.n_group_tokens}), D={config.token_dim}, {config.n_layers} layers, FFN x{config.ffn_multiplier}, "
          f"L_student={config.sequence_length}; machine: {cpu_pressure()}\n")

    world = PlantedClickWorld(config.features, seed=0)
    student, validation, auc_gap = accuracy(settings, config, world, 1 if args.quick else args.seeds)
    quantized = quantize_w8a16(student)
    parity = parity_report(student.score, quantized.score,
                           (validation.request(i) for i in range(min(settings.parity_requests,
                                                                     validation.n_requests))))
    print(f"\n## W8A16 parity vs fp32 ({parity.n_rows:,} validation rows): max |Δlogit| "
          f"{parity.max_abs_logit_diff:.4f}, ΔAUC {parity.delta_auc:+.5f}; dense weights "
          f"{weight_bytes(student) / 2**20:.1f} MiB fp32 → {weight_bytes(quantized) / 2**20:.1f} MiB")

    def pool(n: int, seed: int) -> list[Request]:
        requests = world.sample(8, n, config.sequence_length, seed=seed)
        return [requests.request(i)[:2] for i in range(requests.n_requests)]

    scorers: dict[str, Scorer] = {"naive": student.score_naive, "reuse": student.score, "w8a16": quantized.score}
    print(f"\n## Latency per request (ms), machine: {cpu_pressure()}\n")
    results = latency_table(scorers, pool, settings.seconds_per_latency_cell)
    user_side = latencies({"fp32": student.encode_user, "w8a16": quantized.encode_user},
                          [(user,) for user, _ in pool(1, 9)], settings.seconds_per_latency_cell)
    user_p50 = {name: statistics.median(v) for name, v in user_side.items()}
    user_gain = user_p50["fp32"] / user_p50["w8a16"]
    print(f"\nUser side alone (`encode_user`, once per request, M = 1, memory-bound): fp32 "
          f"{1e3 * user_p50['fp32']:.2f} ms, W8A16 {1e3 * user_p50['w8a16']:.2f} ms ({user_gain:.2f}x)")

    print(f"\n## Throughput (requests/s; concurrency = client threads, each on {settings.threads} "
          f"intra-op thread(s))\n")
    print("| N | concurrency | naive | reuse | w8a16 | reuse vs naive | w8a16 vs reuse |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for n in THROUGHPUT_COUNTS:
        requests = pool(n, 20 + n)
        for concurrency in CONCURRENCY:
            rate = throughputs(scorers, requests, concurrency, settings.seconds_per_throughput_cell)
            print(f"| {n} | {concurrency} | {rate['naive']:.1f} | {rate['reuse']:.1f} | {rate['w8a16']:.1f} | "
                  f"{rate['reuse'] / rate['naive']:.2f}x | {rate['w8a16'] / rate['reuse']:.2f}x |")

    plot(results, args.plot, f"UG-Sep student (U={config.n_user_tokens}, G={config.n_group_tokens}, "
                             f"D={config.token_dim}), {settings.threads} thread(s), {date.today().isoformat()}")
    at_256 = {name: statistics.median(v) for name, v in results[256].items()}
    reuse_gain = at_256["naive"] / at_256["reuse"]
    print(f"\n## Goals\n"
          f"- reuse ≥ 2x naive at N=256: {reuse_gain:.2f}x {'met' if reuse_gain >= 2 else 'MISSED'}\n"
          f"- W8A16 ≥ 1.2x further where memory-bound (user side): {user_gain:.2f}x "
          f"{'met' if user_gain >= 1.2 else 'MISSED'}\n"
          f"- UG-Sep + compensation within 0.002 AUC of the unmasked RankMixer: {auc_gap.value:+.4f} "
          f"[{auc_gap.low:+.4f}, {auc_gap.high:+.4f}] {'met' if auc_gap.low >= -0.002 else 'MISSED'} "
          f"(the interval's lower end)\n"
          f"plot: {args.plot}; machine at the end: {cpu_pressure()}")


if __name__ == "__main__":
    main()
