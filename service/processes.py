"""Running `labelwise` commands as child processes.

The demo, the tests and the benchmarks start real services the same way: each command
in a process group of its own, so stopping it also stops what it started (a worker's
pool child and reaper, the worker `labelwise up` runs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelwiseProcess:
    """``python -m service.cli ARGS`` with its output in ``log_path``.

    ``env`` is laid over this process's environment; with ``clean`` the inherited
    LABELWISE_* settings are dropped first (an embedded service as a new user has it).
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        clean: bool = False,
        cwd: Path | None = None,
    ) -> None:
        base = {
            k: v
            for k, v in os.environ.items()
            if not (clean and k.startswith("LABELWISE_"))
        }
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            env={**base, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.log_path.stem} exited with {self.popen.returncode}:\n"
                f"{self.log()[-4000:]}"
            )

    def kill9(self) -> None:
        """SIGKILL the whole group, as the OOM killer or a lost machine would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the group (a Celery warm shutdown), then SIGKILL whatever is left,
        so nothing it started outlives it."""
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()
        self._log.close()


def wait_healthy(
    base_url: str, process: LabelwiseProcess, timeout: float = 120
) -> None:
    """Until ``GET /health`` answers 200; raises with the log if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"{base_url} not healthy after {timeout:.0f} s:\n{process.log()}"
    )
