"""Helpers shared by the benchmarks: the machine's facts and the shared datasets."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
DOCS = REPO / "docs"


def machine_line() -> str:
    import pandas
    import pyarrow
    import sklearn
    import torch

    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy "
        f"{np.__version__}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, "
        f"scikit-learn {sklearn.__version__}, Python {platform.python_version()}"
    )


def load_split(name: str, split: str):
    """``(features float32, labels uint8, feature_names, label_names)`` of a MULAN set."""
    from service.datasets.ingest import read_training_table

    meta = json.loads((DATASETS / name / "meta.json").read_text())
    table = read_training_table(DATASETS / name / f"{split}.csv", meta["labels"])
    return table.features, table.labels, table.feature_names, table.label_names


def write_section(name: str, markdown: str, path: Path | None = None) -> Path:
    """Replace (or append) the section ``name`` of docs/benchmarks.md, so each
    benchmark rewrites only its own table."""
    path = path or DOCS / "benchmarks.md"
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = path.read_text() if path.exists() else "# Speed benchmarks\n\n"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
