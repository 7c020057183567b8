"""Serving speed benchmarks, each against real labelwise processes.

    python -m benchmarks.serving {predict,queue,polling,ingest,all} [--profile DIR]

- predict: 224,000 rows through ``POST /v1/models/{id}/predict`` as JSON chunks (one
  and two clients), as one Parquet file and as one CSV file, against the model's raw
  forward pass in this process; plus what each in-process step of the JSON and file
  paths costs, and the raw forward by torch threads and chunk size, to say where the
  HTTP time goes.
- queue: seconds from ``POST /v1/jobs`` to ``running`` over 50 small jobs, on Redis
  (the production service) and on the embedded filesystem broker (``labelwise up``).
- polling: ``GET /v1/jobs/{id}`` from 50 concurrent clients for 10 s against one API
  process, from an asyncio + httpx generator and from ``wrk`` when it is installed.
- ingest: a 224k-row CSV and Parquet file through ``POST /v1/datasets`` against
  ``pandas.read_csv`` and ``pyarrow.parquet.read_table`` on the same files, with
  the floors under any upload (a bare uvicorn app that drops the body, and one that
  runs the API's streaming multipart parser) and the API's steps in-process.

The load generators share the machine's cores with the service, as a client on the
same host would. Each benchmark prints its tables and rewrites its own section of
docs/benchmarks.md. ``--profile DIR`` also samples the API process with py-spy during
a separate, unmeasured repeat of the load and prints the hottest frames. A benchmark,
not a timed test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from benchmarks.common import REPO, machine_line, write_section
from benchmarks.harness import running_service
from service.client import Client
from service.processes import LabelwiseProcess, free_port, wait_healthy

N_FEATURES = 50
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
# Four labels from common to rare, the imbalance users bring.
LABEL_RATES = {"l0": 0.30, "l1": 0.12, "l2": 0.05, "l3": 0.02}
LABELS = list(LABEL_RATES)

PREDICT_ROWS = 224_000
TRAIN_ROWS = 20_000
CHUNK_ROWS = 10_000
TRAIN_CONFIG = {"train": {"epochs": 2}, "imbalance": {"loss": {"type": "bce"}}}
TINY_CONFIG = {
    "train": {"epochs": 1, "batch_size": 64},
    "imbalance": {"loss": {"type": "bce"}},
}
QUEUE_JOBS = 50
POLL_CLIENTS = 50
POLL_SECONDS = 10.0
REPEATS = 3
FINAL = ("succeeded", "failed", "cancelled")

# One torch thread per worker: the worker trains while the benchmark measures, and
# two cores cannot spare more.
SERVICE_ENV = {"LABELWISE_WORKER_THREADS": "1"}


# --- data ---------------------------------------------------------------------------


def synthetic_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` x (50 float64 features rounded to 4 decimals, as exported tables
    usually are, + 4 uint8 labels). Labels follow a noisy linear score, cut at each
    label's positive rate, so a model has something to learn."""
    rng = np.random.default_rng(seed)
    features = np.round(rng.standard_normal((rows, N_FEATURES)), 4)
    weights = rng.standard_normal((N_FEATURES, len(LABELS))) / np.sqrt(N_FEATURES)
    scores = features @ weights + 0.5 * rng.standard_normal((rows, len(LABELS)))

    rates = np.array(list(LABEL_RATES.values()))
    cuts = np.array([np.quantile(scores[:, j], 1 - r) for j, r in enumerate(rates)])
    labels = (scores > cuts).astype(np.uint8)
    frame = pd.DataFrame(features, columns=FEATURES)
    for j, name in enumerate(LABELS):
        frame[name] = labels[:, j]
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """A plain CSV (unquoted header), written by pyarrow: pandas takes ~20 s here."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with open(path, "wb") as out:
        out.write((",".join(frame.columns) + "\n").encode())
        pa_csv.write_csv(
            table, out, pa_csv.WriteOptions(include_header=False, quoting_style="none")
        )
    return path


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


# --- measuring helpers ---------------------------------------------------------------


def median_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall seconds of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@dataclass
class CpuUse:
    """CPU spent while a block ran: ``process`` seconds by one process (all its
    threads), ``machine`` the busy fraction of all cores (other users included)."""

    wall: float = 0.0
    process: float = 0.0
    machine: float = 0.0

    @property
    def process_share(self) -> float:
        """Cores the process kept busy on average (1.0 = one core, all the time)."""
        return self.process / self.wall if self.wall else 0.0


@contextmanager
def cpu_use(pid: int) -> Iterator[CpuUse]:
    use = CpuUse()
    wall, process, (busy, total) = time.perf_counter(), _cpu_seconds(pid), _jiffies()
    yield use
    use.wall = time.perf_counter() - wall
    use.process = _cpu_seconds(pid) - process
    busy_end, total_end = _jiffies()
    use.machine = (busy_end - busy) / max(total_end - total, 1)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields here start at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def heading(title: str) -> str:
    """A section head: the exact command, the machine, the date and the load."""
    command = "python -m benchmarks.serving " + " ".join(sys.argv[1:])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"## {title}\n\n`{command}`\n\n{machine_line()}; load average {load} at "
        f"start; {time.strftime('%Y-%m-%d %H:%M')}\n"
    )


def publish(name: str, markdown: str) -> None:
    print(markdown, flush=True)
    path = write_section(name, markdown)
    print(f"(written to {path})\n", flush=True)


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{what}: HTTP {response.status_code}: {response.text[:300]}"
        )
    return response


# --- processes: py-spy, the embedded service --------------------------


@contextmanager
def profiled(pid: int | None, out: Path | None, gil: bool = True) -> Iterator[None]:
    """Sample ``pid`` (and its children) with py-spy while the block runs; writes
    collapsed stacks to ``out``. Nonblocking: py-spy reads memory without pausing
    the process.

    ``gil``: count only the thread holding the GIL. One API process runs Python on
    one core at a time, so for Python-bound loads (polling, JSON rows) that is the
    time to cut; work that drops the GIL (torch's forward, pyarrow's parsers) does
    not show, so loads dominated by it are sampled across all threads instead.
    """
    if pid is None or out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["py-spy", "record", "--pid", str(pid), "--subprocesses"]
    command += ["--nonblocking", "--rate", "100", "--format", "raw"]
    command += ["--output", str(out), *(["--gil"] if gil else [])]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy needs a moment to attach
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not out.exists():
            print(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Leaves of threads parked in a threading primitive (the threadpool's idle workers):
# py-spy's nonblocking mode cannot always tell them idle, and they use no CPU.
_PARKED = ("Condition.wait (threading.py", "Event.wait (threading.py", "Queue.get (")


def profile_summary(path: Path, top: int = 15) -> str:
    """Markdown tables of the hottest frames in py-spy's collapsed stacks: by self
    samples (where the CPU was) and by inclusive samples of labelwise's own code
    (the CLI's frames, which hold the whole event loop, left out)."""
    if not path.exists():
        return f"(no profile at {path})"
    own, inclusive = Counter(), Counter()
    total = parked = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if f]
        if frames and frames[-1].startswith(_PARKED):
            parked += int(count)
            continue
        total += int(count)
        if frames:
            own[frames[-1]] += int(count)
        for frame in set(frames):
            ours = "service/" in frame or "workers/" in frame
            if ours and "service/cli.py" not in frame:
                inclusive[frame] += int(count)
    if not total:
        return "(empty profile)"

    def rows(counter: Counter) -> list[list[object]]:
        return [
            [f"`{frame}`", n, f"{100 * n / total:.1f}%"]
            for frame, n in counter.most_common(top)
        ]

    return (
        f"{total} samples at 100 Hz in `{path.name}` ({parked} samples of parked "
        "threads left out)\n\n"
        + "Self (top of stack):\n\n"
        + table(["frame", "samples", "share"], rows(own))
        + "\n\nInclusive, labelwise code only:\n\n"
        + table(["frame", "samples", "share"], rows(inclusive))
        + "\n"
    )


