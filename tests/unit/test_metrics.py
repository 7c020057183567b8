"""workers.engine.metrics against a plain-python reference and against sklearn."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.metrics import hamming_loss as sk_hamming_loss

from workers.engine.metrics import (
    NULL_REASONS,
    SplitMetrics,
    evaluate,
    macro_f1,
    predict_labels,
)

# sklearn warns when it is asked for an undefined metric; the module must never ask.
pytestmark = pytest.mark.filterwarnings("error")


# ---------------------------------------------------------------------------------
# Plain reference: python lists, loops over rows and labels, float64 throughout.
# ---------------------------------------------------------------------------------


def _ref_average_precision(truth: list[int], scores: list[float]) -> float:
    """Sum over distinct scores, highest first, of (recall gain) x precision."""
    positives = sum(truth)
    total, previous_recall = 0.0, 0.0
    for cut in sorted(set(scores), reverse=True):
        kept = [t for t, s in zip(truth, scores, strict=True) if s >= cut]
        recall = sum(kept) / positives
        total += (recall - previous_recall) * (sum(kept) / len(kept))
        previous_recall = recall
    return total


def _ref_roc_auc(truth: list[int], scores: list[float]) -> float:
    """Share of (positive, negative) pairs ranked right; ties count one half."""
    pos = [s for t, s in zip(truth, scores, strict=True) if t]
    neg = [s for t, s in zip(truth, scores, strict=True) if not t]
    wins = 0.0
    for p in pos:
        for q in neg:
            wins += 1.0 if p > q else 0.5 if p == q else 0.0
    return wins / (len(pos) * len(neg))


def _ref_mean(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def reference(y_true, probs, thresholds, names) -> dict:
    """Everything evaluate() reports, shaped like dataclasses.asdict of its result."""
    y = [[int(v) for v in row] for row in np.asarray(y_true).tolist()]
    p = np.asarray(probs, dtype=np.float64).tolist()
    t = np.asarray(thresholds, dtype=np.float64).tolist()
    n, n_labels = len(y), len(y[0])
    pred = [[1 if p[i][j] >= t[j] else 0 for j in range(n_labels)] for i in range(n)]

    labels = []
    for j in range(n_labels):
        tp = fp = fn = tn = 0
        for i in range(n):
            if y[i][j] and pred[i][j]:
                tp += 1
            elif pred[i][j]:
                fp += 1
            elif y[i][j]:
                fn += 1
            else:
                tn += 1
        truth = [y[i][j] for i in range(n)]
        scores = [p[i][j] for i in range(n)]
        support = tp + fn
        labels.append(
            {
                "label": names[j],
                "support": support,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "precision": tp / (tp + fp) if tp + fp else None,
                "recall": tp / support if support else None,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
                "average_precision": (
                    _ref_average_precision(truth, scores) if support else None
                ),
                "roc_auc": _ref_roc_auc(truth, scores) if 0 < support < n else None,
                "threshold": t[j],
            }
        )

    tp = sum(m["tp"] for m in labels)
    fp = sum(m["fp"] for m in labels)
    fn = sum(m["fn"] for m in labels)
    supported = [m for m in labels if m["support"]]
    total_support = sum(m["support"] for m in supported)

    row_f1, errors, exact_rows = [], 0, 0
    for i in range(n):
        overlap = sum(1 for j in range(n_labels) if y[i][j] and pred[i][j])
        sizes = sum(y[i]) + sum(pred[i])
        row_f1.append(2 * overlap / sizes if sizes else 1.0)
        wrong = sum(1 for j in range(n_labels) if y[i][j] != pred[i][j])
        errors += wrong
        exact_rows += wrong == 0

    return {
        "rows": n,
        "labels": labels,
        "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "macro_f1": _ref_mean([m["f1"] for m in labels]),
        "weighted_f1": (
            sum(m["f1"] * m["support"] for m in supported) / total_support
            if total_support
            else None
        ),
        "samples_f1": sum(row_f1) / n,
        "map": _ref_mean([m["average_precision"] for m in labels]),
        "hamming_loss": errors / (n * n_labels),
        "subset_accuracy": exact_rows / n,
    }


def assert_matches(actual, expected, path: str = "metrics") -> None:
    """Same structure; ints and None exactly, floats to 1e-12 (summation order)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert actual.keys() == expected.keys(), path
        for key in expected:
            assert_matches(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for k, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{k}]")
    elif expected is None or isinstance(expected, (str, bool)):
        assert actual == expected, path
    elif isinstance(expected, int) and not isinstance(expected, float):
        assert type(actual) is int and actual == expected, path
    else:
        assert type(actual) is float, path
        assert actual == pytest.approx(expected, rel=1e-12, abs=1e-12), path


