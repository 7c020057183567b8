"""service.datasets.profile: every statistic against a plain-Python loop over the rows
(float64, ``math``), a small table worked out by hand, each warning on both sides of
its threshold with its exact message, and the yeast training set against its
published label counts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.datasets import profile as profile_module
from service.datasets.profile import compute_profile

# An overflow or invalid-value warning would mean a NaN or inf was computed somewhere.
pytestmark = pytest.mark.filterwarnings("error")

YEAST = Path(__file__).resolve().parents[2].parent / "shared/datasets/yeast"


def profiled(features: Any, labels: Any, **names: list[str]) -> dict[str, Any]:
    """compute_profile on lists or arrays, with default names, checked JSON-safe."""
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.uint8)
    feature_names = names.get("feature_names", [f"f{j}" for j in range(x.shape[1])])
    label_names = names.get("label_names", [f"y{j}" for j in range(y.shape[1])])
    result = compute_profile(x, y, feature_names, label_names)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    return result


def codes(result: dict[str, Any], code: str) -> list[str]:
    return [w["message"] for w in result["warnings"] if w["code"] == code]


# ---------------------------------------------------------------------------------
# Reference: literal loops over rows
# ---------------------------------------------------------------------------------


def reference(features: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    x, y = features.astype(np.float64).tolist(), labels.tolist()
    rows, n_labels = len(y), len(y[0])

    positives = [sum(row[j] for row in y) for j in range(n_labels)]
    top = max(positives)
    irlbl = [top / p if p else None for p in positives]
    present = [ir for ir in irlbl if ir is not None]

    scumble_rows = []
    for row in y:
        irs = [irlbl[j] for j in range(n_labels) if row[j]]
        if len(irs) < 2:
            scumble_rows.append(0.0)
            continue
        geometric = math.prod(irs) ** (1 / len(irs))
        scumble_rows.append(1 - geometric / (sum(irs) / len(irs)))
    scumble_lbl = []
    for j in range(n_labels):
        with_label = [s for s, row in zip(scumble_rows, y, strict=True) if row[j]]
        scumble_lbl.append(sum(with_label) / len(with_label) if with_label else None)

    cooccurrence = [[0] * n_labels for _ in range(n_labels)]
    for row in y:
        for a in range(n_labels):
            for b in range(n_labels):
                cooccurrence[a][b] += row[a] * row[b]

    stds = []
    for j in range(len(x[0])):
        column = [row[j] for row in x]
        mean = sum(column) / rows
        stds.append(math.sqrt(sum((v - mean) ** 2 for v in column) / rows))

    return {
        "positives": positives,
        "irlbl": irlbl,
        "mean_ir": sum(present) / len(present) if present else None,
        "max_ir": max(present) if present else None,
        "cardinality": sum(sum(row) for row in y) / rows,
        "density": sum(sum(row) for row in y) / rows / n_labels,
        "distinct_labelsets": len({tuple(row) for row in y}),
        "rows_without_labels": sum(1 for row in y if not any(row)),
        "cooccurrence": cooccurrence,
        "scumble": sum(scumble_rows) / rows,
        "scumble_lbl": scumble_lbl,
        "std": stds,
        "min": [min(row[j] for row in x) for j in range(len(x[0]))],
        "max": [max(row[j] for row in x) for j in range(len(x[0]))],
    }


def random_table(
    seed: int, rows: int, n_features: int, n_labels: int, patterns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn from a few label patterns (so label sets repeat), label rates from
    rare to common, and features on very different scales and offsets."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.02, 0.7, n_labels)
    pool = (rng.random((patterns, n_labels)) < rates).astype(np.uint8)
    labels = pool[rng.integers(0, patterns, rows)]
    scales = 10.0 ** rng.uniform(-3, 4, n_features)
    offsets = rng.uniform(-1e4, 1e4, n_features)
    features = (rng.standard_normal((rows, n_features)) * scales + offsets).astype(
        np.float32
    )
    return features, labels


@pytest.mark.parametrize(
    ("seed", "rows", "n_features", "n_labels", "patterns", "chunk_values"),
    [
        (0, 300, 7, 6, 25, 1 << 20),  # one chunk, label sets fit one uint64
        (1, 301, 7, 6, 25, 40),  # many chunks, the last one ragged
        (2, 80, 3, 70, 30, 1 << 20),  # more than 64 labels: void-record path
        (3, 81, 3, 70, 30, 150),  # ... in chunks of two rows, the last ragged
    ],
)
def test_matches_row_by_row_reference(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    rows: int,
    n_features: int,
    n_labels: int,
    patterns: int,
    chunk_values: int,
) -> None:
    monkeypatch.setattr(profile_module, "_CHUNK_VALUES", chunk_values)
    features, labels = random_table(seed, rows, n_features, n_labels, patterns)
    got = profiled(features, labels)
    want = reference(features, labels)

    assert (got["rows"], got["n_features"], got["n_labels"]) == (
        rows,
        n_features,
        n_labels,
    )
    assert [e["positives"] for e in got["labels"]] == want["positives"]
    assert [e["rate"] for e in got["labels"]] == pytest.approx(
        [p / rows for p in want["positives"]], rel=1e-15
    )
    assert [e["irlbl"] for e in got["labels"]] == pytest.approx(
        want["irlbl"], rel=1e-12
    )
    assert got["mean_ir"] == pytest.approx(want["mean_ir"], rel=1e-12)
    assert got["max_ir"] == pytest.approx(want["max_ir"], rel=1e-12)
    assert got["cardinality"] == pytest.approx(want["cardinality"], rel=1e-15)
    assert got["density"] == pytest.approx(want["density"], rel=1e-15)
    assert got["distinct_labelsets"] == want["distinct_labelsets"]
    assert got["rows_without_labels"] == want["rows_without_labels"]
    assert got["cooccurrence"]["counts"] == want["cooccurrence"]
    assert got["cooccurrence"]["labels"] == [f"y{j}" for j in range(n_labels)]

    assert got["scumble"] > 0.01  # the data must exercise it, not sit at 0
    assert got["scumble"] == pytest.approx(want["scumble"], rel=1e-10, abs=1e-14)
    assert [e["scumble"] for e in got["labels"]] == pytest.approx(
        want["scumble_lbl"], rel=1e-10, abs=1e-14
    )

    stds = want["std"]
    order = sorted(range(n_features), key=lambda j: (-stds[j], j))
    widest = got["feature_scales"]["widest"]
    assert [e["name"] for e in widest] == [f"f{j}" for j in order[:5]]
    for entry, j in zip(widest, order, strict=False):
        assert entry["std"] == pytest.approx(stds[j], rel=1e-9)
        assert (entry["min"], entry["max"]) == (want["min"][j], want["max"][j])
        assert entry["abs_max"] == max(abs(want["min"][j]), abs(want["max"][j]))
    narrowest = got["feature_scales"]["narrowest"]
    assert [e["name"] for e in narrowest] == [f"f{j}" for j in order[::-1][:5]]
    assert got["feature_scales"]["scale_ratio"] == pytest.approx(
        max(stds) / min(stds), rel=1e-9
    )


def test_bool_labels_give_the_same_profile() -> None:
    features, labels = random_table(4, 120, 4, 9, 15)
    names = ([f"f{j}" for j in range(4)], [f"y{j}" for j in range(9)])
    assert compute_profile(features, labels.astype(bool), *names) == compute_profile(
        features, labels, *names
    )


# ---------------------------------------------------------------------------------
# A table worked out by hand
# ---------------------------------------------------------------------------------


def test_hand_worked_table() -> None:
    # positives 3, 1, 1 -> IRLbl 1, 3, 3. Rows 1 and 3 hold labels with IRLbl 1 and
    # 3: SCUMBLE_ins = 1 - sqrt(1 * 3) / 2; rows 2 (one label) and 4 (none) score 0.
    labels = [[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 0]]
    features = [[0, 10], [2, 10], [4, 10], [6, 10]]  # std sqrt(5), then constant
    pair = 1 - math.sqrt(3) / 2

    got = profiled(features, labels, feature_names=["a", "b"], label_names=list("pqr"))

    assert got == {
        "rows": 4,
        "n_features": 2,
        "n_labels": 3,
        "labels": [
            {
                "label": "p",
                "positives": 3,
                "rate": 0.75,
                "irlbl": 1.0,
                "scumble": pytest.approx(2 * pair / 3, rel=1e-14),
            },
            {
                "label": "q",
                "positives": 1,
                "rate": 0.25,
                "irlbl": 3.0,
                "scumble": pytest.approx(pair, rel=1e-14),
            },
            {
                "label": "r",
                "positives": 1,
                "rate": 0.25,
                "irlbl": 3.0,
                "scumble": pytest.approx(pair, rel=1e-14),
            },
        ],
        "mean_ir": pytest.approx(7 / 3, rel=1e-15),
        "max_ir": 3.0,
        "cardinality": 1.25,
        "density": pytest.approx(1.25 / 3, rel=1e-15),
        "distinct_labelsets": 4,
        "rows_without_labels": 1,
        "cooccurrence": {
            "labels": ["p", "q", "r"],
            "counts": [[3, 1, 1], [1, 1, 0], [1, 0, 1]],
        },
        "scumble": pytest.approx(pair / 2, rel=1e-14),
        "feature_scales": {
            "scale_ratio": 1.0,
            "widest": [
                {
                    "name": "a",
                    "min": 0.0,
                    "max": 6.0,
                    "std": pytest.approx(math.sqrt(5), rel=1e-15),
                    "abs_max": 6.0,
                },
                {"name": "b", "min": 10.0, "max": 10.0, "std": 0.0, "abs_max": 10.0},
            ],
            "narrowest": [
                {
                    "name": "a",
                    "min": 0.0,
                    "max": 6.0,
                    "std": pytest.approx(math.sqrt(5), rel=1e-15),
                    "abs_max": 6.0,
                },
            ],
            "n_constant": 1,
        },
        "warnings": [
            {
                "code": "label.few_positives",
                "message": "Label 'p' has only 3 positive rows (fewer than 10), so its "
                "metrics and threshold will be unreliable.",
            },
            {
                "code": "label.few_positives",
                "message": "Label 'q' has only 1 positive rows (fewer than 10), so its "
                "metrics and threshold will be unreliable.",
            },
            {
                "code": "label.few_positives",
                "message": "Label 'r' has only 1 positive rows (fewer than 10), so its "
                "metrics and threshold will be unreliable.",
            },
            {
                "code": "features.constant",
                "message": "Feature 'b' has the same value (10) in every row, so it "
                "carries no information.",
            },
        ],
    }


# ---------------------------------------------------------------------------------
# Labels without positives
# ---------------------------------------------------------------------------------


def test_label_without_positives_has_no_ratio() -> None:
    labels = [[1, 0, 1]] * 12 + [[1, 0, 0]] * 12
    got = profiled([[float(i)] for i in range(24)], labels)

    empty = got["labels"][1]
    assert empty == {
        "label": "y1",
        "positives": 0,
        "rate": 0.0,
        "irlbl": None,
        "scumble": None,
    }
    assert [e["irlbl"] for e in got["labels"]] == [1.0, None, 2.0]
    assert (got["mean_ir"], got["max_ir"]) == (1.5, 2.0)
    assert got["cooccurrence"]["counts"] == [[24, 0, 12], [0, 0, 0], [12, 0, 12]]
    assert got["distinct_labelsets"] == 2
    assert got["scumble"] == pytest.approx(0.5 * (1 - math.sqrt(2) / 1.5), rel=1e-14)


def test_no_label_has_positives() -> None:
    got = profiled([[1.0], [2.0], [3.0]], [[0, 0], [0, 0], [0, 0]])

    assert [e["irlbl"] for e in got["labels"]] == [None, None]
    assert (got["mean_ir"], got["max_ir"]) == (None, None)
    assert (got["cardinality"], got["density"], got["scumble"]) == (0.0, 0.0, 0.0)
    assert (got["distinct_labelsets"], got["rows_without_labels"]) == (1, 3)
    assert [w["code"] for w in got["warnings"]] == [
        "label.constant",
        "label.constant",
        "dataset.rows_without_labels",
    ]


# ---------------------------------------------------------------------------------
# Warnings, each on both sides of its threshold
# ---------------------------------------------------------------------------------


def label_column(rows: int, positives: int) -> list[list[int]]:
    return [[1] if i < positives else [0] for i in range(rows)]


def spread_features(rows: int) -> list[list[float]]:
    return [[float(i)] for i in range(rows)]


def test_few_positives_below_ten_only() -> None:
    few = profiled(spread_features(100), label_column(100, 9), label_names=["rare"])
    enough = profiled(spread_features(100), label_column(100, 10))

    assert codes(few, "label.few_positives") == [
        "Label 'rare' has only 9 positive rows (fewer than 10), so its metrics and "
        "threshold will be unreliable."
    ]
    assert codes(enough, "label.few_positives") == []


def test_constant_labels_are_reported_once_each() -> None:
    labels = [[0, 1, 1] if i % 2 else [0, 1, 0] for i in range(40)]
    got = profiled(spread_features(40), labels, label_names=["never", "always", "half"])

    assert got["warnings"] == [
        {
            "code": "label.constant",
            "message": "Label 'never' is 0 in all 40 rows, so there is nothing to "
            "learn for it.",
        },
        {
            "code": "label.constant",
            "message": "Label 'always' is 1 in all 40 rows, so there is nothing to "
            "learn for it.",
        },
    ]


def test_constant_label_with_few_rows_is_not_also_few_positives() -> None:
    got = profiled(spread_features(5), label_column(5, 5))
    assert [w["code"] for w in got["warnings"]] == ["label.constant"]


def imbalance_labels(common: int, rare: int, rows: int = 200) -> list[list[int]]:
    return [[int(i < common), int(i < rare)] for i in range(rows)]


def test_high_imbalance_above_fifty_only() -> None:
    high = profiled(
        spread_features(200),
        imbalance_labels(102, 2),
        label_names=["common", "rare"],
    )
    at_limit = profiled(spread_features(200), imbalance_labels(100, 2))

    assert high["max_ir"] == 51.0
    assert codes(high, "labels.high_imbalance") == [
        "Label 'rare' has an imbalance ratio of 51 (2 positives against 102 for "
        "'common'); keep imbalance on \"auto\" or choose a loss or sampler for "
        "imbalance."
    ]
    assert at_limit["max_ir"] == 50.0
    assert codes(at_limit, "labels.high_imbalance") == []


def test_rows_without_labels_above_half_only() -> None:
    most = profiled(spread_features(100), label_column(100, 49))
    half = profiled(spread_features(100), label_column(100, 50))

    assert codes(most, "dataset.rows_without_labels") == [
        "51 of 100 rows (51.0%) have no positive label."
    ]
    assert half["rows_without_labels"] == 50
    assert codes(half, "dataset.rows_without_labels") == []


def plus_minus(rows: int, *amplitudes: float) -> list[list[float]]:
    """Columns alternating +a and -a: mean 0 and population std exactly a."""
    return [[a if i % 2 else -a for a in amplitudes] for i in range(rows)]


def test_scale_mismatch_from_a_thousand_times() -> None:
    names = {"feature_names": ["narrow", "wide", "middle"]}
    labels = label_column(20, 10)
    mismatch = profiled(plus_minus(20, 0.5, 500.0, 3.0), labels, **names)
    close = profiled(plus_minus(20, 0.5, 499.5, 3.0), labels, **names)

    assert mismatch["feature_scales"]["scale_ratio"] == 1000.0
    assert mismatch["warnings"] == [
        {
            "code": "features.scale_mismatch",
            "message": "Feature standard deviations differ by 1000x, from 'wide' "
            "(std 500) to 'narrow' (std 0.5); keep data.standardize on so the widest "
            "features do not dominate.",
        }
    ]
    assert [e["name"] for e in mismatch["feature_scales"]["widest"]] == [
        "wide",
        "middle",
        "narrow",
    ]
    assert close["feature_scales"]["scale_ratio"] == 999.0
    assert close["warnings"] == []


def test_constant_feature_is_not_a_scale() -> None:
    # A constant column has std 0: it is named as constant and kept out of the ratio,
    # which would otherwise be infinite; a tiny but nonzero spread is not constant.
    features = [[7.25, 1.0 + (i % 2) * 1e-6, float(i)] for i in range(20)]
    got = profiled(
        features, label_column(20, 10), feature_names=["flat", "tiny", "index"]
    )

    assert codes(got, "features.constant") == [
        "Feature 'flat' has the same value (7.25) in every row, so it carries no "
        "information."
    ]
    assert got["feature_scales"]["n_constant"] == 1
    assert [e["name"] for e in got["feature_scales"]["narrowest"]] == ["tiny", "index"]
    assert len(codes(got, "features.scale_mismatch")) == 1  # tiny against index


def test_all_features_constant_has_no_ratio() -> None:
    got = profiled([[1.0, 2.0]] * 20, label_column(20, 10))
    assert got["feature_scales"]["scale_ratio"] is None
    assert got["feature_scales"]["narrowest"] == []
    assert [w["code"] for w in got["warnings"]] == [
        "features.constant",
        "features.constant",
    ]


# ---------------------------------------------------------------------------------
# Contract violations are programming errors
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.zeros((3, 1)), np.zeros((2, 1)), "features have 3 rows but labels have 2"),
        (np.zeros((0, 1)), np.zeros((0, 1)), "need at least one row and one label"),
        (np.zeros((2, 1)), np.full((2, 1), 2), "labels must hold only 0 and 1"),
        (np.array([[np.nan], [1.0]]), np.ones((2, 1)), "features must be finite"),
        (np.array([[np.inf], [1.0]]), np.ones((2, 1)), "features must be finite"),
    ],
)
def test_broken_contract_raises_value_error(
    features: np.ndarray, labels: np.ndarray, message: str
) -> None:
    names = ([f"f{j}" for j in range(features.shape[1])], [f"y{j}" for j in range(1)])
    with pytest.raises(ValueError, match=message):
        compute_profile(features.astype(np.float32), labels.astype(np.uint8), *names)


# ---------------------------------------------------------------------------------
# A real dataset
# ---------------------------------------------------------------------------------


def test_yeast_matches_published_counts() -> None:
    meta = json.loads((YEAST / "meta.json").read_text())
    table = pd.read_csv(YEAST / "train.csv")
    label_names = meta["labels"]
    feature_names = [c for c in table.columns if c not in label_names]
    features = table[feature_names].to_numpy(dtype=np.float32)
    labels = table[label_names].to_numpy(dtype=np.uint8)

    got = compute_profile(features, labels, feature_names, label_names)

    json.dumps(got, allow_nan=False)
    assert got["rows"] == meta["n_train"] == 1500
    assert got["n_features"] == meta["n_features"]
    assert [e["positives"] for e in got["labels"]] == meta["label_counts_train"]
    assert got["cardinality"] == pytest.approx(
        meta["label_cardinality_train"], abs=1e-3
    )
    assert got["distinct_labelsets"] == len({tuple(row) for row in labels.tolist()})
    # Class14 is the rarest label (21 positives) and Class12 the most frequent (1128).
    assert got["max_ir"] == pytest.approx(1128 / 21, rel=1e-15)
    assert codes(got, "labels.high_imbalance") == [
        "Label 'Class14' has an imbalance ratio of 53.71 (21 positives against 1128 "
        "for 'Class12'); keep imbalance on \"auto\" or choose a loss or sampler for "
        "imbalance."
    ]
