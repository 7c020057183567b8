"""workers.engine.samplers: determinism, hand-computed repeat factors, and the
ML-ROS / ML-RUS rules checked against IRLbl and MeanIR recomputed here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from workers.engine.config import (
    MLROSSampler,
    MLRUSSampler,
    NoSampler,
    RepeatFactorSampler,
)
from workers.engine.samplers import build_sampler, describe_sampler

ALL_CONFIGS = [
    NoSampler(),
    RepeatFactorSampler(threshold=0.2),
    MLROSSampler(percentage=50),
    MLRUSSampler(percentage=30),
]


def _imbalanced(rows: int = 2000, seed: int = 0) -> np.ndarray:
    """``[rows, 4]`` uint8 labels at rates 40%, 15%, 3%, 0.5%."""
    rng = np.random.default_rng(seed)
    return (rng.random((rows, 4)) < [0.4, 0.15, 0.03, 0.005]).astype(np.uint8)


def _irlbl(labels: np.ndarray) -> list[float]:
    """Plain IRLbl per label: most positives / positives (labels with positives)."""
    counts = [int(c) for c in labels.sum(axis=0)]
    return [max(counts) / c for c in counts]


def _mean_ir(labels: np.ndarray) -> float:
    values = _irlbl(labels)
    return sum(values) / len(values)


# --- every sampler -------------------------------------------------------------------


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: c.type)
def test_epoch_order_is_deterministic_and_sized(config):
    labels = _imbalanced()
    sampler = build_sampler(config, labels, seed=7)
    again = build_sampler(config, labels, seed=7)

    first = sampler.epoch_order(3)
    assert first.dtype == np.int64
    assert first.shape == (sampler.rows_per_epoch,)
    assert ((first >= 0) & (first < labels.shape[0])).all()
    # Same (seed, epoch, labels): same order, from a fresh sampler or a repeated call.
    np.testing.assert_array_equal(first, again.epoch_order(3))
    np.testing.assert_array_equal(first, sampler.epoch_order(3))
    # Another epoch or seed: another order of the same length.
    for other in (
        sampler.epoch_order(4),
        build_sampler(config, labels, 8).epoch_order(3),
    ):
        assert other.shape == (sampler.rows_per_epoch,)
        assert not np.array_equal(first, other)
    for epoch in range(5):
        assert sampler.epoch_order(epoch).shape == (sampler.rows_per_epoch,)

    summary = describe_sampler(sampler)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["type"] == config.type
    assert summary["rows_per_epoch"] == sampler.rows_per_epoch


def test_no_sampler_is_a_permutation_of_all_rows():
    labels = _imbalanced(rows=500)
    sampler = build_sampler(NoSampler(), labels, seed=0)
    order = sampler.epoch_order(1)
    assert sampler.rows_per_epoch == 500
    np.testing.assert_array_equal(np.sort(order), np.arange(500))
    assert not np.array_equal(order, np.arange(500))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="labels must hold only 0 and 1"):
        build_sampler(NoSampler(), np.array([[0, 2]]), seed=0)
    with pytest.raises(ValueError, match=r"labels must be 2-D \[rows, labels\]"):
        build_sampler(NoSampler(), np.zeros(4), seed=0)
    sampler = build_sampler(NoSampler(), np.zeros((3, 1)), seed=0)
    with pytest.raises(ValueError, match="epoch must be non-negative; got -1"):
        sampler.epoch_order(-1)


# --- repeat factor -------------------------------------------------------------------


def _tiny_labels() -> np.ndarray:
    """10 rows: label 0 in rows 0-4 (rate 0.5), label 1 in rows 0 and 5 (rate 0.2)."""
    labels = np.zeros((10, 2), dtype=np.uint8)
    labels[0:5, 0] = 1
    labels[[0, 5], 1] = 1
    return labels


def test_repeat_factors_match_hand_computation():
    # threshold 0.8: r_0 = sqrt(0.8 / 0.5) = 1.2649, r_1 = sqrt(0.8 / 0.2) = 2.
    # Row factors: row 0 max(1.26, 2) = 2; rows 1-4 1.2649; row 5 2; rows 6-9 1.
    sampler = build_sampler(RepeatFactorSampler(threshold=0.8), _tiny_labels(), seed=3)
    summary = describe_sampler(sampler)
    np.testing.assert_allclose(summary["label_repeat_factors"], [math.sqrt(1.6), 2.0])
    assert summary["rows_repeated"] == 6
    assert summary["max_repeat"] == 2
    # Whole repeats 2 + 4 * 1 + 2 + 4 * 1 = 12, plus floor(4 * 0.2649) = 1 extra row.
    assert sampler.rows_per_epoch == 13

    counts = np.stack(
        [np.bincount(sampler.epoch_order(e), minlength=10) for e in range(4000)]
    )
    assert (counts[:, [0, 5]] == 2).all()
    assert (counts[:, 6:] == 1).all()
    assert np.isin(counts[:, 1:5], (1, 2)).all()
    assert (counts[:, 1:5].sum(axis=1) == 5).all()  # exactly one extra row each epoch
    # Each of rows 1-4 gets the extra row a quarter of the time (1 extra / 4 rows).
    np.testing.assert_allclose((counts[:, 1:5] - 1).mean(axis=0), 0.25, atol=0.03)


def test_repeat_factor_fractional_parts_are_kept_on_average():
    # 6 rows of label 0 at rate 0.3 with threshold 0.48: r = sqrt(1.6) = 1.2649; the
    # fractional parts sum to 1.589, so one extra row per epoch and an expected extra
    # of 1 / 6 per row, i.e. the fraction shrunk by K / S = 1 / 1.589.
    labels = np.zeros((20, 1), dtype=np.uint8)
    labels[:6, 0] = 1
    sampler = build_sampler(RepeatFactorSampler(threshold=0.48), labels, seed=0)
    assert sampler.rows_per_epoch == 20 + 6 * 0 + 1
    counts = np.stack(
        [np.bincount(sampler.epoch_order(e), minlength=20) for e in range(3000)]
    )
    np.testing.assert_allclose((counts[:, :6] - 1).mean(axis=0), 1 / 6, atol=0.03)
    assert (counts[:, 6:] == 1).all()


def test_repeat_factor_oversamples_rare_rows():
    labels = _imbalanced()
    rare = labels[:, 3] == 1
    plain = build_sampler(NoSampler(), labels, seed=1).epoch_order(0)
    repeated = build_sampler(RepeatFactorSampler(threshold=0.2), labels, seed=1)
    # 14 of 2000 rows: r_3 = sqrt(0.2 / 0.007) = 5.35, so every rare row appears at
    # least 5 times per epoch instead of once.
    assert rare.sum() == 14 and rare[plain].sum() == 14
    for epoch in range(3):
        counts = np.bincount(repeated.epoch_order(epoch), minlength=2000)
        assert (counts[rare] >= 5).all()
        assert (counts[~labels.any(axis=1)] == 1).all()


# --- ML-ROS ------------------------------------------------------------------------


def test_ml_ros_clones_minority_rows_and_lowers_mean_ir():
    labels = _imbalanced()
    sampler = build_sampler(MLROSSampler(percentage=50), labels, seed=2)
    order = sampler.epoch_order(0)
    summary = describe_sampler(sampler)

    # Every original row once, plus clones.
    counts = np.bincount(order, minlength=labels.shape[0])
    assert (counts >= 1).all()
    assert summary["clones"] == order.shape[0] - labels.shape[0] > 0
    assert summary["clones"] <= 2000 * 50 // 100

    # Clones come from minority labels (IRLbl > MeanIR) only.
    irlbl, mean_ir = _irlbl(labels), _mean_ir(labels)
    minority = [label for label in range(4) if irlbl[label] > mean_ir]
    assert summary["minority_labels"] == minority
    assert (labels[counts > 1][:, minority].any(axis=1)).all()

    resampled = labels[order]
    assert resampled[:, 3].sum() > labels[:, 3].sum()
    assert _mean_ir(resampled) < mean_ir
    assert summary["mean_ir_before"] == pytest.approx(mean_ir)
    assert summary["mean_ir_after"] == pytest.approx(_mean_ir(resampled))
    # The multiset is fixed at build time; epochs only reorder it.
    np.testing.assert_array_equal(np.sort(order), np.sort(sampler.epoch_order(9)))


def _single_minority_labels() -> np.ndarray:
    """1000 rows: label 0 in 900 rows, label 1 alone in 10 rows, label 2 in 500 rows
    that also carry label 0. IRLbl = [1, 90, 1.8], MeanIR = 30.93; label 1 is the one
    minority label and leaves its bag once 900 <= 30.93 * n_1, i.e. at n_1 = 30."""
    labels = np.zeros((1000, 3), dtype=np.uint8)
    labels[:900, 0] = 1
    labels[900:910, 1] = 1
    labels[:500, 2] = 1
    return labels


def test_ml_ros_stops_when_the_minority_label_reaches_mean_ir():
    labels = _single_minority_labels()
    mean_ir = (1 + 90 + 1.8) / 3
    needed = math.ceil(900 / mean_ir) - 10  # clones until IRLbl <= MeanIR
    assert needed == 20
    sampler = build_sampler(MLROSSampler(percentage=50), labels, seed=0)
    order = sampler.epoch_order(0)
    assert describe_sampler(sampler)["clones"] == needed
    assert labels[order].sum(axis=0).tolist() == [900, 30, 500]


def test_ml_ros_spends_the_whole_budget_when_the_label_stays_minority():
    labels = _single_minority_labels()
    sampler = build_sampler(MLROSSampler(percentage=1.5), labels, seed=0)
    assert describe_sampler(sampler)["clones"] == 15  # 1000 * 1.5 / 100
    assert sampler.rows_per_epoch == 1015
    assert labels[sampler.epoch_order(0)].sum(axis=0).tolist() == [900, 25, 500]


# --- ML-RUS ------------------------------------------------------------------------


@pytest.mark.parametrize("percentage", [10, 40, 90])
def test_ml_rus_never_drops_a_row_with_a_minority_label(percentage):
    labels = _imbalanced(rows=3000, seed=4)
    sampler = build_sampler(MLRUSSampler(percentage=percentage), labels, seed=5)
    order = sampler.epoch_order(0)
    summary = describe_sampler(sampler)

    kept = np.zeros(labels.shape[0], dtype=bool)
    kept[order] = True
    assert np.bincount(order).max() == 1  # no repeats
    assert summary["rows_dropped"] == 3000 - order.shape[0] > 0
    assert summary["rows_dropped"] <= 3000 * percentage // 100

    irlbl, mean_ir = _irlbl(labels), _mean_ir(labels)
    not_majority = [label for label in range(4) if irlbl[label] >= mean_ir]
    assert not_majority  # the test is vacuous otherwise
    assert kept[labels[:, not_majority].any(axis=1)].all()
    assert kept[labels.sum(axis=1) == 0].all()  # rows of no label are in no bag
    assert summary["mean_ir_after"] == pytest.approx(_mean_ir(labels[order]))
    assert summary["mean_ir_after"] < mean_ir


def test_ml_rus_spends_its_budget_while_labels_stay_majority():
    labels = _imbalanced(rows=3000, seed=4)
    sampler = build_sampler(MLRUSSampler(percentage=10), labels, seed=5)
    assert describe_sampler(sampler)["rows_dropped"] == 300


def test_ml_rus_bags_leave_at_mean_ir_as_computed_by_hand():
    # 1000 rows, no co-occurrence: label 0 in 600 rows, label 1 in 30, label 2 in 300,
    # 70 rows without labels. IRLbl = [1, 20, 2], MeanIR = 23 / 3 = 7.667; labels 0
    # and 2 are majority, label 1's rows are protected.
    labels = np.zeros((1000, 3), dtype=np.uint8)
    labels[:600, 0] = 1
    labels[600:630, 1] = 1
    labels[630:930, 2] = 1
    # Rounds delete one row of label 0 and one of label 2. Label 2 leaves after n
    # rounds once (600 - n) / (300 - n) >= 23 / 3, i.e. n = 255 (345 and 45 left).
    # Label 0 goes on alone; once below 45 it is no longer the largest, and it leaves
    # when 45 / n_0 >= 23 / 3, i.e. at n_0 = 5. Deleted: 255 + 255 + 340 = 850.
    # 99% is past the schema's cap; the algorithm itself is what is checked here.
    config = MLRUSSampler.model_construct(type="ml_rus", percentage=99)
    sampler = build_sampler(config, labels, seed=5)
    order = sampler.epoch_order(0)
    assert labels[order].sum(axis=0).tolist() == [5, 30, 45]
    assert describe_sampler(sampler)["rows_dropped"] == 850
    assert (np.isin(np.arange(600, 1000), order) | (labels[600:, 2] == 1)).all()