def assert_json_ready(value, path: str = "metrics") -> None:
    """Only python int/float/str/None/list/dict, every float finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, path
            assert_json_ready(item, f"{path}.{key}")
    elif isinstance(value, list):
        for k, item in enumerate(value):
            assert_json_ready(item, f"{path}[{k}]")
    elif isinstance(value, float):
        assert type(value) is float and math.isfinite(value), path
    else:
        assert value is None or type(value) in (int, str), (path, type(value))


# ---------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------


def random_split(seed: int = 0, rows: int = 200, n_labels: int = 7):
    """Imbalanced multi-hot targets with informative, tied (2-decimal) probabilities."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.03, 0.6, n_labels)
    y_true = (rng.random((rows, n_labels)) < prevalence).astype(np.int64)
    noise = rng.random((rows, n_labels))
    probs = np.round(np.clip(0.35 * y_true + 0.75 * noise, 0.0, 1.0), 2)
    thresholds = rng.uniform(0.3, 0.7, n_labels)
    names = [f"label_{j}" for j in range(n_labels)]
    return y_true, probs, thresholds, names


# Four rows, three labels: "common" (2 positives), "absent" (none, one false
# positive) and "everywhere" (all positive). Expected values worked out by hand.
EDGE_Y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
EDGE_P = np.array([[0.9, 0.1, 0.8], [0.2, 0.7, 0.3], [0.4, 0.2, 0.9], [0.6, 0.3, 0.6]])
EDGE_T = np.array([0.5, 0.5, 0.5])
EDGE_NAMES = ["common", "absent", "everywhere"]


# ---------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_data_matches_reference(seed):
    y_true, probs, thresholds, names = random_split(seed)

    result = evaluate(y_true, probs, thresholds, names)

    assert_matches(
        dataclasses.asdict(result), reference(y_true, probs, thresholds, names)
    )


def test_random_data_includes_the_cases_it_is_meant_to_exercise():
    # Guards the fixture: without ties, misses and a rare label the comparison above
    # would prove less than it seems to.
    y_true, probs, thresholds, _ = random_split(0)
    pred = probs >= thresholds

    assert y_true.shape == (200, 7)
    assert y_true.sum(axis=0).min() < 15
    assert len(np.unique(probs)) < probs.size // 10
    assert (pred & (y_true == 0)).any() and (~pred & (y_true == 1)).any()


def test_averages_match_sklearn_where_conventions_coincide():
    y_true, probs, thresholds, names = random_split(3)
    # Every label and every row gets a positive, so sklearn never hits zero_division.
    y_true[np.arange(7), np.arange(7)] = 1
    y_true[y_true.sum(axis=1) == 0, 6] = 1
    pred = predict_labels(probs, thresholds)

    result = evaluate(y_true, probs, thresholds, names)

    for average in ("micro", "macro", "weighted", "samples"):
        expected = f1_score(y_true, pred, average=average)
        assert getattr(result, f"{average}_f1") == pytest.approx(expected, rel=1e-12)
    assert result.hamming_loss == pytest.approx(sk_hamming_loss(y_true, pred))
    assert result.subset_accuracy == pytest.approx(accuracy_score(y_true, pred))