def _short(frame: str) -> str:
    """``func (path:line)`` with site-packages and the repo prefix cut off."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "lib/python3", str(REPO) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    line = f":{match['line']}" if match["line"] else ""
    return f"{match['func']} ({file}{line})"


@contextmanager
def embedded_service(workdir: Path) -> Iterator[Client]:
    """``labelwise up`` as a new user runs it: SQLite and the filesystem broker under a
    fresh data dir, no authentication, none of this shell's LABELWISE_* settings."""
    port = free_port()
    process = LabelwiseProcess(
        ["up", "--port", str(port), "--data-dir", str(workdir / "data")],
        SERVICE_ENV,
        workdir / "up.log",
        clean=True,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    client = Client(base, timeout=120)
    try:
        wait_healthy(base, process)
        yield client
    finally:
        client.close()
        process.stop()


def train_model(client: Client, workdir: Path, rows: int, config: dict) -> dict:
    """Upload a synthetic dataset and train on it; returns the finished job body."""
    path = write_csv(synthetic_frame(rows, seed=1), workdir / f"train-{rows}.csv")
    dataset = client.upload_dataset(path, LABELS, name=f"synthetic-{rows}")
    job = client.wait(client.create_job(dataset["id"], config)["id"], timeout=900)
    if job["status"] != "succeeded":
        raise RuntimeError(f"training job did not succeed: {job}")
    return job


# --- 3. predict -----------------------------------------------------------------------


def _json_bodies(frame: pd.DataFrame, chunk: int) -> list[tuple[bytes, int]]:
    """The request bodies, serialized before the clock starts: ``(body, rows)``."""
    bodies = []
    for start in range(0, len(frame), chunk):
        rows = frame.iloc[start : start + chunk].to_dict(orient="records")
        bodies.append((orjson.dumps({"rows": rows}), len(rows)))
    return bodies


def _check_prediction(response: httpx.Response, rows: int) -> None:
    _ok(response, "predict")
    got = len(orjson.loads(response.content)["probabilities"])
    if got != rows:
        raise RuntimeError(f"predict answered {got} rows for {rows}")


def _send_json(
    service, url: str, bodies: list[tuple[bytes, int]], clients: int
) -> None:
    """POST every body, spread over ``clients`` threads, each with its own persistent
    connection."""
    headers = {
        "Authorization": f"Bearer {service.api_key}",
        "Content-Type": "application/json",
    }
    errors: list[BaseException] = []

    def work(share: list[tuple[bytes, int]]) -> None:
        try:
            with httpx.Client(
                base_url=service.base_url, headers=headers, timeout=300
            ) as http:
                for body, rows in share:
                    _check_prediction(http.post(url, content=body), rows)
        except BaseException as exc:  # surfaced below, in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(bodies[i::clients],))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _send_file(http: httpx.Client, url: str, path: Path, rows: int) -> None:
    with open(path, "rb") as handle:
        files = {"file": (path.name, handle, "application/octet-stream")}
        _check_prediction(http.post(url, files=files), rows)


def _model_storage_dir(service, model_id: str) -> Path:
    """The model's artifact directory, read from the benchmark's own database."""
    import psycopg

    url = service.env["LABELWISE_DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        (key,) = conn.execute(
            "SELECT storage_key FROM models WHERE id = %s", (model_id,)
        ).fetchone()
    return service.data_dir / key


def _stage_costs(predictor, bodies, files: dict[str, Path]) -> list[list[object]]:
    """Median seconds of each in-process step the API takes, on the same inputs."""
    from service.datasets.ingest import features_from_rows, read_feature_table
    from service.models import service as model_service

    body, rows = bodies[0]
    parsed = orjson.loads(body)["rows"]
    features = features_from_rows(parsed, predictor.feature_names)
    probs, flags = model_service.predict(predictor, features)
    answer = {
        "labels": predictor.label_names,
        "thresholds": predictor.thresholds,
        "probabilities": probs,
        "predictions": flags,
    }
    steps = [
        ("JSON chunk: orjson.loads(body)", rows, lambda: orjson.loads(body)),
        (
            "JSON chunk: features_from_rows",
            rows,
            lambda: features_from_rows(parsed, predictor.feature_names),
        ),
        (
            "JSON chunk: predict + thresholds",
            rows,
            lambda: model_service.predict(predictor, features),
        ),
        (
            "JSON chunk: orjson.dumps(response)",
            rows,
            lambda: orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
        ),
    ]
    for kind, path in files.items():
        steps.append(
            (
                f"{kind} file: read_feature_table",
                PREDICT_ROWS,
                lambda p=path: read_feature_table(p, predictor.feature_names, LABELS),
            )
        )
    out = []
    for name, n, run in steps:
        seconds = median_seconds(run)
        out.append([name, f"{n:,}", f"{seconds * 1000:.1f}", _fmt_rate(n / seconds)])
    return out


def _forward_grid(predictor, features: np.ndarray) -> list[list[object]]:
    """Rows/s of ``predict_proba`` on all rows by torch threads and chunk rows,
    interleaved so a change in the machine's load hits every cell alike."""
    import torch

    threads_before = torch.get_num_threads()
    cells = [(t, c) for t in (1, 2) for c in (1024, 4096, 65536)]
    seconds: dict[tuple[int, int], list[float]] = {cell: [] for cell in cells}
    try:
        for _ in range(REPEATS):
            for threads, chunk in cells:
                torch.set_num_threads(threads)
                started = time.perf_counter()
                predictor.predict_proba(features, chunk=chunk)
                seconds[threads, chunk].append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads_before)
    return [
        [threads, f"{chunk:,}", _fmt_rate(len(features) / statistics.median(times))]
        for (threads, chunk), times in seconds.items()
    ]


