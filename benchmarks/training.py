"""Training benchmarks: labelwise against hand-written PyTorch loops, and how a job's
time and memory grow with the rows.

    python -m benchmarks.training speed     # samples/s: plain loop, DataLoader, a job
    python -m benchmarks.training scaling   # s/epoch and worker peak RSS at 3 sizes
    python -m benchmarks.training all       # both (about 15 minutes on 2 busy cores)

Every run uses the same synthetic problem (50 features on mixed scales, 4 labels with
positive rates 8%, 29%, 17% and 47%, like the problem users bring), the same MLP built
by ``workers.engine.models.build_model``, the same batch size, rate and epochs, and two
torch threads everywhere: the benchmark process sets them, the worker gets
``LABELWISE_WORKER_THREADS=2``. Jobs run through a real production-mode service
(``benchmarks.harness``): PostgreSQL, Redis, `labelwise api`, `labelwise worker`.

A job's rate counts what a user waits for: (training rows x epochs) over
``finished_at - started_at``, so loading, splitting, scaling, per-epoch validation,
progress writes, checkpoints and saving the model are all in it. Its per-epoch rate
(from the history's ``seconds``, validation included) is shown beside it.

On a machine shared with other work, export ``OMP_WAIT_POLICY=PASSIVE`` for the run (the
benchmark and the service it starts inherit it; the tables record it): with two
OpenMP threads on two busy cores, a thread spinning at a barrier while its core runs
someone else made the same epoch take anywhere from 3 to 58 seconds.

Benchmarks, not tests: nothing here asserts. Tables are printed and written into
docs/benchmarks.md (sections ``training-speed`` and ``training-scaling``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import machine_line, write_section
from benchmarks.harness import (
    RunningService,
    rss_anon_bytes,
    running_service,
    vm_hwm_bytes,
    vm_rss_bytes,
)
from service.client import Client
from workers.engine.config import MLPConfig, TrainingConfig
from workers.engine.data import Standardizer, stratified_split
from workers.engine.models import build_model
from workers.engine.pipeline import LabeledArrays, prepare

N_FEATURES = 50
POSITIVE_RATES = (0.08, 0.29, 0.17, 0.47)
HIDDEN_SIZES = [256, 128]
DROPOUT = 0.1
BATCH_SIZE = 512
LR = 1e-3
THREADS = 2
VALIDATION_FRACTION = 0.1
SEED = 0
WORKER_ENV = {"LABELWISE_WORKER_THREADS": str(THREADS)}
FEATURE_NAMES = [f"f{j:02d}" for j in range(N_FEATURES)]
LABEL_NAMES = [f"y{k}" for k in range(len(POSITIVE_RATES))]
MB = 1024 * 1024


# --- the problem ---------------------------------------------------------------------


def make_problem(rows: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(features [rows, 50] float32, labels [rows, 4] uint8)``, seeded.

    Each label thresholds a noisy score (a sparse linear part plus a pairwise
    interaction) at the quantile that gives its positive rate. Features are then put
    on scales from 0.01 to 1000 with offsets, so standardization has work to do.
    """
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, N_FEATURES), dtype=np.float32)
    n_labels = len(POSITIVE_RATES)

    weights = rng.normal(size=(N_FEATURES, n_labels)).astype(np.float32)
    weights *= rng.random((N_FEATURES, n_labels)) < 0.3
    pairs = rng.choice(N_FEATURES, size=(n_labels, 2), replace=False)
    score = features @ weights  # [rows, n_labels]
    for k, (a, b) in enumerate(pairs):
        score[:, k] += 1.5 * np.tanh(features[:, a] * features[:, b])
    score += rng.normal(scale=1.0, size=score.shape).astype(np.float32)

    labels = np.empty((rows, n_labels), dtype=np.uint8)
    for k, rate in enumerate(POSITIVE_RATES):
        labels[:, k] = score[:, k] > np.quantile(score[:, k], 1.0 - rate)

    features *= (10.0 ** rng.uniform(-2, 3, N_FEATURES)).astype(np.float32)
    features += rng.normal(scale=5.0, size=N_FEATURES).astype(np.float32)
    return features, labels


