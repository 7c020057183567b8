"""Per-label decision thresholds, chosen by name from ``imbalance.thresholds``.

A label is predicted when ``prob >= threshold``, as in ``metrics``. The picking modes
score every distinct cut of a label's validation probabilities at once from cumulative
counts: cut k predicts the rows scoring at least the k-th highest distinct score, and
its threshold is placed midway between that score and the next lower one, not on a
sample's score, so a test row scoring a hair below a validation score is treated like
it. (Below the lowest score there is no neighbour: that cut's threshold is half the
lowest score.) Thresholds are float32; scores that differ only below float32
resolution cannot be separated and share a cut.

Guards: a label with fewer than ``min_positives`` validation positives is not tuned
on its own (a threshold tuned on 3 positives is noise, and often absurdly low). With
``small_support="pooled"`` it gets the threshold the same mode picks on every label's
validation scores pooled together — thousands of rows, reflecting how the model is
calibrated overall; with ``"fallback"`` it keeps ``fallback``. Any picked threshold is
clipped into ``bounds``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.engine.config import (
    FixedThresholds,
    MaxF1Thresholds,
    TargetPrecisionThresholds,
    TargetRecallThresholds,
)

ThresholdConfig = (
    FixedThresholds
    | MaxF1Thresholds
    | TargetPrecisionThresholds
    | TargetRecallThresholds
)
PickedConfig = MaxF1Thresholds | TargetPrecisionThresholds | TargetRecallThresholds


@dataclass(frozen=True)
class ThresholdChoice:
    thresholds: np.ndarray  # [n_labels] float32
    notes: list[str]  # per label: how its threshold was chosen


@dataclass(frozen=True)
class _Cuts:
    """Every distinct cut of one label's scores, highest score first."""

    threshold: np.ndarray  # [cuts] float32; cut k predicts rows with prob >= this
    tp: np.ndarray  # [cuts] int64 true positives at cut k
    fp: np.ndarray  # [cuts] int64 false positives at cut k
    positives: int


def pick_thresholds(
    config: ThresholdConfig, y_val: np.ndarray, val_probs: np.ndarray
) -> ThresholdChoice:
    """``y_val [rows, n_labels]`` 0/1 and ``val_probs [rows, n_labels]`` -> one
    threshold and one note per label."""
    y, probs = _check_inputs(y_val, val_probs)
    n_labels = y.shape[1]
    if config.mode == "fixed":
        value = np.full(n_labels, config.value, dtype=np.float32)
        return ThresholdChoice(value, [f"fixed at {config.value}"] * n_labels)
    if config.mode not in ("max_f1", "target_precision", "target_recall"):
        raise ValueError(f"unknown threshold mode {config.mode!r}")
    low, high = config.bounds
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(
            f"imbalance.thresholds.bounds must satisfy 0 <= low <= high <= 1; got "
            f"({low}, {high})"
        )

    pooled = None
    if config.small_support == "pooled" and y.sum() >= config.min_positives:
        pooled = _pick_label(config, y.reshape(-1), probs.reshape(-1), None)
    picks = [
        _pick_label(config, y[:, label], probs[:, label], pooled)
        for label in range(n_labels)
    ]
    thresholds = np.array([threshold for threshold, _ in picks], dtype=np.float32)
    return ThresholdChoice(thresholds, [note for _, note in picks])


def _pick_label(
    config: PickedConfig,
    y: np.ndarray,
    probs: np.ndarray,
    pooled: tuple[float, str] | None,
) -> tuple[float, str]:
    """One label's threshold and its note; ``pooled`` is the all-labels pick used for
    a label under ``min_positives`` (None: use ``fallback``)."""
    positives = int(y.sum())
    if positives < config.min_positives:
        why = f"{positives} validation positives < min_positives {config.min_positives}"
        if pooled is not None:
            return pooled[0], f"pooled {_fmt(pooled[0])}: {why}"
        return config.fallback, f"fallback {config.fallback}: {why}"

    cuts = _cuts(y, probs)
    if config.mode == "max_f1":
        cut, note = _max_f1(cuts)
    elif config.mode == "target_precision":
        cut, note = _target_precision(cuts, config.target)
    else:
        cut, note = _target_recall(cuts, config.target)
    if cut is None:
        return config.fallback, f"{note}; fallback {config.fallback}"

    picked = cuts.threshold[cut]
    threshold = np.float32(np.clip(picked, *config.bounds))
    if threshold != picked:
        note += f", clipped to {_fmt(threshold)}"
    return float(threshold), note