def bench_predict(profile_dir: Path | None) -> None:
    from workers.engine.artifact import load_artifact

    with (
        tempfile.TemporaryDirectory(prefix="lw-bench-predict-") as tmp,
        running_service(SERVICE_ENV) as service,
    ):
        workdir = Path(tmp)
        print("training the served model ...", flush=True)
        job = train_model(service.client, workdir, TRAIN_ROWS, TRAIN_CONFIG)
        model_id = job["model_id"]
        url = f"/v1/models/{model_id}/predict"

        frame = synthetic_frame(PREDICT_ROWS, seed=2)[FEATURES]
        features = frame.to_numpy(dtype=np.float32)
        bodies = _json_bodies(frame, CHUNK_ROWS)
        files = {
            "Parquet": write_parquet(frame, workdir / "predict.parquet"),
            "CSV": write_csv(frame, workdir / "predict.csv"),
        }
        http = httpx.Client(
            base_url=service.base_url,
            timeout=300,
            headers={"Authorization": f"Bearer {service.api_key}"},
        )
        # The first request loads the predictor into the API's cache.
        _send_json(service, url, bodies[:1], 1)

        print("measuring ...", flush=True)
        pid = service.api.pid
        runs = {
            "JSON chunks, 1 client": lambda: _send_json(service, url, bodies, 1),
            "JSON chunks, 2 clients": lambda: _send_json(service, url, bodies, 2),
        }
        for kind, path in files.items():
            runs[f"one {kind} file"] = lambda p=path: _send_file(
                http, url, p, PREDICT_ROWS
            )
        results = {}
        for name, run in runs.items():
            with cpu_use(pid) as use:
                seconds = median_seconds(run)
            results[name] = (seconds, use)
        predictor = load_artifact(_model_storage_dir(service, model_id))
        raw = median_seconds(lambda: predictor.predict_proba(features))
        grid = _forward_grid(predictor, features)
        stages = _stage_costs(predictor, bodies, files)
        sizes = {kind: path.stat().st_size / 2**20 for kind, path in files.items()}

        profiles = []
        if profile_dir:
            for name, run in runs.items():
                if "2 clients" in name:
                    continue
                slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                out = profile_dir / f"predict-{slug}.txt"
                # JSON rows are Python-bound; files are mostly pyarrow and torch.
                with profiled(pid, out, gil=name.startswith("JSON")):
                    for _ in range(2):
                        run()
                mode = "GIL holder only" if name.startswith("JSON") else "all threads"
                profiles.append(
                    f"### py-spy: {name} ({mode})\n\n{profile_summary(out)}"
                )
        http.close()

    goals = {
        "JSON chunks, 1 client": 50_000,
        "JSON chunks, 2 clients": 50_000,
        "one Parquet file": 200_000,
    }
    rows = []
    for name, (seconds, use) in results.items():
        rate = PREDICT_ROWS / seconds
        goal = goals.get(name)
        verdict = "met" if goal and rate > goal else "missed"
        rows.append(
            [
                name,
                f"{seconds:.2f}",
                _fmt_rate(rate),
                f"{(PREDICT_ROWS / raw) / rate:.1f}x",
                f"{use.process_share:.2f}",
                f"{100 * use.machine:.0f}%",
                f"> {_fmt_rate(goal)}: {verdict}" if goal else "",
            ]
        )
    rows.append(
        [
            "raw forward in-process (predict_proba)",
            f"{raw:.3f}",
            _fmt_rate(PREDICT_ROWS / raw),
            "1.0x",
            "",
            "",
            "",
        ]
    )
    json_mb = sum(len(b) for b, _ in bodies) / 2**20
    size_note = ", ".join(f"{kind} {mib:.1f} MiB" for kind, mib in sizes.items())
    header = [
        "path",
        "seconds",
        "rows/s",
        "vs raw forward",
        "API CPU (cores)",
        "machine busy",
        "goal",
    ]
    markdown = (
        heading("Prediction throughput")
        + f"\n{PREDICT_ROWS:,} rows x {N_FEATURES} features through "
        f"`POST /v1/models/{{id}}/predict` of a {TRAIN_ROWS:,}-row, 2-epoch MLP "
        "(default 256-128 hidden) on the production service (one `labelwise api` "
        "process, PostgreSQL, Redis). "
        f"JSON: {len(bodies)} requests of {CHUNK_ROWS:,} rows ({json_mb:.0f} MiB in "
        f"all), bodies serialized before timing, each answer parsed; files: "
        f"{size_note}. Median of {REPEATS}; the clients share the two cores. "
        "*API CPU (cores)*: the API process's CPU seconds over wall seconds; "
        "*machine busy*: all cores, everyone's work included.\n\n"
        + table(header, rows)
        + "\n\nThe same steps in-process (what the API's own work costs, without "
        "HTTP):\n\n"
        + table(["step", "rows", "ms", "rows/s"], stages)
        + "\n\nThe raw forward (`Predictor.predict_proba` on all rows) by torch "
        "threads and rows per forward chunk (the API runs torch's default: one "
        "thread per core, 65,536-row chunks), median of 3, interleaved:\n\n"
        + table(["torch threads", "chunk rows", "rows/s"], grid)
        + "\n"
        + ("\n" + "\n".join(profiles) if profiles else "")
    )
    publish("serving-predict", markdown)


