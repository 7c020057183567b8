"""The whole loop as a client sees it, on PostgreSQL, Redis, and separate
`labelwise api` and `labelwise worker` processes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import DATASETS, dataset_meta

pytestmark = pytest.mark.infra


def test_yeast_trains_and_predicts(production):
    client, _api, worker = production
    meta = dataset_meta("yeast")
    labels = meta["labels"]

    train = client.upload_dataset(
        DATASETS / "yeast" / "train.csv", labels, name="yeast"
    )
    test = client.upload_dataset(DATASETS / "yeast" / "test.csv", labels)
    assert train["rows"] == 1500 and test["rows"] == 917
    assert len(train["features"]) == 103
    assert train["positives"] == dict(
        zip(labels, meta["label_counts_train"], strict=True)
    )

    config = {"train": {"epochs": 3}, "imbalance": {"loss": {"type": "bce"}}}
    job = client.create_job(train["id"], config, test["id"])
    assert job["status"] == "queued"
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "succeeded", (done, worker.log())
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"] and done["model_id"]

    history = client.history(job["id"])["epochs"]
    assert [e["epoch"] for e in history] == [1, 2, 3]
    # A mean per-sample loss over 14 labels, not a running sum: well under 1.
    assert all(0 < e["train_loss"] < 1 for e in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    for split, rows in (("validation", None), ("test", 917)):
        metrics = client.metrics(job["id"], split)
        assert [r["label"] for r in metrics["labels"]] == labels
        if rows:
            assert metrics["rows"] == rows
            supports = [r["support"] for r in metrics["labels"]]
            assert supports == meta["label_counts_test"]
        for row in metrics["labels"]:
            assert row["tp"] + row["fn"] == row["support"]
            assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == metrics["rows"]
            for key in ("precision", "recall", "f1", "average_precision", "roc_auc"):
                assert row[key] is None or 0.0 <= row[key] <= 1.0
            assert row["threshold"] == 0.5
        assert 0 < metrics["macro_f1"] <= 1 and 0 < metrics["micro_f1"] <= 1

    by_file = client.predict_file(done["model_id"], DATASETS / "yeast" / "test.csv")
    assert by_file["labels"] == labels
    assert len(by_file["probabilities"]) == 917
    frame = pd.read_csv(DATASETS / "yeast" / "test.csv").drop(columns=labels)
    rows = frame.iloc[:50].to_dict(orient="records")
    by_rows = client.predict_rows(done["model_id"], rows)
    # Rows come back in input order, whichever way they were sent.
    np.testing.assert_allclose(
        by_rows["probabilities"], by_file["probabilities"][:50], atol=1e-6
    )
    assert by_rows["predictions"] == by_file["predictions"][:50]
    for probs, flags in zip(
        by_rows["probabilities"], by_rows["predictions"], strict=True
    ):
        assert flags == [
            int(p >= t) for p, t in zip(probs, by_rows["thresholds"], strict=True)
        ]

    # The test split's counts agree with the served predictions on the same file.
    test_metrics = client.metrics(job["id"], "test")
    predicted_pos = [sum(col) for col in zip(*by_file["predictions"], strict=True)]
    assert predicted_pos == [r["tp"] + r["fp"] for r in test_metrics["labels"]]