def _cuts(y: np.ndarray, probs: np.ndarray) -> _Cuts:
    """Counts at every distinct score, from ``y [rows]`` and ``probs [rows]``."""
    order = np.argsort(-probs, kind="stable")
    scores, hits = probs[order], y[order].astype(np.int64)
    # The last row of each run of equal scores closes a cut.
    last = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
    tp = np.cumsum(hits)[last]
    fp = (last + 1) - tp

    upper = scores[last]
    lower = np.append(upper[1:], 0.0)
    threshold = _between(lower, upper)
    threshold[-1] = np.float32(upper[-1] / 2)
    return _Cuts(threshold, tp, fp, int(hits.sum()))


def _between(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """float32 thresholds t with ``lower < t <= upper`` elementwise (float64 compare),
    at the midpoint where float32 can hold it. The midpoint of two adjacent float32
    scores rounds onto one of them, and onto ``lower`` would move rows across the cut;
    there the largest float32 <= upper is used instead."""
    mid = ((lower + upper) / 2).astype(np.float32)
    bad = ~((mid > lower) & (mid <= upper))
    top = upper.astype(np.float32)
    top = np.where(top > upper, np.nextafter(top, np.float32(-np.inf)), top)
    return np.where(bad, top, mid)


def _max_f1(cuts: _Cuts) -> tuple[int, str]:
    """The cut with the highest F1 = 2tp / (tp + fp + positives). Among tied cuts the
    highest threshold wins: equal F1 with fewer predicted positives is the higher
    precision, and the more cautious choice on a label that is rare."""
    f1 = 2 * cuts.tp / (cuts.tp + cuts.fp + cuts.positives)
    cut = int(np.argmax(f1))  # first maximum = highest threshold
    note = (
        f"max_f1 {_fmt(cuts.threshold[cut])} "
        f"(F1 {f1[cut]:.2f} on {cuts.positives} positives)"
    )
    return cut, note


def _target_precision(cuts: _Cuts, target: float) -> tuple[int | None, str]:
    """The lowest threshold whose precision reaches ``target``: recall only grows as
    the threshold falls, so this is the highest recall at that precision."""
    precision = cuts.tp / (cuts.tp + cuts.fp)
    reached = np.flatnonzero(precision >= target)
    if reached.shape[0] == 0:
        return None, (
            f"target precision {target} unreachable (best {precision.max():.2f})"
        )
    cut = int(reached[-1])
    recall = cuts.tp[cut] / cuts.positives
    return cut, (
        f"target_precision {_fmt(cuts.threshold[cut])} "
        f"(precision {precision[cut]:.2f}, recall {recall:.2f} "
        f"on {cuts.positives} positives)"
    )


def _target_recall(cuts: _Cuts, target: float) -> tuple[int, str]:
    """The highest threshold whose recall reaches ``target``; the lowest cut predicts
    every row (recall 1), so one always does."""
    recall = cuts.tp / cuts.positives
    cut = int(np.flatnonzero(recall >= target)[0])
    precision = cuts.tp[cut] / (cuts.tp[cut] + cuts.fp[cut])
    return cut, (
        f"target_recall {_fmt(cuts.threshold[cut])} (recall {recall[cut]:.2f}, "
        f"precision {precision:.2f} on {cuts.positives} positives)"
    )


def _fmt(value: float) -> str:
    """Three significant digits, unless those would print a threshold as 0 or 1."""
    text = f"{float(value):.3g}"
    return f"{float(value):.3e}" if text in ("0", "1") else text


def _check_inputs(
    y_val: np.ndarray, val_probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays ``[rows, n_labels]``: y int64 0/1, probs float64 in [0, 1].
    The engine builds them, so a mismatch is a bug to surface, not user input."""
    y, probs = np.asarray(y_val), np.asarray(val_probs)
    if y.ndim != 2 or y.shape != probs.shape:
        raise ValueError(
            f"y_val and val_probs must be 2-D [rows, labels] of one shape; got "
            f"{y.shape} and {probs.shape}"
        )
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_val must hold only 0 and 1")
    if probs.size and not (
        np.isfinite(probs).all() and 0 <= probs.min() and probs.max() <= 1
    ):
        raise ValueError("val_probs must be finite probabilities in [0, 1]")
    return y.astype(np.int64), probs.astype(np.float64)
