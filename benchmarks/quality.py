"""Quality benchmark: each imbalance strategy and `auto` on the six MULAN datasets.

    python -m benchmarks.quality [--datasets yeast,scene] [--seeds 0,1,2]

Trains on each dataset's train split with the engine (the code a worker runs), then
scores the test split: macro-F1, micro-F1, mAP, and the recall of the three labels with
the fewest training positives. Writes the table to docs/quality.md. A benchmark, not a
timed test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DOCS, load_split, machine_line
from workers.engine.config import TrainingConfig
from workers.engine.pipeline import (
    LabeledArrays,
    evaluate_on,
    prepare,
    select_winner,
    train_candidate,
)
from workers.engine.strategies import candidates

DATASET_NAMES = ["yeast", "scene", "medical", "genbase", "flags", "cal500"]
BASE = {
    "model": {"hidden_sizes": [512], "dropout": 0.5},
    "train": {
        "epochs": 100,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "early_stopping": {"patience": 15},
    },
    # Small datasets: 5-fold cross-fitting, so thresholds see every training row.
    "data": {"folds": 5},
}
# The strategies a user can pick by hand, plain BCE first.
STRATEGIES = {
    "bce (fixed 0.5)": {"loss": {"type": "bce"}},
    "bce + max_f1": {"loss": {"type": "bce"}, "thresholds": {"mode": "max_f1"}},
    "weighted_bce neg_pos_ratio": {
        "loss": {"type": "weighted_bce", "pos_weight": {"strategy": "neg_pos_ratio"}}
    },
    "weighted_bce sqrt_neg_pos + max_f1": {
        "loss": {"type": "weighted_bce", "pos_weight": {"strategy": "sqrt_neg_pos"}},
        "thresholds": {"mode": "max_f1"},
    },
    "focal + max_f1": {
        "loss": {"type": "focal", "gamma": 2.0},
        "thresholds": {"mode": "max_f1"},
    },
    "asymmetric + max_f1": {
        "loss": {"type": "asymmetric"},
        "thresholds": {"mode": "max_f1"},
    },
    "bce + ml_ros + max_f1": {
        "sampler": {"type": "ml_ros"},
        "thresholds": {"mode": "max_f1"},
    },
}
# `--quick` keeps the baseline, the naive fix users reach for, and the tuned losses.
QUICK = [
    "bce (fixed 0.5)",
    "weighted_bce neg_pos_ratio",
    "bce + max_f1",
    "focal + max_f1",
    "asymmetric + max_f1",
]
PUBLISHED = {"yeast": 0.411, "scene": 0.787}


def run_config(
    config: TrainingConfig, train: LabeledArrays, test: LabeledArrays, workdir: Path
) -> dict:
    started = time.perf_counter()
    prepared = prepare(config, train)
    outcomes = {}
    for candidate in candidates(config):
        outcomes[candidate.name] = train_candidate(
            candidate, prepared, workdir / candidate.name.replace("+", "_")
        )
    winner = select_winner(outcomes)
    metrics = evaluate_on(outcomes[winner].predictor, test)
    rarest = np.argsort(train.labels.sum(axis=0), kind="stable")[:3]
    recalls = [metrics.labels[i].recall for i in rarest]
    return {
        "macro_f1": metrics.macro_f1,
        "micro_f1": metrics.micro_f1,
        "map": metrics.map,
        "rare_recall": recalls,
        "winner": winner,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default=",".join(DATASET_NAMES))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--quick", action="store_true", help="five strategies + auto")
    parser.add_argument(
        "--from-log", type=Path, help="render the table from a run's printed JSON lines"
    )
    parser.add_argument("--out", type=Path, default=DOCS / "quality.md")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seeds = [int(s) for s in args.seeds.split(",")]

    rows: dict[str, dict[str, list[dict]]] = {}
    if args.from_log:
        for line in args.from_log.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                runs = rows.setdefault(entry["dataset"], {})
                runs.setdefault(entry["strategy"], []).append(entry)
        args.out.write_text(render(rows, seeds, args.quick))
        print(f"wrote {args.out}")
        return
    for name in args.datasets.split(","):
        train = LabeledArrays(*load_split(name, "train"))
        test = LabeledArrays(*load_split(name, "test"))
        rows[name] = {}
        chosen = QUICK if args.quick else list(STRATEGIES)
        settings = {**{k: STRATEGIES[k] for k in chosen}, "auto": "auto"}
        for label, imbalance in settings.items():
            for seed in seeds:
                config = TrainingConfig.model_validate(
                    {
                        **BASE,
                        "train": {**BASE["train"], "seed": seed},
                        "imbalance": imbalance,
                    }
                )
                with tempfile.TemporaryDirectory() as tmp:
                    result = run_config(config, train, test, Path(tmp))
                rows[name].setdefault(label, []).append(result)
                print(
                    json.dumps(
                        {
                            "dataset": name,
                            "strategy": label,
                            "seed": seed,
                            **{k: v for k, v in result.items()},
                        }
                    ),
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, seeds, args.quick))
    print(f"wrote {args.out}")


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _cell(values: list[float | None]) -> str:
    kept = [v for v in values if v is not None]
    if not kept:
        return "n/a"
    if len(kept) == 1:
        return f"{kept[0]:.3f}"
    return f"{np.mean(kept):.3f} ± {np.std(kept):.3f}"


def render(rows: dict, seeds: list[int], quick: bool = False) -> str:
    lines = [
        "# Quality benchmark: imbalance strategies on six MULAN datasets",
        "",
        f"Command: `python -m benchmarks.quality{' --quick' if quick else ''} "
        f"--seeds {','.join(map(str, seeds))}` "
        f"(seeds {','.join(map(str, seeds))}; mean ± std over seeds).",
        "",
        f"Machine: {machine_line()}.",
        "",
        "Each row trains on the dataset's train split with 5-fold cross-fitting "
        "(`data.folds: 5`: five models, each early-stopped on its own stratified fold; "
        "thresholds picked on the out-of-fold predictions; the five averaged at "
        "prediction) and scores the test split. Model: MLP with one hidden layer of "
        "512, dropout 0.5, Adam 1e-3, weight decay 1e-4, batch 64, up to 60 epochs "
        "with patience 10. Macro-F1 averages the labels "
        "whose F1 is defined (a label with no test positives and no predictions is "
        "left out). Rare recall: test recall of the three labels with the fewest "
        "training positives (n/a where a label has no test positives). `auto` is the "
        "default: it trains the candidate strategies and keeps the best by validation "
        "macro-F1.",
        "",
    ]
    missing = [name for name in DATASET_NAMES if name not in rows]
    if missing:
        lines += [f"Not in this run: {', '.join(missing)}.", ""]
    for name, strategies in rows.items():
        published = PUBLISHED.get(name)
        lines += [
            f"## {name}" + (f" (published macro-F1 {published})" if published else ""),
            "",
            "| strategy | macro-F1 | micro-F1 | mAP | rare recall 1 | rare "
            "recall 2 | rare recall 3 | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, runs in strategies.items():
            rare = [[r["rare_recall"][i] for r in runs] for i in range(3)]
            lines.append(
                f"| {label} | {_cell([r['macro_f1'] for r in runs])} | "
                f"{_cell([r['micro_f1'] for r in runs])} | {_cell([r['map'] for r in runs])} | "
                f"{_cell(rare[0])} | {_cell(rare[1])} | {_cell(rare[2])} | "
                f"{_mean([r['seconds'] for r in runs]):.1f} |"
            )
        winners = [r["winner"] for r in strategies.get("auto", [])]
        if winners:
            lines += ["", f"`auto` chose: {', '.join(winners)}."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
