"""Per-label and whole-split metrics for multi-label predictions.

Inputs are `y_true [rows, labels]` multi-hot (0/1 of any int, float or bool dtype),
`probs [rows, labels]` probabilities in [0, 1] and `thresholds [labels]`. A label is
predicted when `prob >= threshold`, so a threshold equal to a probability predicts it.

Conventions:

* Undefined values are ``None``, never NaN or a silent 0. On imbalanced data a label
  with no positive rows in a validation split is common, and a recall of 0 for it would
  read as "the model misses it" when in fact there was nothing to find. ``NULL_REASONS``
  says why each field can be ``None``; ``SplitMetrics.null_reasons()`` lists the ones
  that are.
* Per-label F1 is ``2tp / (2tp + fp + fn)``. It is ``None`` only when the label was
  neither true nor predicted in any row. A label with no positives that was predicted
  somewhere scores 0.0: those predictions are all false positives.
* ``macro_f1`` is the mean of the defined per-label F1 values (labels with a ``None``
  F1 are left out, not counted as 0 or 1). ``map`` is the mean of the defined per-label
  average precisions, so it covers only labels with positives.
* ``weighted_f1`` weights each label's F1 by its support; labels with no positives
  weigh nothing.
* ``samples_f1`` is the mean over rows of ``2|y ∩ ŷ| / (|y| + |ŷ|)``; a row with no true
  and no predicted label is a correct prediction and counts 1.0 (sklearn's
  ``f1_score(average="samples", zero_division=1.0)``).
* Every float returned is a python ``float`` and every count a python ``int``, so
  ``dataclasses.asdict`` of a result is JSON-ready.

Shape and value errors raise ``ValueError``: the engine builds these arrays itself, so
a mismatch is a bug to surface, not user input to turn into a 4xx. Zero rows is such an
error too, because hamming loss and subset accuracy have no value on an empty split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

NULL_REASONS: dict[str, str] = {
    "precision": "no row was predicted positive (tp + fp = 0)",
    "recall": "the label has no positive rows in y_true (support = 0)",
    "f1": "the label was neither true nor predicted in any row (tp + fp + fn = 0)",
    "average_precision": "the label has no positive rows in y_true (support = 0)",
    "roc_auc": "the label is all 0 or all 1 in y_true, so there is nothing to rank",
    "micro_f1": "no label was true or predicted in any row (tp + fp + fn = 0 overall)",
    "macro_f1": "no label has a defined f1 (each has tp + fp + fn = 0)",
    "weighted_f1": "no label has a positive row in y_true (total support = 0)",
    "map": "no label has a positive row in y_true, so no average precision exists",
}


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    support: int  # positives in y_true for this label
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None
    average_precision: float | None
    roc_auc: float | None
    threshold: float


@dataclass(frozen=True)
class SplitMetrics:
    rows: int
    labels: list[LabelMetrics]
    micro_f1: float | None
    macro_f1: float | None
    weighted_f1: float | None
    # Never None (a split has at least one row) but typed like its siblings so that
    # readers of the JSON treat every averaged F1 the same way.
    samples_f1: float | None
    map: float | None
    hamming_loss: float
    subset_accuracy: float

    def null_reasons(self) -> dict:
        """Why each ``None`` here is ``None``, keyed like the fields.

        Example: ``{"map": "...", "labels": {"rare": {"recall": "...", ...}}}``.
        Fields that have a value are absent; an empty dict means nothing is ``None``.
        """
        reasons: dict = {
            f.name: NULL_REASONS[f.name]
            for f in fields(self)
            if f.name != "labels" and getattr(self, f.name) is None
        }

        per_label = {}
        for metrics in self.labels:
            missing = {
                f.name: NULL_REASONS[f.name]
                for f in fields(metrics)
                if getattr(metrics, f.name) is None
            }
            if missing:
                per_label[metrics.label] = missing
        if per_label:
            reasons["labels"] = per_label
        return reasons


def predict_labels(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Multi-hot predictions `uint8 [rows, labels]`: 1 where `probs >= thresholds`.

    `probs [rows, labels]`, `thresholds [labels]` broadcast along rows.
    """
    probs = _check_probs(probs)
    thresholds = _check_thresholds(thresholds, probs.shape[1])
    return (probs >= thresholds).astype(np.uint8)


