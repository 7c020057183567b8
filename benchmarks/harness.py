"""A real production-mode labelwise for benchmarks: its own PostgreSQL database, Redis,
`labelwise api` and `labelwise worker` as child processes, torn down afterwards.

    from benchmarks.harness import running_service

    with running_service({"LABELWISE_WORKER_THREADS": "2"}) as svc:
        dataset = svc.client.upload_dataset(path, ["y0", "y1"])
        job = svc.client.wait(svc.client.create_job(dataset["id"])["id"])
        peak = vm_hwm_bytes(svc.worker_pool_pids()[0])

Each service gets a fresh database (dropped at the end), a temporary data dir (removed
at the end), a Redis database shared with other benchmarks but a training queue of its
own, so two benchmarks running side by side never take each other's jobs. Needs
PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379,
like the test suite; ``LABELWISE_BENCH_PG`` and ``LABELWISE_BENCH_REDIS`` override them.

Also here: reading a process's resident memory from /proc (current and peak), since a
benchmark that starts a service usually wants to know what its worker held.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from service.client import Client
from service.processes import LabelwiseProcess, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get(
    "LABELWISE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LABELWISE_BENCH_REDIS", "redis://127.0.0.1:6379/14")

# Seconds to wait for the API's /health and the worker's "ready" line. A cold start
# imports torch and celery, which takes 5-15 s on a busy 2-core machine.
START_TIMEOUT = 120.0
# HTTP timeout of the client (seconds): a 500 MB upload is validated before the
# response comes back.
CLIENT_TIMEOUT = 900.0


@dataclass
class RunningService:
    client: Client  # authenticated with api_key
    base_url: str  # http://127.0.0.1:PORT
    api_key: str
    env: dict[str, str]  # the LABELWISE_* settings both processes run with
    api: LabelwiseProcess
    worker: LabelwiseProcess
    data_dir: Path

    def worker_pool_pids(self) -> list[int]:
        """The Celery pool children of the worker, the processes that run jobs.

        The worker's other child is the reaper (`python -m workers.reaper`); the pool
        children are forks of the worker, so they carry its command line.
        """
        return [
            pid
            for pid in child_pids(self.worker.pid)
            if "workers.reaper" not in _cmdline(pid)
        ]


@contextmanager
def running_service(
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningService]:
    """Start a migrated database, the API and one worker; yield; tear it all down.

    ``extra_env`` adds or overrides ``LABELWISE_*`` settings of both processes (e.g.
    ``LABELWISE_WORKER_THREADS``, ``LABELWISE_PROGRESS_INTERVAL``).
    """
    workdir = Path(tempfile.mkdtemp(prefix="labelwise-bench-"))
    database = f"labelwise_bench_{secrets.token_hex(4)}"
    queue = f"labelwise.bench.{secrets.token_hex(4)}"
    env = {
        "LABELWISE_DATABASE_URL": _create_database(database),
        "LABELWISE_BROKER_URL": REDIS_URL,
        "LABELWISE_DATA_DIR": str(workdir / "data"),
        "LABELWISE_TRAINING_QUEUE": queue,
        **(extra_env or {}),
    }
    started: list[LabelwiseProcess] = []
    client: Client | None = None
    try:
        _run_cli(["migrate"], env)
        api_key = _run_cli(["keys", "create", "--owner", "bench"], env).split()[-1]
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        started.append(
            LabelwiseProcess(
                ["api", "--host", "127.0.0.1", "--port", str(port)],
                env,
                workdir / "api.log",
                cwd=REPO,
            )
        )
        started.append(
            LabelwiseProcess(
                ["worker", "--hostname", f"bench-{secrets.token_hex(3)}@%h"],
                env,
                workdir / "worker.log",
                cwd=REPO,
            )
        )
        api, worker = started
        wait_healthy(base_url, api, timeout=START_TIMEOUT)
        _wait_worker_ready(worker)
        client = Client(base_url, api_key, timeout=CLIENT_TIMEOUT)
        yield RunningService(
            client, base_url, api_key, env, api, worker, workdir / "data"
        )
    except BaseException:
        for process in started:
            print(
                f"--- {process.log_path.name} (last 3000 characters) ---\n"
                f"{process.log()[-3000:]}",
                file=sys.stderr,
            )
        raise
    finally:
        if client is not None:
            client.close()
        for process in reversed(started):
            process.stop()
        _drop_database(database)
        _forget_queue(queue)
        shutil.rmtree(workdir, ignore_errors=True)


# --- processes and their memory ----------------------------------------------------


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``, from the parent field of every /proc/<n>/stat."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name (field 2) is in parentheses and may hold spaces.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            children.append(int(entry.name))
    return sorted(children)


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident memory of ``pid`` since it started (VmHWM), or None if gone."""
    return _status_kib(pid, "VmHWM")


def vm_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` now (VmRSS), or None if gone."""
    return _status_kib(pid, "VmRSS")


def rss_anon_bytes(pid: int) -> int | None:
    """Anonymous resident memory of ``pid`` now (RssAnon): RSS without the pages of
    mapped files, which the kernel can drop and read again."""
    return _status_kib(pid, "RssAnon")


def _status_kib(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- setup and teardown ------------------------------------------------------------


def _create_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = PG_ADMIN.rsplit("/", 1)[0].replace(
        "postgresql://", "postgresql+psycopg://"
    )
    return f"{server}/{name}"


def _drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _forget_queue(queue: str) -> None:
    # Only this service's queue: the Redis database is shared with other benchmarks.
    redis.Redis.from_url(REDIS_URL).delete(queue)


def _run_cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"labelwise {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def _wait_worker_ready(worker: LabelwiseProcess) -> None:
    # Celery logs "<hostname> ready." once it consumes from the queue; a job sent
    # earlier would wait anyway, but its wait would then count as job time.
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        worker.check_alive()
        if " ready." in worker.log():
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready after {START_TIMEOUT:.0f} s")