def write_parquet(path: Path, features: np.ndarray, labels: np.ndarray) -> Path:
    columns = [pa.array(features[:, j]) for j in range(features.shape[1])]
    columns += [pa.array(labels[:, k]) for k in range(labels.shape[1])]
    pq.write_table(pa.table(columns, names=FEATURE_NAMES + LABEL_NAMES), path)
    return path


def job_config(epochs: int) -> dict:
    return {
        "imbalance": {"loss": {"type": "bce"}},
        "model": {"type": "mlp", "hidden_sizes": HIDDEN_SIZES, "dropout": DROPOUT},
        "train": {"epochs": epochs, "batch_size": BATCH_SIZE, "lr": LR, "seed": SEED},
        "data": {"validation_fraction": VALIDATION_FRACTION},
    }


def standardized(features: np.ndarray) -> torch.Tensor:
    """The features the plain loops train on: scaled like a job scales them."""
    return torch.from_numpy(Standardizer.fit(features).apply(features))


# --- hand-written loops ------------------------------------------------------------


@dataclass(frozen=True)
class LoopRun:
    seconds: float
    last_loss: float  # mean per-sample BCE of the last epoch


def _new_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(SEED)
    config = MLPConfig(hidden_sizes=HIDDEN_SIZES, dropout=DROPOUT)
    model = build_model(config, N_FEATURES, len(POSITIVE_RATES))
    return model, torch.optim.Adam(model.parameters(), lr=LR)


def plain_loop(x: torch.Tensor, y: torch.Tensor, epochs: int) -> LoopRun:
    """Adam and BCEWithLogitsLoss over batches cut from a shuffled index."""
    model, optimizer = _new_model()
    loss_fn = nn.BCEWithLogitsLoss()
    rows = x.shape[0]
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros((), dtype=torch.float64)
        order = torch.randperm(rows)
        for start in range(0, rows, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * idx.shape[0]
    return LoopRun(time.perf_counter() - started, float(total) / rows)


def dataloader_loop(x: torch.Tensor, y: torch.Tensor, epochs: int) -> LoopRun:
    """The same loop over ``DataLoader(TensorDataset(x, y), shuffle=True)``, the way
    most users write it: rows fetched one by one and stacked by the default collate."""
    model, optimizer = _new_model()
    loss_fn = nn.BCEWithLogitsLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=True)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros((), dtype=torch.float64)
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * xb.shape[0]
    return LoopRun(time.perf_counter() - started, float(total) / x.shape[0])


# --- a job through the service -----------------------------------------------------


@dataclass
class JobRun:
    train_rows: int
    epochs: int
    seconds: float  # finished_at - started_at
    epoch_seconds: list[float]  # the history's wall seconds per epoch
    last_loss: float  # the history's train_loss of the last epoch

    @property
    def later_epoch_seconds(self) -> float:
        """Mean seconds of the epochs after the first (the first, if only one)."""
        later = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.fmean(later)


def run_job(
    client: Client,
    dataset: dict,
    epochs: int,
    on_poll: Callable[[dict], None] | None = None,
) -> JobRun:
    job = client.create_job(dataset["id"], job_config(epochs))
    # Polling once a second: the API answering shares the 2 cores with the worker.
    job = client.wait(job["id"], timeout=3600, poll=1.0, on_poll=on_poll)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {job['status']}: {job['error']}")

    history = client.history(job["id"])["epochs"]
    validation_rows = client.metrics(job["id"], "validation")["rows"]
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return JobRun(
        train_rows=dataset["rows"] - validation_rows,
        epochs=len(history),
        seconds=(finished - started).total_seconds(),
        epoch_seconds=[epoch["seconds"] for epoch in history],
        last_loss=history[-1]["train_loss"],
    )


