"""Training benchmarks: labelwise against hand-written PyTorch loops, and how a job's
time and memory grow with the rows.

    python -m benchmarks.training speed     # samples/s: plain loop, DataLoader, a job
    python -m benchmarks.training scaling   # s/epoch and worker peak RSS at 3 sizes
    python -m benchmarks.training all       # both (about 10-15 minutes on 2 cores)

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
    running_service,
    vm_hwm_bytes,
    vm_rss_bytes,
)
from service.client import Client
from workers.engine.config import MLPConfig
from workers.engine.data import Standardizer, stratified_split
from workers.engine.models import build_model

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

    def median(name: str, attribute: Callable) -> float:
        return statistics.median(attribute(run) for run in runs[name])

    def loop_row(label: str, name: str, n: int) -> tuple[str, float]:
        seconds = median(name, lambda r: r.seconds)
        loss = median(name, lambda r: r.last_loss)
        rate = n * epochs / seconds
        return f"| {label} | {n:,} | {seconds:.2f} | {rate:,.0f} | {loss:.4f} |", rate

    lines_and_rates = [
        loop_row("(a) plain loop, index slicing", "plain_full", rows),
        loop_row("(a) plain loop, index slicing", "plain_train", train_rows),
        loop_row("(b) DataLoader(TensorDataset), shuffle", "loader_full", rows),
        loop_row("(b) DataLoader(TensorDataset), shuffle", "loader_train", train_rows),
    ]
    plain_rate, loader_rate = lines_and_rates[1][1], lines_and_rates[3][1]
    job_seconds = median("job", lambda r: r.seconds)
    epoch_seconds = median("job", lambda r: sum(r.epoch_seconds))
    job_loss = median("job", lambda r: r.last_loss)
    job_rate = train_rows * epochs / job_seconds
    epoch_rate = train_rows * epochs / epoch_seconds

    table = [
        "| loop | rows per epoch | seconds | samples/s | last-epoch train loss |",
        "|---|---:|---:|---:|---:|",
        *(line for line, _ in lines_and_rates),
        f"| (c) labelwise job, started→finished | {train_rows:,} | {job_seconds:.2f} "
        f"| {job_rate:,.0f} | {job_loss:.4f} |",
        f"| (c) labelwise job, its epochs only (Σ history seconds) | {train_rows:,} "
        f"| {epoch_seconds:.2f} | {epoch_rate:,.0f} | {job_loss:.4f} |",
    ]
    ratios = [
        "| ratio (same training rows) | started→finished | epochs only |",
        "|---|---:|---:|",
        f"| labelwise / plain loop | {job_rate / plain_rate:.2f} "
        f"| {epoch_rate / plain_rate:.2f} |",
        f"| labelwise / DataLoader | {job_rate / loader_rate:.2f} "
        f"| {epoch_rate / loader_rate:.2f} |",
    ]
    head = _heading(
        "Training speed: labelwise against hand-written loops",
        extra=f"load average {load_before:.1f} before the run, "
        f"{os.getloadavg()[0]:.1f} after",
    )
    notes = (
        f"{rows:,} synthetic rows x {N_FEATURES} features x {len(POSITIVE_RATES)} "
        f"labels (positive rates {', '.join(f'{r:.0%}' for r in POSITIVE_RATES)}); MLP "
        f"{HIDDEN_SIZES}, dropout {DROPOUT}, Adam {LR}, BCE, batch {BATCH_SIZE}, "
        f"{epochs} epochs, {THREADS} torch threads everywhere. Median of {repeats} "
        "interleaved repeats. The job holds out "
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
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def data_bytes(self) -> int:
        return self.rows * (N_FEATURES + len(POSITIVE_RATES)) * 4


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds on a thread, splitting the
    maximum into before and after a mark (the job's first optimizer step)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.before = self.after = 0
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
        phases,
    )


def prepare_phases(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Seconds (and extra peak MB where /proc allows) of what a job does before its
    first step, run here on the same arrays with the engine's own functions."""
    phases: dict[str, float] = {}
    started = time.perf_counter()
    train_idx, val_idx = stratified_split(labels, VALIDATION_FRACTION, SEED)
    phases["split_s"] = time.perf_counter() - started

    with _extra_peak(phases, "gather_mb"):
        started = time.perf_counter()
        x_train, x_val = features[train_idx], features[val_idx]
        phases["gather_s"] = time.perf_counter() - started
    with _extra_peak(phases, "fit_mb"):
        started = time.perf_counter()
        scaler = Standardizer.fit(x_train)
        phases["fit_s"] = time.perf_counter() - started
    with _extra_peak(phases, "apply_mb"):
        started = time.perf_counter()
        scaled = scaler.apply(x_train), scaler.apply(x_val)
        phases["apply_s"] = time.perf_counter() - started
    del x_train, x_val, scaled
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
    fixed = results[0].peak_rss
    reference = next((r for r in results if r.rows == 224_000), results[0])
    ref_per_row = reference.job.later_epoch_seconds / reference.job.train_rows

    time_table = [
        "| rows | training rows | epochs | upload s | job s | s/epoch (after the "
        "first) | µs per training row | vs 224k per row |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    memory_table = [
        "| rows | float32 data MB | idle child MB | before first step MB | after MB "
        "| peak (VmHWM) MB | peak / data | (peak − fixed) / data |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    phase_table = [
        "| rows | stratified split s | gather x[idx] s (+MB) | Standardizer.fit s "
        "(+MB) | apply s (+MB) |",
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
            f"| {r.prepare_rss / MB:.0f} | {r.training_rss / MB:.0f} "
            f"| {r.peak_rss / MB:.0f} | {r.peak_rss / data:.2f} "
            f"| {(r.peak_rss - fixed) / data:.2f} |"
        )
        p = r.phases
        phase_table.append(
            f"| {r.rows:,} | {p['split_s']:.2f} | {p['gather_s']:.2f}"
            f"{_mb(p, 'gather_mb')} | {p['fit_s']:.2f}{_mb(p, 'fit_mb')} "
            f"| {p['apply_s']:.2f}{_mb(p, 'apply_mb')} |"
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
        "optimizer step shows in the job's progress, *peak* its VmHWM after the job. "
        f"*Fixed* overhead is the peak at the smallest size ({fixed / MB:.0f} MB); "
        "data is rows x (features + labels) x 4 bytes. Upload seconds are the API's "
        "`POST /v1/datasets` of a Parquet file, validation included."
    )
    phase_notes = (
        "What a job does before its first step, timed here in the benchmark process "
        "with the engine's functions on the same arrays "
        "(`workers.engine.data.stratified_split`, the gathers of "
        "`workers.engine.pipeline.prepare`, `Standardizer.fit`, `Standardizer.apply` "
        "on both parts). +MB: how far the peak RSS rose above the RSS before the step."
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


def _mb(phases: dict[str, float], key: str) -> str:
    return f" (+{phases[key]:.0f})" if key in phases else ""


# --- output --------------------------------------------------------------------------


def _heading(title: str, extra: str) -> str:
    command = " ".join(["python -m benchmarks.training", *sys.argv[1:]])
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
    parser.add_argument("--repeats", type=int, default=3, help="speed: repeats")
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
