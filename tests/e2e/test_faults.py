"""Fault tests with real processes: a worker killed mid-epoch, Redis restarted with a
job queued, PostgreSQL stopped under the API."""

from __future__ import annotations

import subprocess
import time

import httpx
import numpy as np
import pytest
from safetensors.numpy import load_file

from service.client import Client
from service.demo import DEMO_RATES, make_dataset
from tests.conftest import cli_key, free_port, wait_healthy

pytestmark = pytest.mark.infra

# Short leases so a dead worker's job moves on in seconds, not half a minute.
FAST_RECOVERY = {
    "LABELWISE_LEASE_SECONDS": "3",
    "LABELWISE_HEARTBEAT_SECONDS": "0.5",
    "LABELWISE_REAPER_INTERVAL": "0.5",
    "LABELWISE_REQUEUE_AFTER": "3",
    "LABELWISE_PROGRESS_INTERVAL": "0.2",
}
CONFIG = {
    "model": {"hidden_sizes": [64], "dropout": 0.2},
    "train": {"epochs": 6, "batch_size": 32, "accumulation_steps": 2, "seed": 7},
    "imbalance": {"loss": {"type": "focal"}, "thresholds": {"mode": "max_f1"}},
}


@pytest.fixture
def service(infra_env, spawn, tmp_path):
    env = {**infra_env, **FAST_RECOVERY}
    port = free_port()
    api = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, "api")
    wait_healthy(f"http://127.0.0.1:{port}", api)
    client = Client(f"http://127.0.0.1:{port}", api_key=cli_key(env, "faults"))
    path = tmp_path / "train.csv"
    make_dataset(rows=12000, seed=5).to_csv(path, index=False)
    dataset = client.upload_dataset(path, list(DEMO_RATES))
    yield client, env, dataset
    client.close()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def model_weights(env: dict[str, str], client: Client, model_id: str) -> dict:
    from pathlib import Path

    from service.db import session_scope
    from service.models.tables import Model

    with session_scope() as session:
        key = session.get(Model, model_id).storage_key
    return load_file(str(Path(env["LABELWISE_DATA_DIR"]) / key / "model.safetensors"))


def test_killed_worker_job_resumes_once_with_identical_weights(
    service, spawn, api_client
):
    # api_client points this process's settings at the test database (model_weights).
    client, env, dataset = service
    first = spawn(["worker", "--hostname", "first@test"], env, "worker1")
    job = client.create_job(dataset["id"], CONFIG)

    # Kill -9 mid-epoch, after at least one checkpoint is on disk.
    wait_for(lambda: client.job(job["id"])["progress"]["epoch"] >= 3, 120, "epoch 3")
    first.kill9()
    killed_at = time.monotonic()
    second = spawn(["worker", "--hostname", "second@test"], env, "worker2")
    wait_for(lambda: client.job(job["id"])["attempts"] == 2, 60, "second attempt")
    assert time.monotonic() - killed_at < 60
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "succeeded", (done, second.log())
    assert done["attempts"] == 2

    history = client.history(job["id"])["epochs"]
    assert [e["epoch"] for e in history] == list(range(1, 7))

    # The same job uninterrupted, on the surviving worker: bit-identical weights.
    reference = client.wait(client.create_job(dataset["id"], CONFIG)["id"], timeout=300)
    assert reference["status"] == "succeeded" and reference["attempts"] == 1
    resumed = model_weights(env, client, done["model_id"])
    uninterrupted = model_weights(env, client, reference["model_id"])
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert np.array_equal(resumed[name], uninterrupted[name]), name
    assert history == [
        {**e, "seconds": h["seconds"]}
        for e, h in zip(client.history(reference["id"])["epochs"], history, strict=True)
    ]


def _redis_restart() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False)
    time.sleep(0.5)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    wait_for(
        lambda: (
            subprocess.run(["redis-cli", "ping"], capture_output=True).returncode == 0
        ),
        20,
        "redis back",
    )


def test_job_queued_across_a_redis_restart_runs_once(service, spawn):
    client, env, dataset = service
    job = client.create_job(dataset["id"], {**CONFIG, "train": {"epochs": 1}})
    _redis_restart()  # the queued message is gone with it
    worker = spawn(["worker"], env, "worker")
    done = client.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", worker.log()
    assert done["attempts"] == 1
    assert worker.log().count(f"job.started job_id={job['id']}") == 1


def test_api_answers_503_while_postgres_is_down_and_recovers(service):
    client, _env, dataset = service
    cluster = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True)
    version = cluster.stdout.split()[0]
    base = str(client.http.base_url)
    headers = dict(client.http.headers)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"],
        check=True,
    )
    try:
        down = httpx.get(
            f"{base}/v1/datasets/{dataset['id']}", headers=headers, timeout=10
        )
        assert down.status_code == 503
        assert down.json()["code"] == "database.unavailable"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 503
    finally:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=True,
        )
    wait_for(
        lambda: httpx.get(f"{base}/health", timeout=5).status_code == 200,
        30,
        "api recovered",
    )
    again = httpx.get(
        f"{base}/v1/datasets/{dataset['id']}", headers=headers, timeout=10
    )
    assert again.status_code == 200