def macro_f1(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray
) -> float | None:
    """Macro F1 alone, for per-epoch validation: counts only, no AP or AUC.

    Equals ``evaluate(...).macro_f1`` for the same inputs.
    """
    truth, probs, thresholds = _check_inputs(y_true, probs, thresholds)
    counts = _Counts.of(truth, probs >= thresholds)
    return _mean_or_none(counts.f1())


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    label_names: Sequence[str],
) -> SplitMetrics:
    """All metrics of one split: per-label rows plus micro/macro/weighted/samples F1,
    mAP, hamming loss and subset accuracy.

    `y_true [rows, labels]` 0/1, `probs [rows, labels]` in [0, 1], `thresholds
    [labels]`, `label_names` one unique name per label column.
    """
    truth, probs, thresholds = _check_inputs(y_true, probs, thresholds)
    names = _check_label_names(label_names, truth.shape[1])
    pred = probs >= thresholds
    counts = _Counts.of(truth, pred)
    f1 = counts.f1()

    labels = [
        _label_metrics(names[j], j, counts, f1, truth[:, j], probs[:, j], thresholds[j])
        for j in range(truth.shape[1])
    ]
    aps = np.array(
        [m.average_precision for m in labels if m.average_precision is not None]
    )

    # Micro pools the counts of all labels before dividing.
    tp, fp, fn = counts.tp.sum(), counts.fp.sum(), counts.fn.sum()
    micro = _ratio_or_none(2 * tp, 2 * tp + fp + fn)

    # A label with support > 0 always has a defined f1, so the weights line up.
    weighted = None
    if counts.support.sum() > 0:
        has_support = counts.support > 0
        weighted = float(
            np.average(f1[has_support], weights=counts.support[has_support])
        )

    errors = truth != pred
    return SplitMetrics(
        rows=int(truth.shape[0]),
        labels=labels,
        micro_f1=micro,
        macro_f1=_mean_or_none(f1),
        weighted_f1=weighted,
        samples_f1=_samples_f1(truth, pred),
        map=_mean_or_none(aps),
        hamming_loss=float(errors.mean()),
        subset_accuracy=float((~errors.any(axis=1)).mean()),
    )


@dataclass(frozen=True)
class _Counts:
    """Confusion counts per label, each `int64 [labels]`."""

    support: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @classmethod
    def of(cls, truth: np.ndarray, pred: np.ndarray) -> _Counts:
        """`truth`, `pred` bool [rows, labels]."""
        support = np.count_nonzero(truth, axis=0)
        predicted = np.count_nonzero(pred, axis=0)
        tp = np.count_nonzero(truth & pred, axis=0)
        fp, fn = predicted - tp, support - tp
        return cls(support, tp, fp, fn, truth.shape[0] - tp - fp - fn)

    def f1(self) -> np.ndarray:
        """`float64 [labels]`, NaN where tp + fp + fn = 0 (mapped to None on the way
        out; NaN never leaves the module)."""
        denom = 2 * self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * self.tp / denom, np.nan)


def _label_metrics(
    name: str,
    j: int,
    counts: _Counts,
    f1: np.ndarray,
    truth: np.ndarray,
    probs: np.ndarray,
    threshold: float,
) -> LabelMetrics:
    """Metrics of label `j`; `truth` bool [rows], `probs` float64 [rows]."""
    support, tp, fp = int(counts.support[j]), int(counts.tp[j]), int(counts.fp[j])
    rows = truth.shape[0]

    # sklearn warns and returns NaN (AUC) or a meaningless value (AP) in these cases,
    # so it is not called for them at all.
    ap = float(average_precision_score(truth, probs)) if support > 0 else None
    auc = float(roc_auc_score(truth, probs)) if 0 < support < rows else None

    return LabelMetrics(
        label=name,
        support=support,
        tp=tp,
        fp=fp,
        fn=int(counts.fn[j]),
        tn=int(counts.tn[j]),
        precision=_ratio_or_none(tp, tp + fp),
        recall=_ratio_or_none(tp, support),
        f1=None if np.isnan(f1[j]) else float(f1[j]),
        average_precision=ap,
        roc_auc=auc,
        threshold=float(threshold),
    )