# --- 4. queue -------------------------------------------------------------------------


@dataclass
class QueueSample:
    recorded: float  # started_at - created_at from the job body (s)
    observed: float  # POST sent -> first poll that saw it past queued (s)
    status: str


def _time_aware(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def measure_queue(client: Client, dataset_id: str, jobs: int) -> list[QueueSample]:
    """Submit ``jobs`` tiny jobs one after another, each run to its end before the
    next, and time how long each waited to start."""
    samples = []
    for _ in range(jobs):
        sent = time.perf_counter()
        job_id = client.create_job(dataset_id, TINY_CONFIG)["id"]
        while True:
            body = client.job(job_id)
            if body["status"] != "queued":
                observed = time.perf_counter() - sent
                break
            time.sleep(0.01)
        done = client.wait(job_id, timeout=300, poll=0.05)
        recorded = float("nan")
        if done["started_at"]:
            recorded = (
                _time_aware(done["started_at"]) - _time_aware(done["created_at"])
            ).total_seconds()
        samples.append(QueueSample(recorded, observed, done["status"]))
    return samples


def _queue_row(name: str, samples: list[QueueSample]) -> list[object]:
    recorded = [s.recorded for s in samples if s.recorded == s.recorded]
    observed = [s.observed for s in samples]
    failed = sum(s.status != "succeeded" for s in samples)
    p50 = percentile(recorded, 50)
    return [
        name,
        len(samples),
        failed,
        f"{p50:.3f}",
        f"{percentile(recorded, 95):.3f}",
        f"{max(recorded):.3f}",
        f"{percentile(observed, 50):.3f}",
        f"{percentile(observed, 95):.3f}",
    ]


def bench_queue(profile_dir: Path | None) -> None:
    tiny = synthetic_frame(400, seed=3)
    results = {}
    with tempfile.TemporaryDirectory(prefix="lw-bench-queue-") as tmp:
        path = write_csv(tiny, Path(tmp) / "tiny.csv")
        with running_service(SERVICE_ENV) as service:
            dataset = service.client.upload_dataset(path, LABELS, name="tiny")
            print("queue: Redis ...", flush=True)
            results["Redis (production)"] = measure_queue(
                service.client, dataset["id"], QUEUE_JOBS
            )
        with embedded_service(Path(tmp)) as client:
            dataset = client.upload_dataset(path, LABELS, name="tiny")
            print("queue: embedded broker ...", flush=True)
            results["filesystem broker (`labelwise up`)"] = measure_queue(
                client, dataset["id"], QUEUE_JOBS
            )

    rows = [_queue_row(name, samples) for name, samples in results.items()]
    redis_p50 = float(rows[0][3])
    series = "\n".join(
        f"- {name}: " + ", ".join(f"{s.recorded:.2f}" for s in samples)
        for name, samples in results.items()
    )
    markdown = (
        heading("Queue latency")
        + f"\nSeconds from `POST /v1/jobs` to `running` over {QUEUE_JOBS} jobs "
        "(400 rows, 1 epoch), submitted one after another, each run to its end. "
        "*Recorded* is `started_at - created_at` from the job body (the worker's "
        "claim minus the row's creation); *observed* is POST sent -> first "
        "`GET /v1/jobs/{id}` (every 10 ms) that no longer says `queued`. One worker "
        "(`--concurrency 1`).\n\n"
        + table(
            [
                "broker",
                "jobs",
                "not succeeded",
                "recorded p50",
                "recorded p95",
                "recorded max",
                "observed p50",
                "observed p95",
            ],
            rows,
        )
        + f"\n\nGoal: p50 under 0.5 s on Redis: "
        f"{'met' if redis_p50 < 0.5 else 'missed'} ({redis_p50:.3f} s).\n\n"
        "Recorded seconds per job, in submission order:\n\n" + series + "\n"
    )
    publish("serving-queue", markdown)


# --- 5. polling -----------------------------------------------------------------------


@dataclass
class LoadResult:
    generator: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    cpu: CpuUse | None = None  # of the API process, while the load ran

    def row(self) -> list[object]:
        rate = self.requests / self.seconds
        cpu = self.cpu or CpuUse()
        return [
            self.generator,
            self.requests,
            f"{self.seconds:.1f}",
            _fmt_rate(rate),
            f"{self.p50_ms:.1f}",
            f"{self.p99_ms:.1f}",
            f"{self.max_ms:.1f}",
            self.errors,
            f"{cpu.process_share:.2f}",
            f"{1000 * cpu.process / max(self.requests, 1):.2f}",
            f"{100 * cpu.machine:.0f}%",
        ]


def measured_load(pid: int, run: Callable[[], LoadResult | None]) -> LoadResult | None:
    """``run``'s result with the API's CPU use while it ran."""
    with cpu_use(pid) as use:
        result = run()
    if result is not None:
        result.cpu = use
    return result


async def _async_load(
    url: str, api_key: str, clients: int, seconds: float
) -> LoadResult:
    """``clients`` independent AsyncClients, one connection each, GET in a loop."""
    headers = {"Authorization": f"Bearer {api_key}"}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal errors
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    ok = (await http.get(url)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        "asyncio + httpx.AsyncClient",
        len(ms),
        elapsed,
        percentile(ms, 50),
        percentile(ms, 99),
        max(ms),
        errors,
    )


def run_async_load(url: str, api_key: str, clients: int, seconds: float) -> LoadResult:
    try:
        import uvloop

        return uvloop.run(_async_load(url, api_key, clients, seconds))
    except ImportError:
        return asyncio.run(_async_load(url, api_key, clients, seconds))


_WRK_SCRIPT = """\
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("LW %%d %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status,
    e.timeout))
end
"""


def run_wrk(
    url: str, api_key: str, clients: int, seconds: float, workdir: Path
) -> LoadResult | None:
    """``wrk`` with one thread (ample for 50 connections) and a Lua script that sets
    the key and prints exact percentiles in microseconds."""
    if not shutil.which("wrk"):
        return None
    script = workdir / "auth.lua"
    script.write_text(_WRK_SCRIPT % api_key)
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("LW "))
    requests, duration, p50, p99, worst, *errors = (int(x) for x in line.split()[1:])
    return LoadResult(
        "wrk -t1 (Lua: Authorization)",
        requests,
        duration / 1e6,
        p50 / 1000,
        p99 / 1000,
        worst / 1000,
        sum(errors),
    )