def upload(client: Client, path: Path) -> tuple[dict, float]:
    """The dataset description and the upload's wall seconds (validation included)."""
    started = time.perf_counter()
    dataset = client.upload_dataset(path, LABEL_NAMES, name=path.stem)
    return dataset, time.perf_counter() - started


# --- benchmark 1: speed ------------------------------------------------------------


def speed(rows: int, epochs: int, repeats: int) -> str:
    """Samples/s of the plain loop, the DataLoader loop and a labelwise job."""
    load_before = os.getloadavg()[0]
    features, labels = make_problem(rows)
    x, y = standardized(features), torch.from_numpy(labels.astype(np.float32))

    runs: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="labelwise-bench-") as tmp:
        path = write_parquet(Path(tmp) / f"speed-{rows}.parquet", features, labels)
        with running_service(WORKER_ENV) as svc:
            dataset, _ = upload(svc.client, path)
            # Interleaved repeats: a neighbour's load on the shared machine then
            # touches every contender alike, and the median drops the worst of it.
            for repeat in range(repeats):
                job = run_job(svc.client, dataset, epochs)
                n = job.train_rows
                contenders = {
                    "job": lambda job=job: job,
                    "plain_full": lambda: plain_loop(x, y, epochs),
                    "plain_train": lambda n=n: plain_loop(x[:n], y[:n], epochs),
                    "loader_full": lambda: dataloader_loop(x, y, epochs),
                    "loader_train": lambda n=n: dataloader_loop(x[:n], y[:n], epochs),
                }
                for name, measure in contenders.items():
                    runs.setdefault(name, []).append(measure())
                    print(f"speed repeat={repeat} {name}: {runs[name][-1]}", flush=True)

    return render_speed(rows, epochs, repeats, runs, load_before)


