"""Imbalance auto, the LR finder, the divergence guard and cancellation, through the API
with a real worker on PostgreSQL and Redis."""

from __future__ import annotations

import math
import time

import pytest

from service.demo import DEMO_RATES, make_dataset
from tests.conftest import DATASETS, dataset_meta

pytestmark = pytest.mark.infra


@pytest.fixture
def demo_dataset(production, tmp_path):
    client, _api, _worker = production
    path = tmp_path / "train.csv"
    make_dataset(rows=3000, seed=11).to_csv(path, index=False)
    return client.upload_dataset(path, list(DEMO_RATES))


def test_auto_trains_candidates_and_serves_the_winner(production):
    client, _api, worker = production
    labels = dataset_meta("yeast")["labels"]
    dataset = client.upload_dataset(DATASETS / "yeast" / "train.csv", labels)
    profile = client.http.get(f"/v1/datasets/{dataset['id']}/profile").json()
    assert profile["max_ir"] == pytest.approx(1128 / 21)
    assert any(w["code"] == "labels.high_imbalance" for w in profile["warnings"])

    job = client.create_job(dataset["id"], {"train": {"epochs": 3}})
    assert job["config"]["imbalance"] == "auto"
    done = client.wait(job["id"], timeout=600)
    assert done["status"] == "succeeded", (done, worker.log())

    body = client.http.get(f"/v1/jobs/{job['id']}/candidates").json()
    candidates = body["candidates"]
    strategies = [c["strategy"] for c in candidates]
    assert strategies[0] == "bce+fixed"
    assert {"bce+max_f1", "focal+max_f1", "asymmetric+max_f1"} <= set(strategies)
    assert all(c["status"] == "succeeded" for c in candidates)
    assert all(len(c["labels"]) == 14 and c["seconds"] > 0 for c in candidates)
    chosen = [c for c in candidates if c["chosen"]]
    assert len(chosen) == 1
    best = max(c["macro_f1"] for c in candidates)
    assert chosen[0]["macro_f1"] == best
    assert done["result"]["strategy"] == chosen[0]["strategy"]

    # The job's validation metrics and history are the winner's.
    metrics = client.metrics(job["id"])
    assert metrics["macro_f1"] == pytest.approx(chosen[0]["macro_f1"])
    assert [r["threshold"] for r in metrics["labels"]] == [
        r["threshold"] for r in chosen[0]["labels"]
    ]
    assert len(client.history(job["id"])["epochs"]) == 3
    model = client.http.get(f"/v1/models/{done['model_id']}").json()
    assert model["thresholds"] == [r["threshold"] for r in metrics["labels"]]
    # Candidates are jobs of their own, readable and linked to their parent.
    sub = client.job(candidates[1]["job_id"])
    assert sub["parent_id"] == job["id"] and sub["kind"] == "candidate"


def test_lr_finder_returns_a_curve_and_a_suggestion(production, demo_dataset):
    client, _api, worker = production
    job = client.create_job_raw(
        {
            "kind": "lr_find",
            "dataset_id": demo_dataset["id"],
            "lr_finder": {"start_lr": 1e-6, "end_lr": 1.0, "steps": 60},
        }
    )
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "succeeded", (done, worker.log())
    result = done["result"]
    assert 10 <= len(result["lrs"]) <= 60
    assert result["lrs"] == sorted(result["lrs"])
    assert len(result["losses"]) == len(result["lrs"])
    assert all(math.isfinite(v) for v in result["losses"])
    assert result["suggested_lr"] is None or 1e-6 <= result["suggested_lr"] <= 1.0


def test_exploding_run_fails_as_diverged_without_nan(production, tmp_path):
    client, _api, worker = production
    frame = make_dataset(rows=1500, seed=2)
    features = [c for c in frame.columns if c not in DEMO_RATES]
    frame[features] = frame[features] * 1e4
    path = tmp_path / "wild.csv"
    frame.to_csv(path, index=False)
    dataset = client.upload_dataset(path, list(DEMO_RATES))
    config = {
        "data": {"standardize": False},
        "train": {"epochs": 3, "lr": 10.0, "optimizer": {"type": "sgd"}},
        "imbalance": {"loss": {"type": "bce"}},
    }
    done = client.wait(client.create_job(dataset["id"], config)["id"], timeout=300)
    assert done["status"] == "failed", worker.log()
    assert done["error"]["code"] == "diverged"
    message = done["error"]["message"]
    assert "epoch" in message and "learning rate" in message
    assert "standardize" in message
    for epoch in client.history(done["id"])["epochs"]:
        assert all(
            v is None or math.isfinite(v)
            for v in epoch.values()
            if not isinstance(v, str)
        )


def test_cancel_a_running_job_keeps_its_checkpoint(production, demo_dataset):
    client, _api, worker = production
    config = {
        "train": {"epochs": 200, "batch_size": 16},
        "imbalance": {"loss": {"type": "bce"}},
    }
    job = client.create_job(demo_dataset["id"], config)
    deadline = time.monotonic() + 120
    while client.job(job["id"])["progress"]["epoch"] < 2:
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.1)
    asked = time.monotonic()
    assert client.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = client.wait(job["id"], timeout=60)
    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 15
    assert done["model_id"] is None
    assert len(client.history(job["id"])["epochs"]) >= 1