def bench_polling(profile_dir: Path | None) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="lw-bench-poll-") as tmp,
        running_service(SERVICE_ENV) as service,
    ):
        workdir = Path(tmp)
        job = train_model(service.client, workdir, 400, TINY_CONFIG)
        url = f"{service.base_url}/v1/jobs/{job['id']}"
        key = service.api_key
        for _ in range(200):  # warm the connection pool and the code paths
            _ok(service.client.http.get(url), "poll")

        pid = service.api.pid
        results = [
            measured_load(
                pid, lambda: run_async_load(url, key, POLL_CLIENTS, POLL_SECONDS)
            )
        ]
        time.sleep(1.0)
        wrk = measured_load(
            pid, lambda: run_wrk(url, key, POLL_CLIENTS, POLL_SECONDS, workdir)
        )
        if wrk:
            results.append(wrk)
            # The floor under any endpoint: /health runs one `SELECT 1` with no key
            # lookup, no ORM session and no response model.
            time.sleep(1.0)
            health = measured_load(
                pid,
                lambda: run_wrk(
                    f"{service.base_url}/health",
                    key,
                    POLL_CLIENTS,
                    POLL_SECONDS,
                    workdir,
                ),
            )
            health.generator = "wrk -t1, `GET /health` (reference, not the goal)"
            results.append(health)

        profiles = []
        if profile_dir:
            out = profile_dir / "polling.txt"
            with profiled(pid, out):
                if wrk:
                    run_wrk(url, key, POLL_CLIENTS, POLL_SECONDS, workdir)
                else:
                    run_async_load(url, key, POLL_CLIENTS, POLL_SECONDS)
            profiles.append(
                f"### py-spy: polling (GIL holder only)\n\n{profile_summary(out)}"
            )

    verdicts = []
    for r in results[:2]:
        met = r.requests / r.seconds > 1000 and r.p99_ms < 100 and r.errors == 0
        verdicts.append(f"{r.generator}: {'met' if met else 'missed'}")
    markdown = (
        heading("Polling throughput")
        + f"\n`GET /v1/jobs/{{id}}` (a finished job) from {POLL_CLIENTS} concurrent "
        f"keep-alive clients for {POLL_SECONDS:.0f} s against one `labelwise api` "
        "process on PostgreSQL, with an API key; the generator shares the two "
        "cores. *API CPU (cores)*: the API process's CPU seconds over the wall "
        "seconds (1.00 = one core, all the time); *machine busy*: all cores, "
        "everyone's work included.\n\n"
        + table(
            [
                "generator",
                "requests",
                "seconds",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
                "API CPU (cores)",
                "API CPU ms/req",
                "machine busy",
            ],
            [r.row() for r in results],
        )
        + "\n\nGoal: > 1,000 req/s, p99 < 100 ms, no errors — "
        + "; ".join(verdicts)
        + ".\n"
        + ("\n" + "\n".join(profiles) if profiles else "")
    )
    publish("serving-polling", markdown)


