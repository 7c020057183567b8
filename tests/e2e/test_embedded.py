"""The embedded default end to end: `labelwise up` with SQLite and the filesystem
broker, and `labelwise demo` as a new user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from service.client import Client
from service.demo import DEMO_RATES, make_dataset
from tests.conftest import REPO, free_port, wait_healthy

EMBEDDED_ENV = {"LABELWISE_DATABASE_URL": "", "LABELWISE_BROKER_URL": ""}


def test_up_runs_the_loop_with_nothing_else(tmp_path, spawn):
    port = free_port()
    data_dir = tmp_path / "data"
    env = {**EMBEDDED_ENV, "LABELWISE_WORKER_THREADS": "1"}
    up = spawn(["up", "--port", str(port), "--data-dir", str(data_dir)], env, "up")
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, up)

    frame = make_dataset(rows=1500, seed=3)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    client = Client(base)
    dataset = client.upload_dataset(path, list(DEMO_RATES))
    job = client.create_job(dataset["id"], {"train": {"epochs": 2, "batch_size": 64}})
    done = client.wait(job["id"], timeout=180)
    assert done["status"] == "succeeded", (done, up.log())

    metrics = client.metrics(job["id"])
    assert [r["label"] for r in metrics["labels"]] == list(DEMO_RATES)
    assert (data_dir / "labelwise.db").exists()
    rows = frame.drop(columns=list(DEMO_RATES)).iloc[:3].to_dict(orient="records")
    prediction = client.predict_rows(done["model_id"], rows)
    assert len(prediction["predictions"]) == 3
    client.close()


def test_demo_command_prints_metrics_and_predictions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELWISE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "demo",
            "--epochs",
            "2",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Per-label metrics on the validation split" in result.stdout
    assert "Per-label metrics on the test split" in result.stdout
    for label in DEMO_RATES:
        assert label in result.stdout
    assert "Predictions for 5 rows" in result.stdout