def render_speed(
    rows: int, epochs: int, repeats: int, runs: dict[str, list], load_before: float
) -> str:
    train_rows = runs["job"][0].train_rows
    jobs = runs["job"]
    contenders = [
        ("(a) plain loop, index slicing", "plain_full", rows),
        ("(a) plain loop, index slicing", "plain_train", train_rows),
        ("(b) DataLoader(TensorDataset), shuffle", "loader_full", rows),
        ("(b) DataLoader(TensorDataset), shuffle", "loader_train", train_rows),
    ]
    measured = [
        (label, n, [r.seconds for r in runs[name]], [r.last_loss for r in runs[name]])
        for label, name, n in contenders
    ]
    job_losses = [j.last_loss for j in jobs]
    measured += [
        (
            "(c) labelwise job, started→finished",
            train_rows,
            [j.seconds for j in jobs],
            job_losses,
        ),
        (
            "(c) labelwise job, its epochs only (Σ history seconds)",
            train_rows,
            [sum(j.epoch_seconds) for j in jobs],
            job_losses,
        ),
    ]

    # samples/s from the median and from the fastest repeat: on a shared machine the
    # fastest is the one a neighbour disturbed least.
    rates = {}
    table = [
        "| loop | rows per epoch | seconds (median) | samples/s (median) "
        "| samples/s (best) | last-epoch train loss |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, n, seconds, losses in measured:
        median, best = statistics.median(seconds), min(seconds)
        rates[label, n] = (n * epochs / median, n * epochs / best)
        table.append(
            f"| {label} | {n:,} | {median:.2f} | {rates[label, n][0]:,.0f} "
            f"| {rates[label, n][1]:,.0f} | {statistics.median(losses):.4f} |"
        )

    plain = rates[contenders[1][0], train_rows]
    loader = rates[contenders[3][0], train_rows]
    job = rates[measured[4][0], train_rows]
    job_epochs = rates[measured[5][0], train_rows]
    ratios = [
        "| ratio, same training rows | started→finished (median) | epochs only "
        "(median) | started→finished (best) | epochs only (best) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, base in (
        ("labelwise / plain loop", plain),
        ("labelwise / DataLoader", loader),
    ):
        ratios.append(
            f"| {label} | {job[0] / base[0]:.2f} | {job_epochs[0] / base[0]:.2f} "
            f"| {job[1] / base[1]:.2f} | {job_epochs[1] / base[1]:.2f} |"
        )

    head = _heading(
        "Training speed: labelwise against hand-written loops",
        extra=f"load average {load_before:.1f} before the run, "
        f"{os.getloadavg()[0]:.1f} after",
    )
    notes = (
        f"{rows:,} synthetic rows x {N_FEATURES} features x {len(POSITIVE_RATES)} "
        f"labels (positive rates {', '.join(f'{r:.0%}' for r in POSITIVE_RATES)}); MLP "
        f"{HIDDEN_SIZES}, dropout {DROPOUT}, Adam {LR}, BCE, batch {BATCH_SIZE}, "
        f"{epochs} epochs, {THREADS} torch threads everywhere; {repeats} interleaved "
        "repeats. The job holds out "
        f"{VALIDATION_FRACTION:.0%} for validation and trains on {train_rows:,} rows; "
        "(a) and (b) are shown on all rows and on that count. The job's seconds are "
        "`finished_at - started_at` (load, split, scale, per-epoch validation, "
        "progress writes, checkpoints, thresholds, saving); *epochs only* sums the "
        "history's per-epoch seconds (training plus validation). Ratios above 1 mean "
        "labelwise is faster."
    )
    return "\n".join([head, "", notes, "", *table, "", *ratios, ""])


# --- benchmark 2: scaling ----------------------------------------------------------


@dataclass
class SizeRun:
    rows: int
    job: JobRun
    upload_seconds: float
    upload_mb: float
    idle_rss: int  # the pool child's peak RSS before the job (bytes)
    prepare_rss: int  # highest RSS sampled before the first optimizer step
    training_rss: int  # highest RSS sampled after it
    peak_rss: int  # VmHWM of the pool child right after the job
    peak_anon: int  # highest RssAnon sampled (no mapped-file pages)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def data_bytes(self) -> int:
        return self.rows * (N_FEATURES + len(POSITIVE_RATES)) * 4


class RssSampler:
    """Samples a process's RSS and anonymous RSS every ``interval`` seconds on a
    thread, keeping each one's maximum before and after a mark (the job's first
    optimizer step)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.before = self.after = 0  # VmRSS maxima (bytes)
        self.anon = 0  # RssAnon maximum over the whole run (bytes)
        self.marked = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mark(self) -> None:
        self.marked = True

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = vm_rss_bytes(self.pid) or 0
            if self.marked:
                self.after = max(self.after, rss)
            else:
                self.before = max(self.before, rss)
            self.anon = max(self.anon, rss_anon_bytes(self.pid) or 0)
            self._stop.wait(self.interval)


def measure_size(rows: int, epochs: int, workdir: Path) -> SizeRun:
    features, labels = make_problem(rows)
    phases = prepare_phases(features, labels)
    path = write_parquet(workdir / f"scaling-{rows}.parquet", features, labels)
    del features, labels
    upload_mb = path.stat().st_size / MB

    # A fresh service per size: the pool child serves many jobs, and VmHWM is the peak
    # over its whole life, so only a child that ran nothing else shows this job's.
    with running_service(WORKER_ENV) as svc:
        dataset, upload_seconds = upload(svc.client, path)
        pid = _single_pool_child(svc)
        idle = vm_hwm_bytes(pid) or 0

        with RssSampler(pid) as sampler:

            def on_poll(job: dict) -> None:
                if (job.get("progress") or {}).get("step"):
                    sampler.mark()

            job = run_job(svc.client, dataset, epochs, on_poll)
            peak = vm_hwm_bytes(pid)
        if peak is None or _single_pool_child(svc) != pid:
            raise RuntimeError("the pool child was replaced during the job")
    path.unlink()
    return SizeRun(
        rows,
        job,
        upload_seconds,
        upload_mb,
        idle,
        sampler.before,
        sampler.after,
        peak,
        sampler.anon,
        phases,
    )


def prepare_phases(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Seconds and extra peak MB of what a job does before its first step, run here
    with the engine's own functions on the same (in-memory) arrays: the stratified
    split alone, then ``workers.engine.pipeline.prepare`` (split, gathers, scaling)."""
    phases: dict[str, float] = {}
    started = time.perf_counter()
    stratified_split(labels, VALIDATION_FRACTION, SEED)
    phases["split_s"] = time.perf_counter() - started

    config = TrainingConfig.model_validate(job_config(1))
    data = LabeledArrays(features, labels, FEATURE_NAMES, LABEL_NAMES)
    with _extra_peak(phases, "prepare_mb"):
        started = time.perf_counter()
        prepared = prepare(config, data)
        phases["prepare_s"] = time.perf_counter() - started
    del prepared
    return phases


@contextmanager
def _extra_peak(phases: dict[str, float], key: str) -> Iterator[None]:
    """Sets ``phases[key]`` to how far this process's peak RSS rose above its RSS at
    entry (MB). Resets the peak through /proc/self/clear_refs; where the kernel
    refuses that, the key is left out."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        yield
        return
    start = vm_rss_bytes(os.getpid()) or 0
    yield
    phases[key] = ((vm_hwm_bytes(os.getpid()) or 0) - start) / MB


def _single_pool_child(svc: RunningService) -> int:
    pids = svc.worker_pool_pids()
    if len(pids) != 1:
        raise RuntimeError(f"expected one worker pool child, found {pids}")
    return pids[0]


def scaling(sizes: list[int], epochs: int, large_epochs: int, large_from: int) -> str:
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="labelwise-bench-") as tmp:
        for rows in sizes:
            size_epochs = large_epochs if rows >= large_from else epochs
            results.append(measure_size(rows, size_epochs, Path(tmp)))
            print(f"scaling rows={rows}: {results[-1]}", flush=True)
    return render_scaling(results, load_before)


def render_scaling(results: list[SizeRun], load_before: float) -> str:
    fixed, fixed_anon = results[0].peak_rss, results[0].peak_anon
    reference = next((r for r in results if r.rows == 224_000), results[0])
    ref_per_row = reference.job.later_epoch_seconds / reference.job.train_rows

    time_table = [
        "| rows | training rows | epochs | upload s | job s | s/epoch (after the "
        "first) | µs per training row | vs 224k per row |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    memory_table = [
        "| rows | float32 data MB | idle child MB | before first step MB | after MB "
        "| peak (VmHWM) MB | peak / data | (peak − fixed) / data | anonymous peak MB "
        "| (anonymous peak − fixed) / data |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    phase_table = [
        "| rows | stratified_split s | prepare s (split included) | prepare +MB "
        "| prepare +MB / data |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        per_row = r.job.later_epoch_seconds / r.job.train_rows
        time_table.append(
            f"| {r.rows:,} | {r.job.train_rows:,} | {r.job.epochs} "
            f"| {r.upload_seconds:.1f} ({r.upload_mb:.0f} MB) | {r.job.seconds:.1f} "
            f"| {r.job.later_epoch_seconds:.2f} | {per_row * 1e6:.1f} "
            f"| {per_row / ref_per_row:.2f} |"
        )
        data = r.data_bytes
        memory_table.append(
            f"| {r.rows:,} | {data / MB:.0f} | {r.idle_rss / MB:.0f} "
            f"| {r.prepare_rss / MB:.0f} | {_mb_or_na(r.training_rss)} "
            f"| {r.peak_rss / MB:.0f} | {r.peak_rss / data:.2f} "
            f"| {(r.peak_rss - fixed) / data:.2f} | {r.peak_anon / MB:.0f} "
            f"| {(r.peak_anon - fixed_anon) / data:.2f} |"
        )
        p = r.phases
        extra = p.get("prepare_mb")
        extra_cells = (
            f"{extra:.0f} | {extra * MB / data:.2f}"
            if extra is not None
            else "n/a | n/a"
        )
        phase_table.append(
            f"| {r.rows:,} | {p['split_s']:.2f} | {p['prepare_s']:.2f} "
            f"| {extra_cells} |"
        )

    head = _heading(
        "Training cost against rows",
        extra=f"load average {load_before:.1f} before the run, "
        f"{os.getloadavg()[0]:.1f} after",
    )
    notes = (
        f"The job of the speed table (MLP {HIDDEN_SIZES}, batch {BATCH_SIZE}, "
        f"{THREADS} threads, {VALIDATION_FRACTION:.0%} validation) at each size, on a "
        "freshly started service. Goal: time linear in rows; peak memory within about "
        "3x the float32 data plus a fixed overhead. *s/epoch* is the mean history "
        "`seconds` of the epochs after the first (validation included); *vs 224k per "
        "row* is 1.00 for linear time. Memory is the worker's pool child (the "
        "process that runs the job): *idle* is its peak before the job, *before/after "
        "first step* the highest RSS sampled every 0.1 s before and after the first "
        "optimizer step shows in the job's progress, *peak* its VmHWM after the job, "
        "*anonymous peak* the highest RssAnon sampled (RSS without pages of mapped "
        "files such as a memory-mapped dataset, which the kernel can drop and read "
        "again). *Fixed* overhead is the peak at the smallest size "
        f"({fixed / MB:.0f} MB, anonymous {fixed_anon / MB:.0f} MB); data is rows x "
        "(features + labels) x 4 bytes. Upload seconds are the API's "
        "`POST /v1/datasets` of a Parquet file, validation included."
    )
    phase_notes = (
        "What a job does before its first step, run here in the benchmark process "
        "with the engine's own functions on the same in-memory arrays: "
        "`workers.engine.data.stratified_split` alone, then "
        "`workers.engine.pipeline.prepare` (split, row gathers, standardization). "
        "+MB: how far the process's peak RSS rose above its RSS before `prepare`."
    )
    return "\n".join(
        [
            head,
            "",
            notes,
            "",
            *time_table,
            "",
            *memory_table,
            "",
            phase_notes,
            "",
            *phase_table,
            "",
        ]
    )


def _mb_or_na(value: int) -> str:
    # A job shorter than one poll is over before its progress shows a step.
    return f"{value / MB:.0f}" if value else "n/a"


# --- output --------------------------------------------------------------------------


def _heading(title: str, extra: str) -> str:
    # Thread settings change these numbers several-fold on a busy machine (an
    # OpenMP thread spinning at a barrier while its core runs someone else), so the
    # command names the ones in effect.
    settings = [
        f"{name}={os.environ[name]}"
        for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
        if name in os.environ
    ]
    command = " ".join([*settings, "python -m benchmarks.training", *sys.argv[1:]])
    return "\n".join(
        [
            f"## {title}",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine_line()}; {extra}.",
            "",
            f"Date: {date.today().isoformat()}.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training")
    parser.add_argument("which", choices=["speed", "scaling", "all"])
    parser.add_argument("--rows", type=int, default=224_000, help="speed: dataset rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="speed: repeats")
    parser.add_argument(
        "--sizes", default="22400,224000,2240000", help="scaling: rows, comma-separated"
    )
    parser.add_argument(
        "--large-epochs",
        type=int,
        default=2,
        help="scaling: epochs at sizes of 1,000,000 rows and more (time budget)",
    )
    args = parser.parse_args(argv)
    # Before anything reads it: machine_line reports the thread count in effect.
    torch.set_num_threads(THREADS)

    if args.which in ("speed", "all"):
        markdown = speed(args.rows, args.epochs, args.repeats)
        print(markdown, flush=True)
        print(f"wrote {write_section('training-speed', markdown)}")
    if args.which in ("scaling", "all"):
        sizes = [int(size) for size in args.sizes.split(",")]
        markdown = scaling(sizes, args.epochs, args.large_epochs, 1_000_000)
        print(markdown, flush=True)
        print(f"wrote {write_section('training-scaling', markdown)}")


if __name__ == "__main__":
    main()