def _samples_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-row F1; `truth`, `pred` bool [rows, labels]."""
    overlap = np.count_nonzero(truth & pred, axis=1)
    sizes = np.count_nonzero(truth, axis=1) + np.count_nonzero(pred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = np.where(sizes > 0, 2 * overlap / sizes, 1.0)
    return float(per_row.mean())


def _ratio_or_none(num: int | np.integer, denom: int | np.integer) -> float | None:
    return float(num / denom) if denom > 0 else None


def _mean_or_none(values: np.ndarray) -> float | None:
    """Mean of the non-NaN entries, None when there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else None


def _check_inputs(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated `truth` bool, `probs` float64 [rows, labels], `thresholds` float64
    [labels]."""
    probs = _check_probs(probs)
    # Hamming loss and subset accuracy have no value on an empty split.
    if probs.shape[0] == 0:
        raise ValueError("probs has 0 rows; metrics need at least one row")
    if probs.shape[1] == 0:
        raise ValueError("probs has 0 labels; metrics need at least one label")
    truth = _check_y_true(y_true, probs.shape)
    thresholds = _check_thresholds(thresholds, probs.shape[1])
    return truth, probs, thresholds


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs)
    _check_numeric("probs", probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D [rows, labels]; got shape {probs.shape}")

    probs = probs.astype(np.float64, copy=False)
    # The negated range test also catches NaN, which compares false both ways.
    bad = ~((probs >= 0.0) & (probs <= 1.0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"probs must be within [0, 1]; found {probs[row, col].item()!r} "
            f"at row {row}, label {col}"
        )
    return probs


def _check_y_true(y_true: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    y_true = np.asarray(y_true)
    _check_numeric("y_true", y_true)
    if y_true.shape != shape:
        raise ValueError(
            f"y_true shape {y_true.shape} does not match probs shape {shape}"
        )

    bad = (y_true != 0) & (y_true != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"y_true must hold only 0 and 1; found {y_true[row, col].item()!r} "
            f"at row {row}, label {col}"
        )
    return y_true != 0


def _check_thresholds(thresholds: np.ndarray, n_labels: int) -> np.ndarray:
    thresholds = np.asarray(thresholds)
    _check_numeric("thresholds", thresholds)
    if thresholds.shape != (n_labels,):
        raise ValueError(
            f"thresholds shape {thresholds.shape} does not match the {n_labels} "
            f"labels of probs; expected ({n_labels},)"
        )

    thresholds = thresholds.astype(np.float64, copy=False)
    bad = ~np.isfinite(thresholds)
    if bad.any():
        col = int(np.argmax(bad))
        value = thresholds[col].item()
        raise ValueError(f"thresholds must be finite; found {value!r} for label {col}")
    return thresholds


def _check_label_names(label_names: Sequence[str], n_labels: int) -> list[str]:
    names = list(label_names)
    if len(names) != n_labels:
        raise ValueError(
            f"label_names has {len(names)} names for the {n_labels} labels of probs"
        )
    for j, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(
                f"label_names[{j}] must be a str; got {type(name).__name__}"
            )

    # Names key the per-label reasons and the stored metrics, so they must be unique.
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"label_names must be unique; {name!r} appears twice")
        seen.add(name)
    return names


def _check_numeric(what: str, array: np.ndarray) -> None:
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        return
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be a numeric array; got dtype {array.dtype}")
