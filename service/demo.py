"""`labelwise demo`: the whole loop a user runs, against a real embedded service.

Starts `labelwise up` in a child process (SQLite, filesystem broker, one worker),
uploads a dataset, trains, prints per-label metrics and predicts, then shuts the
service down.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from service.client import ApiError, Client
from service.processes import LabelwiseProcess, free_port, wait_healthy

# Positive rates shaped like the problem users bring: two rare labels, one common.
DEMO_RATES = {"defect": 0.04, "scratch": 0.08, "dent": 0.17, "stain": 0.29, "ok": 0.47}


def make_dataset(rows: int = 6000, features: int = 16, seed: int = 0) -> pd.DataFrame:
    """Tabular features with per-label signal of different strength; each label's
    positive rate is set by thresholding its score at the matching quantile."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    # Features on scales a user's CSV often mixes (counts, ratios, raw sensor units).
    scales = rng.choice([1.0, 10.0, 1000.0], size=features)
    frame = pd.DataFrame(x * scales, columns=[f"f{i}" for i in range(features)])
    for index, (label, rate) in enumerate(DEMO_RATES.items()):
        weights = rng.normal(size=features) * (rng.random(features) < 0.4)
        score = x @ weights + 0.8 * np.sin(2 * x[:, index]) * x[:, -1 - index]
        score += rng.normal(scale=0.6, size=rows)
        frame[label] = (score >= np.quantile(score, 1 - rate)).astype(np.uint8)
    return frame


def _start_service(data_dir: Path, port: int) -> LabelwiseProcess:
    # Empty database and broker URLs: the demo always runs on the embedded default.
    env = {
        "LABELWISE_DATA_DIR": str(data_dir),
        "LABELWISE_DATABASE_URL": "",
        "LABELWISE_BROKER_URL": "",
    }
    return LabelwiseProcess(["up", "--port", str(port)], env, data_dir / "service.log")


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.3f}"


def print_metrics(metrics: dict) -> None:
    print(
        f"\nPer-label metrics on the {metrics['split']} split ({metrics['rows']} rows):"
    )
    print(
        f"  {'label':<14}{'support':>8}{'tp':>6}{'fp':>6}{'fn':>6}"
        f"{'prec':>7}{'recall':>7}{'f1':>7}{'AP':>7}{'thr':>6}"
    )
    for row in metrics["labels"]:
        print(
            f"  {row['label']:<14}{row['support']:>8}{row['tp']:>6}{row['fp']:>6}"
            f"{row['fn']:>6} {_fmt(row['precision'])} {_fmt(row['recall'])} "
            f"{_fmt(row['f1'])} {_fmt(row['average_precision'])} {row['threshold']:5.2f}"
        )
    print(
        f"  macro-F1 {_fmt(metrics['macro_f1'])}  micro-F1 {_fmt(metrics['micro_f1'])}  "
        f"mAP {_fmt(metrics['map'])}  hamming {_fmt(metrics['hamming_loss'])}"
    )


def print_candidates(body: dict) -> None:
    print("\nimbalance: auto tried these strategies (validation split):")
    print(f"  {'strategy':<28}{'macro-F1':>9}{'micro-F1':>9}{'seconds':>9}")
    for candidate in body["candidates"]:
        mark = "  <- chosen" if candidate["chosen"] else ""
        print(
            f"  {candidate['strategy']:<28}{_fmt(candidate['macro_f1']):>9}"
            f"{_fmt(candidate['micro_f1']):>9}{candidate['seconds'] or 0:>9.1f}{mark}"
        )


def run_demo(args) -> int:
    owned_tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir).resolve()
    else:
        owned_tmp = tempfile.TemporaryDirectory(prefix="labelwise-demo-")
        data_dir = Path(owned_tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)

    if args.csv:
        if not args.labels:
            print("--csv needs --labels naming its 0/1 label columns", file=sys.stderr)
            return 2
        train_path, labels = args.csv, [s.strip() for s in args.labels.split(",")]
        test_path = args.test_csv
    else:
        frame = make_dataset()
        train_path, test_path = data_dir / "demo-train.csv", data_dir / "demo-test.csv"
        frame.iloc[:5000].to_csv(train_path, index=False)
        frame.iloc[5000:].to_csv(test_path, index=False)
        labels = list(DEMO_RATES)

    port = args.port or free_port()
    process = _start_service(data_dir, port)
    client = Client(f"http://127.0.0.1:{port}")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, timeout=60)
        print(
            f"labelwise is up at http://127.0.0.1:{port} (docs at /docs), "
            f"data in {data_dir}"
        )
        return _walkthrough(client, train_path, test_path, labels, args.epochs)
    except ApiError as exc:
        print(f"request refused: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
        process.stop()
        if owned_tmp:
            owned_tmp.cleanup()


def _walkthrough(
    client: Client,
    train_path: Path,
    test_path: Path | None,
    labels: list[str],
    epochs: int,
) -> int:
    dataset = client.upload_dataset(train_path, labels, name=Path(train_path).stem)
    rates = ", ".join(
        f"{name} {count / dataset['rows']:.0%}"
        for name, count in dataset["positives"].items()
    )
    print(
        f"uploaded {dataset['id']}: {dataset['rows']} rows, "
        f"{len(dataset['features'])} features; positive rates: {rates}"
    )
    test = client.upload_dataset(test_path, labels, name="test") if test_path else None

    job = client.create_job(
        dataset["id"], {"train": {"epochs": epochs}}, test["id"] if test else None
    )
    print(f"job {job['id']} queued")
    last_epoch = 0

    def show(job: dict) -> None:
        nonlocal last_epoch
        progress = job["progress"]
        if job["status"] == "running" and progress["epoch"] != last_epoch:
            last_epoch = progress["epoch"]
            loss = progress["loss"]
            print(
                f"  epoch {progress['epoch']}/{progress['epochs']} "
                f"loss {'-' if loss is None else f'{loss:.4f}'}"
            )

    job = client.wait(job["id"], on_poll=show)
    if job["status"] != "succeeded":
        print(f"job {job['status']}: {job['error']}", file=sys.stderr)
        return 1
    print(f"job succeeded; model {job['model_id']}")
    if job["parent_id"] is None and job["config"]["imbalance"] == "auto":
        print_candidates(client.candidates(job["id"]))
    print_metrics(client.metrics(job["id"], "validation"))
    if test:
        print_metrics(client.metrics(job["id"], "test"))

    sample = pd.read_csv(test_path or train_path, nrows=5)
    rows = sample.drop(columns=labels, errors="ignore").to_dict(orient="records")
    prediction = client.predict_rows(job["model_id"], rows)
    print("\nPredictions for 5 rows (label: probability, * = predicted):")
    for probs, flags in zip(
        prediction["probabilities"], prediction["predictions"], strict=True
    ):
        print(
            "  "
            + "  ".join(
                f"{name}:{p:.2f}{'*' if f else ' '}"
                for name, p, f in zip(prediction["labels"], probs, flags, strict=True)
            )
        )
    return 0