# --- 6. ingest ------------------------------------------------------------------------


# A bare ASGI app on the same uvicorn (httptools, uvloop) as the API: the floor under
# any upload. "discard" reads the body and drops it; "multipart" streams it through
# the API's own receive_multipart into a file, as POST /v1/datasets does.
_SINK_APP = """
import sys, tempfile, uvicorn
from pathlib import Path
from starlette.requests import Request
from service.uploads import receive_multipart

MODE, STAGING = sys.argv[2], Path(tempfile.mkdtemp()) / "upload"

async def app(scope, receive, send):
    if scope["method"] == "GET":  # the readiness probe
        size = 0
    elif MODE == "multipart":
        size = (await receive_multipart(Request(scope, receive), STAGING, 1 << 40)).size
    else:
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, lifespan="off")
"""


@contextmanager
def sink_server(mode: str) -> Iterator[str]:
    """A bare upload sink (``discard`` or ``multipart``) on a free port; yields its
    URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", _SINK_APP, str(port), mode],
        cwd=REPO,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # a throwaway sink: no shutdown owed
        process.wait()


def _post_file(http: httpx.Client, url: str, path: Path) -> None:
    with open(path, "rb") as handle:
        files = {"file": (path.name, handle, "application/octet-stream")}
        _ok(http.post(url, data={"label_columns": ",".join(LABELS)}, files=files), url)


def upload_floors(files: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Median seconds to POST each file as the client does, to each sink."""
    floors: dict[str, dict[str, float]] = {}
    for mode in ("discard", "multipart"):
        with sink_server(mode) as url, httpx.Client(timeout=300) as http:
            for kind, path in files.items():
                floors.setdefault(kind, {})[mode] = median_seconds(
                    lambda p=path: _post_file(http, url, p)
                )
    return floors