def test_samples_f1_matches_sklearn_zero_division_one_with_empty_rows():
    y_true, probs, thresholds, names = random_split(4)
    y_true[:20] = 0
    probs[:10] = 0.0
    pred = predict_labels(probs, thresholds)
    assert ((y_true.sum(axis=1) == 0) & (pred.sum(axis=1) == 0)).any()

    result = evaluate(y_true, probs, thresholds, names)

    expected = f1_score(y_true, pred, average="samples", zero_division=1.0)
    assert result.samples_f1 == pytest.approx(expected, rel=1e-12)


def test_edge_labels_by_hand():
    result = evaluate(EDGE_Y, EDGE_P, EDGE_T, EDGE_NAMES)
    common, absent, everywhere = (dataclasses.asdict(m) for m in result.labels)

    assert common == {
        "label": "common",
        "support": 2,
        "tp": 1,
        "fp": 1,
        "fn": 1,
        "tn": 1,
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "average_precision": pytest.approx(5 / 6),
        "roc_auc": 0.75,
        "threshold": 0.5,
    }
    # No positives but one prediction: that prediction is wrong, so precision and
    # f1 are 0; recall, AP and AUC have nothing to measure.
    assert absent == {
        "label": "absent",
        "support": 0,
        "tp": 0,
        "fp": 1,
        "fn": 0,
        "tn": 3,
        "precision": 0.0,
        "recall": None,
        "f1": 0.0,
        "average_precision": None,
        "roc_auc": None,
        "threshold": 0.5,
    }
    # All positive: AP is 1 (precision never drops) but AUC has no negatives.
    assert everywhere == {
        "label": "everywhere",
        "support": 4,
        "tp": 3,
        "fp": 0,
        "fn": 1,
        "tn": 0,
        "precision": 1.0,
        "recall": 0.75,
        "f1": pytest.approx(6 / 7),
        "average_precision": 1.0,
        "roc_auc": None,
        "threshold": 0.5,
    }

    assert result.rows == 4
    assert result.micro_f1 == pytest.approx(2 / 3)
    assert result.macro_f1 == pytest.approx((0.5 + 0.0 + 6 / 7) / 3)
    assert result.weighted_f1 == pytest.approx(31 / 42)
    assert result.samples_f1 == pytest.approx(7 / 12)
    assert result.map == pytest.approx(11 / 12)
    assert result.hamming_loss == pytest.approx(1 / 3)
    assert result.subset_accuracy == 0.25


def test_label_with_no_positives_and_no_predictions_is_left_out_of_macro():
    probs = EDGE_P.copy()
    probs[:, 1] = 0.1

    result = evaluate(EDGE_Y, probs, EDGE_T, EDGE_NAMES)
    absent = result.labels[1]

    assert (absent.tp, absent.fp, absent.fn, absent.tn) == (0, 0, 0, 4)
    assert absent.precision is None
    assert absent.recall is None
    assert absent.f1 is None
    assert absent.average_precision is None
    assert absent.roc_auc is None
    # Mean of the two defined f1 values, not of three with a 0 or 1 filled in.
    assert result.macro_f1 == pytest.approx((0.5 + 6 / 7) / 2)
    assert macro_f1(EDGE_Y, probs, EDGE_T) == result.macro_f1
    assert result.map == pytest.approx(11 / 12)


def test_nothing_true_and_nothing_predicted():
    y_true = np.zeros((3, 2))
    probs = np.full((3, 2), 0.2)

    result = evaluate(y_true, probs, np.array([0.5, 0.5]), ["a", "b"])

    assert result.micro_f1 is None
    assert result.macro_f1 is None
    assert result.weighted_f1 is None
    assert result.map is None
    assert result.samples_f1 == 1.0
    assert result.hamming_loss == 0.0
    assert result.subset_accuracy == 1.0
    assert macro_f1(y_true, probs, np.array([0.5, 0.5])) is None

    label_reasons = {
        field: NULL_REASONS[field]
        for field in ("precision", "recall", "f1", "average_precision", "roc_auc")
    }
    assert result.null_reasons() == {
        "micro_f1": NULL_REASONS["micro_f1"],
        "macro_f1": NULL_REASONS["macro_f1"],
        "weighted_f1": NULL_REASONS["weighted_f1"],
        "map": NULL_REASONS["map"],
        "labels": {"a": label_reasons, "b": label_reasons},
    }


