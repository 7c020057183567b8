"""Which training rows an epoch visits, and how often, from ``imbalance.sampler``.

A sampler turns the training labels into one shuffled array of row indices per epoch;
rows may repeat (oversampling) or be left out (undersampling). The order of epoch ``e``
is drawn from ``default_rng([seed, e, _SALT])`` alone, so a resumed run reproduces it
without saving generator state. The ML-ROS and ML-RUS multisets are drawn once at build
time from the seed, so they too depend only on (seed, labels).

IRLbl and MeanIR follow Charte et al. (2015): ``IRLbl_l = max_j n_j / n_l`` with
``n_l`` the positives of label l, and MeanIR the mean IRLbl. A label without training
positives has no IRLbl; it is left out of MeanIR and is neither minority nor majority.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from workers.engine.config import (
    MLROSSampler,
    MLRUSSampler,
    NoSampler,
    RepeatFactorSampler,
)

SamplerConfig = NoSampler | RepeatFactorSampler | MLROSSampler | MLRUSSampler

# Mixed into every seed here, so these streams differ from other users of the job seed.
_SALT = 0x73616D70  # "samp"


class Sampler(Protocol):
    rows_per_epoch: int

    def epoch_order(self, epoch: int) -> np.ndarray:
        """int64 row indices into the training rows for ``epoch``, shuffled."""
        ...


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    if epoch < 0:
        raise ValueError(f"epoch must be non-negative; got {epoch}")
    return np.random.default_rng([seed, epoch, _SALT])


class _ShuffledMultiset:
    """Each epoch, a fresh shuffle of one fixed multiset of row indices."""

    def __init__(self, rows: np.ndarray, seed: int, summary: dict) -> None:
        self._rows = rows.astype(np.int64)
        self._seed = seed
        self.rows_per_epoch = int(rows.shape[0])
        self.summary = summary

    def epoch_order(self, epoch: int) -> np.ndarray:
        return _epoch_rng(self._seed, epoch).permutation(self._rows)


class _RepeatFactor:
    """Row i appears ``floor(r_i)`` times plus once more with probability close to
    ``r_i - floor(r_i)``, redrawn every epoch.

    The extra draws are coupled by systematic sampling so that every epoch has the
    same length: the trainer counts optimizer steps from ``rows_per_epoch`` for its
    schedule (PyTorch's OneCycleLR fails when stepped past its total). The fractional
    parts, shuffled, are laid end to end and scaled to total ``K = floor(S)``, S their
    sum; K points one apart from a uniform start pick the extra rows. Each row is then
    drawn at most once more, with probability ``frac_i * K / S``: the epoch length is
    fixed at the cost of shrinking every fractional part by ``K / S`` (by less than
    ``1 / S`` relatively; with S < 1 no extra row is drawn).
    """

    def __init__(self, factors: np.ndarray, seed: int, summary: dict) -> None:
        whole = np.floor(factors)
        frac = factors - whole
        self._base = np.repeat(
            np.arange(factors.shape[0], dtype=np.int64), whole.astype(np.int64)
        )
        self._frac_rows = np.flatnonzero(frac > 0)
        self._frac = frac[self._frac_rows]
        total = float(self._frac.sum())
        self._extra = int(math.floor(total))
        self._scale = self._extra / total if total > 0 else 0.0
        self._seed = seed
        self.rows_per_epoch = int(self._base.shape[0]) + self._extra
        self.summary = summary

    def epoch_order(self, epoch: int) -> np.ndarray:
        rng = _epoch_rng(self._seed, epoch)
        order = rng.permutation(self._frac_rows.shape[0])
        ends = np.cumsum(self._frac[order] * self._scale)
        points = rng.random() + np.arange(self._extra)
        # The last end may fall a rounding error short of K; such a point is its row's.
        hit = np.minimum(np.searchsorted(ends, points, side="right"), ends.shape[0] - 1)
        extra = self._frac_rows[order[hit]] if self._extra else self._frac_rows[:0]
        return rng.permutation(np.concatenate([self._base, extra]))


# --- building ----------------------------------------------------------------------


def build_sampler(config: SamplerConfig, labels: np.ndarray, seed: int) -> Sampler:
    """The configured sampler over ``labels [rows, L]`` (0/1) training labels."""
    labels = _check_labels(labels)
    rows = labels.shape[0]
    counts = labels.sum(axis=0, dtype=np.int64)

    if config.type == "none":
        summary = {"type": "none", "rows": rows, "rows_per_epoch": rows}
        summary.update(max_repeat=1, rows_dropped=0)
        return _ShuffledMultiset(np.arange(rows), seed, summary)
    if config.type == "repeat_factor":
        return _build_repeat_factor(config.threshold, labels, counts, seed)
    if config.type == "ml_ros":
        return _build_ml_ros(config.percentage, labels, counts, seed)
    if config.type == "ml_rus":
        return _build_ml_rus(config.percentage, labels, counts, seed)
    raise ValueError(f"unknown sampler type {config.type!r}")


def describe_sampler(sampler: Sampler) -> dict:
    """A JSON-ready summary: rows_per_epoch, max_repeat, rows_dropped and per-kind
    details (per-label lists are in label order)."""
    summary = getattr(sampler, "summary", None)
    if summary is None:
        return {"rows_per_epoch": int(sampler.rows_per_epoch)}
    return dict(summary)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as bool ``[rows, L]``; malformed labels are an engine bug."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] == 0 or labels.shape[1] == 0:
        raise ValueError(
            f"labels must be 2-D [rows, labels], non-empty; got {labels.shape}"
        )
    if labels.dtype != np.bool_ and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must hold only 0 and 1")
    return labels.astype(bool)


def _irlbl(counts: np.ndarray) -> np.ndarray:
    """IRLbl per label, float64 ``[L]``; NaN for a label without positives."""
    counts = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, counts.max() / counts, np.nan)


def _mean_ir(counts: np.ndarray) -> float:
    """Mean IRLbl over labels with positives; NaN if there are none, so that every
    comparison with it is False and no label counts as minority or majority."""
    return float(np.nanmean(_irlbl(counts))) if np.any(counts > 0) else math.nan


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _build_repeat_factor(
    threshold: float, labels: np.ndarray, counts: np.ndarray, seed: int
) -> _RepeatFactor:
    """LVIS repeat factors (Gupta et al. 2019) with labels for categories: label l at
    training rate f_l repeats ``r_l = max(1, sqrt(threshold / f_l))``; a row takes the
    largest r_l among its positive labels, 1 if it has none."""
    rows = labels.shape[0]
    with np.errstate(divide="ignore"):
        label_factor = np.maximum(1.0, np.sqrt(threshold / (counts / rows)))
    # One pass per label keeps memory at O(rows) however many labels there are.
    factors = np.ones(rows)
    for label in np.flatnonzero(counts):
        np.maximum(
            factors, np.where(labels[:, label], label_factor[label], 1.0), out=factors
        )

    summary = {
        "type": "repeat_factor",
        "threshold": threshold,
        "rows": rows,
        "label_repeat_factors": [
            float(f) if c else None for f, c in zip(label_factor, counts, strict=True)
        ],
        "rows_repeated": int(np.count_nonzero(factors > 1)),
        "max_repeat": int(np.ceil(factors.max())),
        "rows_dropped": 0,
    }
    sampler = _RepeatFactor(factors, seed, summary)
    summary["rows_per_epoch"] = sampler.rows_per_epoch
    return sampler


def _build_ml_ros(
    percentage: float, labels: np.ndarray, counts: np.ndarray, seed: int
) -> _ShuffledMultiset:
    """ML-ROS (Charte et al. 2015): clone ``rows * percentage / 100`` rows.

    Each minority label (IRLbl > MeanIR, MeanIR fixed before cloning) has a bag of its
    rows. In rounds, every bag in turn gets one clone of a uniformly drawn row of its
    own; a bag leaves once its label's IRLbl, recounted with the clones, is <= MeanIR.
    Cloning stops when the budget is spent or no bag is left. Rounds run in blocks of
    k, with k at most half the clones the closest label still needs, so a label leaves
    within a block or two of where a clone-by-clone check would stop it (the clone
    counts agree with such a loop to within its seed-to-seed spread), while 224k rows
    x 4 labels build in milliseconds instead of a python step per clone.
    """
    rows = labels.shape[0]
    rng = np.random.default_rng([seed, _SALT, 1])
    mean_ir = _mean_ir(counts)
    ir = _irlbl(counts)
    minority = np.flatnonzero(ir > mean_ir)
    bags = {label: np.flatnonzero(labels[:, label]) for label in minority}

    active, budget, clones = list(minority), int(rows * percentage / 100), []
    counts = counts.copy()
    while budget > 0 and active:
        need = counts.max() / mean_ir - counts[active]
        k = min(max(1, int(need.min() // 2)), max(1, budget // len(active)))
        picks = np.stack(
            [bags[label][rng.integers(0, bags[label].shape[0], k)] for label in active],
            axis=1,
        ).ravel()[:budget]  # round-major: the last, partial round goes bag by bag
        counts += labels[picks].sum(axis=0, dtype=np.int64)
        clones.append(picks)
        budget -= picks.shape[0]
        active = [label for label in active if counts.max() > mean_ir * counts[label]]

    cloned = np.concatenate(clones) if clones else np.array([], dtype=np.int64)
    multiset = np.concatenate([np.arange(rows), cloned])
    summary = {
        "type": "ml_ros",
        "percentage": percentage,
        "rows": rows,
        "rows_per_epoch": int(multiset.shape[0]),
        "clones": int(cloned.shape[0]),
        "max_repeat": int(np.bincount(multiset, minlength=rows).max()),
        "rows_dropped": 0,
        "minority_labels": [int(label) for label in minority],
        "mean_ir_before": _or_none(mean_ir),
        "mean_ir_after": _or_none(_mean_ir(counts)),
    }
    return _ShuffledMultiset(multiset, seed, summary)


def _build_ml_rus(
    percentage: float, labels: np.ndarray, counts: np.ndarray, seed: int
) -> _ShuffledMultiset:
    """ML-RUS (Charte et al. 2015): delete up to ``rows * percentage / 100`` rows.

    Each majority label (IRLbl < MeanIR, MeanIR fixed before deleting) has a bag of
    its rows; in rounds every bag in turn deletes one uniformly drawn row still
    present, and leaves once its IRLbl, recounted, is >= MeanIR or it has no row left.
    Unlike the paper, a row carrying any label that is not majority at the start
    (IRLbl >= MeanIR) is never deleted: such a row is positive for a label that is
    already scarce, and deleting it to thin a frequent label it co-occurs with would
    make the imbalance worse for exactly the labels ML-RUS is meant to help. Rounds run
    in blocks as in ML-ROS.
    """
    rows = labels.shape[0]
    rng = np.random.default_rng([seed, _SALT, 2])
    mean_ir = _mean_ir(counts)
    ir = _irlbl(counts)
    # NaN (no positives) compares False both ways: such a label is neither.
    majority = np.flatnonzero(ir < mean_ir)
    protected = labels[:, ir >= mean_ir].any(axis=1)
    queues = {
        label: rng.permutation(np.flatnonzero(labels[:, label] & ~protected))
        for label in majority
    }
    heads = dict.fromkeys(majority, 0)

    alive = np.ones(rows, dtype=bool)
    active = [label for label in majority if queues[label].shape[0]]
    budget = int(rows * percentage / 100)
    counts = counts.copy()
    while budget > 0 and active:
        need = counts[active] - counts.max() / mean_ir
        k = min(max(1, int(need.min() // 2)), max(1, budget // len(active)))
        for label in active:
            take = min(k, budget)
            chosen, heads[label] = _next_alive(queues[label], heads[label], alive, take)
            alive[chosen] = False
            counts -= labels[chosen].sum(axis=0, dtype=np.int64)
            budget -= chosen.shape[0]
        active = [
            label
            for label in active
            if heads[label] < queues[label].shape[0]
            and counts.max() < mean_ir * counts[label]
        ]

    kept = np.flatnonzero(alive)
    summary = {
        "type": "ml_rus",
        "percentage": percentage,
        "rows": rows,
        "rows_per_epoch": int(kept.shape[0]),
        "rows_dropped": int(rows - kept.shape[0]),
        "max_repeat": 1,
        "majority_labels": [int(label) for label in majority],
        "protected_rows": int(protected.sum()),
        "mean_ir_before": _or_none(mean_ir),
        "mean_ir_after": _or_none(_mean_ir(counts)),
    }
    return _ShuffledMultiset(kept, seed, summary)


def _next_alive(
    queue: np.ndarray, head: int, alive: np.ndarray, take: int
) -> tuple[np.ndarray, int]:
    """The next ``take`` rows of ``queue`` from ``head`` that are still alive, and the
    new head. Rows deleted through another bag are skipped, so each bag still deletes
    uniformly at random among its remaining rows."""
    chosen = []
    while take > 0 and head < queue.shape[0]:
        window = queue[head : head + 2 * take]
        live = np.flatnonzero(alive[window])[:take]
        chosen.append(window[live])
        take -= live.shape[0]
        head += int(live[-1]) + 1 if take == 0 else window.shape[0]
    picked = np.concatenate(chosen) if chosen else queue[:0]
    return picked, head