def _ingest_stages(path: Path, workdir: Path) -> list[list[object]]:
    """Median seconds of the API's own steps for one upload, in-process."""
    from service.datasets.ingest import read_training_table
    from service.datasets.profile import compute_profile
    from service.storage import Storage

    parsed = read_training_table(path, LABELS)
    storage = Storage(workdir / "stages")

    def digest() -> str:
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                sha.update(block)
        return sha.hexdigest()

    steps = [
        ("sha256 of the file", digest),
        (
            "read_training_table (parse + validate)",
            lambda: read_training_table(path, LABELS),
        ),
        (
            "compute_profile",
            lambda: compute_profile(
                parsed.features, parsed.labels, parsed.feature_names, parsed.label_names
            ),
        ),
        (
            "Storage.write_arrays",
            lambda: storage.write_arrays("datasets/x", parsed.features, parsed.labels),
        ),
    ]
    return [[name, f"{median_seconds(run):.3f}"] for name, run in steps]


def bench_ingest(profile_dir: Path | None) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="lw-bench-ingest-") as tmp,
        running_service(SERVICE_ENV) as service,
    ):
        workdir = Path(tmp)
        frame = synthetic_frame(PREDICT_ROWS, seed=4)
        files = {
            "CSV": write_csv(frame, workdir / "ingest.csv"),
            "Parquet": write_parquet(frame, workdir / "ingest.parquet"),
        }
        readers = {
            "CSV": ("pandas.read_csv", lambda p: pd.read_csv(p)),
            "Parquet": ("pyarrow.parquet.read_table", lambda p: pq.read_table(p)),
        }
        client = service.client
        client.upload_dataset(files["Parquet"], LABELS)  # warm imports and pools

        rows, stages = [], {}
        for kind, path in files.items():
            print(f"ingest: {kind} ...", flush=True)
            upload = median_seconds(lambda p=path: client.upload_dataset(p, LABELS))
            reader_name, reader = readers[kind]
            alone = median_seconds(lambda p=path, r=reader: r(p))
            goal = 2.0 if kind == "CSV" else 1.5
            ratio = upload / alone
            rows.append(
                [
                    kind,
                    f"{path.stat().st_size / 2**20:.1f}",
                    f"{upload:.2f}",
                    reader_name,
                    f"{alone:.2f}",
                    f"{ratio:.1f}x",
                    f"<= {goal}x: {'met' if ratio <= goal else 'missed'}",
                ]
            )
            stages[kind] = _ingest_stages(path, workdir)
        arrow_csv = median_seconds(lambda: pa_csv.read_csv(files["CSV"]))
        floors = upload_floors(files)

        profiles = []
        if profile_dir:
            pid = service.api.pid
            for kind, path in files.items():
                out = profile_dir / f"ingest-{kind.lower()}.txt"
                with profiled(pid, out, gil=False):
                    for _ in range(2):
                        client.upload_dataset(path, LABELS)
                profiles.append(
                    f"### py-spy: ingest {kind} (all threads)\n\n"
                    + profile_summary(out)
                )

    stage_rows = [
        [
            "HTTP only: POST to a bare uvicorn app that drops the body",
            f"{floors['CSV']['discard']:.3f}",
            f"{floors['Parquet']['discard']:.3f}",
        ],
        [
            "HTTP + service.uploads.receive_multipart to a file",
            f"{floors['CSV']['multipart']:.3f}",
            f"{floors['Parquet']['multipart']:.3f}",
        ],
    ]
    stage_rows += [
        [name, stages["CSV"][i][1], stages["Parquet"][i][1]]
        for i, (name, _) in enumerate(stages["CSV"])
    ]
    markdown = (
        heading("Ingest")
        + f"\n{PREDICT_ROWS:,} rows x {N_FEATURES} float features + {len(LABELS)} "
        "0/1 labels through `POST /v1/datasets` (the whole HTTP request: upload, "
        "validation, profile, storing, the database row) on the production service, "
        f"against reading the same file alone. Median of {REPEATS}.\n\n"
        + table(
            ["file", "MiB", "upload s", "reader", "reader s", "ratio", "goal"], rows
        )
        + f"\n\n(pyarrow.csv.read_csv alone, multithreaded: {arrow_csv:.2f} s.)\n\n"
        "Where an upload's time goes, seconds (median of 3): the first two rows "
        "are whole HTTP requests to a bare app on the same uvicorn, the rest the "
        "API's steps run in this process on the same file:\n\n"
        + table(["step", "CSV", "Parquet"], stage_rows)
        + "\n"
        + ("\n" + "\n".join(profiles) if profiles else "")
    )
    publish("serving-ingest", markdown)


# --- command line ------------------------------------------------------------------

BENCHMARKS = {
    "predict": bench_predict,
    "queue": bench_queue,
    "polling": bench_polling,
    "ingest": bench_ingest,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=[*BENCHMARKS, "all"])
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also sample the API with py-spy during an extra, unmeasured run of the "
        "load, writing collapsed stacks to DIR",
    )
    args = parser.parse_args()
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    for name in names:
        BENCHMARKS[name](args.profile)


if __name__ == "__main__":
    main()