def test_null_reasons_lists_only_fields_that_are_none():
    result = evaluate(EDGE_Y, EDGE_P, EDGE_T, EDGE_NAMES)

    assert result.null_reasons() == {
        "labels": {
            "absent": {
                "recall": NULL_REASONS["recall"],
                "average_precision": NULL_REASONS["average_precision"],
                "roc_auc": NULL_REASONS["roc_auc"],
            },
            "everywhere": {"roc_auc": NULL_REASONS["roc_auc"]},
        }
    }
    json.dumps(result.null_reasons(), allow_nan=False)


def test_threshold_equal_to_the_probability_predicts_positive():
    # float32 probabilities, as a sigmoid on the GPU would produce them.
    probs = np.array([[0.3, 0.7], [0.6, 0.2]], dtype=np.float32)
    at = probs[0].copy()
    above = np.nextafter(at, np.float32(1.0))

    assert predict_labels(probs, at).tolist() == [[1, 1], [1, 0]]
    assert predict_labels(probs, above).tolist() == [[0, 0], [1, 0]]
    assert predict_labels(probs, at).dtype == np.uint8

    result = evaluate(np.array([[1, 1], [0, 0]]), probs, at, ["x", "y"])
    assert [(m.tp, m.fp) for m in result.labels] == [(1, 1), (1, 0)]
    assert result.labels[0].threshold == float(np.float32(0.3))


def test_perfect_predictions():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    probs = np.where(y_true == 1, 0.9, 0.1)

    result = evaluate(y_true, probs, np.full(3, 0.5), ["a", "b", "c"])

    for m in result.labels:
        assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
        assert (m.average_precision, m.roc_auc) == (1.0, 1.0)
        assert m.fp == 0 and m.fn == 0
    assert result.micro_f1 == result.macro_f1 == result.weighted_f1 == 1.0
    assert result.samples_f1 == result.map == result.subset_accuracy == 1.0
    assert result.hamming_loss == 0.0


@pytest.mark.parametrize("seed", [0, 5])
def test_macro_f1_function_equals_evaluate(seed):
    y_true, probs, thresholds, names = random_split(seed)
    # A label with no positives and nothing predicted: its f1 is None either way.
    y_true[:, 0] = 0
    probs[:, 0] = 0.0

    result = evaluate(y_true, probs, thresholds, names)

    assert result.labels[0].f1 is None
    assert macro_f1(y_true, probs, thresholds) == result.macro_f1


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int32, np.float32])
def test_any_zero_one_dtype_gives_the_same_result(dtype):
    y_true, probs, thresholds, names = random_split(6, rows=40, n_labels=3)

    result = evaluate(y_true.astype(dtype), probs, thresholds, names)

    assert result == evaluate(y_true, probs, thresholds, names)


@pytest.mark.parametrize(
    "y_true,probs",
    [
        (EDGE_Y, EDGE_P),
        (np.zeros((3, 2)), np.full((3, 2), 0.2)),
        (np.ones((3, 2)), np.full((3, 2), 0.9)),
        random_split(7)[:2],
    ],
    ids=["edge", "all_zero", "all_one", "random"],
)
def test_results_are_json_ready_without_nan(y_true, probs):
    n_labels = y_true.shape[1]
    names = [f"l{j}" for j in range(n_labels)]

    result = evaluate(y_true, probs, np.full(n_labels, 0.5), names)
    as_dict = dataclasses.asdict(result)

    json.dumps(as_dict, allow_nan=False)
    assert_json_ready(as_dict)


def _call_evaluate(y_true, probs, thresholds, names=None):
    names = (
        [f"l{j}" for j in range(np.shape(thresholds)[0])] if names is None else names
    )
    return evaluate(y_true, probs, thresholds, names)


@pytest.mark.parametrize(
    "args,message",
    [
        (
            (np.zeros((4, 2)), np.zeros((4, 3)), np.zeros(3)),
            "y_true shape (4, 2) does not match probs shape (4, 3)",
        ),
        (
            (np.zeros(3), np.zeros(3), np.zeros(3)),
            "probs must be 2-D [rows, labels]; got shape (3,)",
        ),
        (
            (np.zeros((4, 3)), np.zeros((4, 3)), np.zeros(2)),
            "thresholds shape (2,) does not match the 3 labels of probs; expected (3,)",
        ),
        (
            (np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((1, 3))),
            "thresholds shape (1, 3) does not match the 3 labels of probs; "
            "expected (3,)",
        ),
        (
            (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(3)),
            "probs has 0 rows; metrics need at least one row",
        ),
        (
            (np.zeros((4, 0)), np.zeros((4, 0)), np.zeros(0)),
            "probs has 0 labels; metrics need at least one label",
        ),
        (
            (np.array([[0, 1, 0], [1, 0, 2]]), np.zeros((2, 3)), np.zeros(3)),
            "y_true must hold only 0 and 1; found 2 at row 1, label 2",
        ),
        (
            (np.array([[0.0, np.nan]]), np.zeros((1, 2)), np.zeros(2)),
            "y_true must hold only 0 and 1; found nan at row 0, label 1",
        ),
        (
            (np.zeros((2, 2)), np.array([[0.2, 1.5], [0.1, 0.1]]), np.zeros(2)),
            "probs must be within [0, 1]; found 1.5 at row 0, label 1",
        ),
        (
            (np.zeros((2, 2)), np.array([[0.2, 0.5], [np.nan, 0.1]]), np.zeros(2)),
            "probs must be within [0, 1]; found nan at row 1, label 0",
        ),
        (
            (np.zeros((2, 2)), np.array([[0.2, 0.5], [0.3, -0.1]]), np.zeros(2)),
            "probs must be within [0, 1]; found -0.1 at row 1, label 1",
        ),
        (
            (np.zeros((1, 2)), np.zeros((1, 2)), np.array([0.5, np.inf])),
            "thresholds must be finite; found inf for label 1",
        ),
        (
            (np.zeros((1, 2)), np.array([["a", "b"]]), np.zeros(2)),
            "probs must be a numeric array; got dtype <U1",
        ),
    ],
)
def test_invalid_arrays_raise_naming_the_mismatch(args, message):
    with pytest.raises(ValueError) as raised:
        _call_evaluate(*args)
    assert str(raised.value) == message

    # macro_f1 shares the checks, so a bad epoch input fails the same way.
    with pytest.raises(ValueError) as raised:
        macro_f1(*args)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "names,message",
    [
        (["a", "b"], "label_names has 2 names for the 3 labels of probs"),
        (["a", "b", "a"], "label_names must be unique; 'a' appears twice"),
        (["a", 2, "c"], "label_names[1] must be a str; got int"),
    ],
)
def test_invalid_label_names_raise(names, message):
    with pytest.raises(ValueError) as raised:
        evaluate(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3), names)
    assert str(raised.value) == message


def test_predict_labels_checks_shapes_and_allows_an_empty_batch():
    with pytest.raises(ValueError) as raised:
        predict_labels(np.zeros((2, 3)), np.zeros(4))
    assert str(raised.value) == (
        "thresholds shape (4,) does not match the 3 labels of probs; expected (3,)"
    )

    empty = predict_labels(np.zeros((0, 3)), np.full(3, 0.5))
    assert empty.shape == (0, 3) and empty.dtype == np.uint8


def test_split_metrics_is_frozen():
    result = evaluate(EDGE_Y, EDGE_P, EDGE_T, EDGE_NAMES)

    with pytest.raises(dataclasses.FrozenInstanceError):
        result.macro_f1 = 1.0  # type: ignore[misc]
    assert isinstance(result, SplitMetrics)


def test_module_does_not_import_torch():
    # The API process imports metric types; it must not pay for loading torch.
    code = (
        "import sys, workers.engine.metrics; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    repo_root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=repo_root, check=True, timeout=60)
