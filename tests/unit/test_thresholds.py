"""workers.engine.thresholds against a brute-force reference: every sample's score
tried as a threshold, F1 / precision / recall counted with plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from workers.engine.config import (
    FixedThresholds,
    MaxF1Thresholds,
    TargetPrecisionThresholds,
    TargetRecallThresholds,
)
from workers.engine.thresholds import pick_thresholds

# No guard and no clipping unless a test asks for them.
OPEN = {"min_positives": 1, "bounds": (0.0, 1.0)}


# --- plain reference ---------------------------------------------------------------


def _counts(truth: list[int], scores: list[float], threshold: float) -> tuple[int, int]:
    """(tp, fp) when every score >= threshold is predicted positive."""
    tp = fp = 0
    for t, s in zip(truth, scores, strict=True):
        if s >= threshold:
            tp += t
            fp += 1 - t
    return tp, fp


def _f1(truth, scores, threshold) -> float:
    tp, fp = _counts(truth, scores, threshold)
    return 2 * tp / (tp + fp + sum(truth))


def _predicted(scores, threshold) -> list[bool]:
    return [s >= threshold for s in scores]


def _ref_max_f1(truth, scores) -> float:
    """The highest score whose cut has the best F1 (ties: the highest such score)."""
    best = max(_f1(truth, scores, s) for s in scores)
    return max(s for s in scores if _f1(truth, scores, s) == best)


def _ref_target_precision(truth, scores, target) -> float | None:
    """The lowest score whose cut reaches the precision target."""
    ok = []
    for s in scores:
        tp, fp = _counts(truth, scores, s)
        if tp / (tp + fp) >= target:
            ok.append(s)
    return min(ok) if ok else None


def _ref_target_recall(truth, scores, target) -> float:
    """The highest score whose cut reaches the recall target."""
    return max(s for s in scores if _counts(truth, scores, s)[0] / sum(truth) >= target)


def _label(seed: int, rows: int = 300, rate: float = 0.2, decimals: int | None = None):
    """0/1 truth and float32 scores that rank positives higher, with some overlap."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(rows) < rate).astype(np.uint8)
    scores = np.clip(0.35 * truth + 0.65 * rng.random(rows), 0, 1)
    if decimals is not None:
        scores = np.round(scores, decimals)  # many exact ties, mixed labels
    return truth, scores.astype(np.float32)


def _midway_below(scores: np.ndarray, cut: float) -> float:
    lower = scores[scores < cut]
    return (cut + (lower.max() if lower.size else 0.0)) / 2


# --- max_f1 --------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "decimals"), [(0, None), (1, None), (2, 1), (3, 2)])
def test_max_f1_matches_brute_force(seed, decimals):
    truth, scores = _label(seed, decimals=decimals)
    choice = pick_thresholds(MaxF1Thresholds(**OPEN), truth[:, None], scores[:, None])
    threshold = float(choice.thresholds[0])
    t, s = truth.tolist(), scores.tolist()

    best_cut = _ref_max_f1(t, s)
    assert _predicted(s, threshold) == _predicted(s, best_cut)
    assert _f1(t, s, threshold) == max(_f1(t, s, x) for x in s)
    # Midway between the cut's score and the next lower one, not on a score.
    assert threshold == pytest.approx(_midway_below(scores, best_cut), abs=1e-7)
    assert threshold not in set(s)
    # No threshold on a fine grid does better.
    assert all(_f1(t, s, g) <= _f1(t, s, threshold) for g in np.linspace(0, 1, 501))
    assert choice.notes == [
        f"max_f1 {threshold:.3g} (F1 {_f1(t, s, threshold):.2f} on {sum(t)} positives)"
    ]


def test_max_f1_ties_take_the_higher_threshold():
    # Cut at 0.9: tp 1, fp 0 -> F1 2/3. Cut at 0.6: tp 2, fp 2 -> F1 4/6 = 2/3.
    truth = np.array([[1], [0], [0], [1], [0]])
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.1]], dtype=np.float32)
    choice = pick_thresholds(MaxF1Thresholds(**OPEN), truth, scores)
    assert choice.thresholds[0] == np.float32(0.85)
    assert choice.notes == ["max_f1 0.85 (F1 0.67 on 2 positives)"]


def test_threshold_separates_adjacent_float32_scores():
    # No float32 lies strictly between a and its successor b: the midpoint rounds
    # onto one of them, and must not round onto a (which would predict a's row too).
    a = np.float32(0.3)
    b = np.nextafter(a, np.float32(1))
    truth = np.array([[1], [0]] * 10)
    scores = np.array([[b], [a]] * 10, dtype=np.float32)
    threshold = pick_thresholds(MaxF1Thresholds(**OPEN), truth, scores).thresholds[0]
    assert a < threshold <= b


# --- guards --------------------------------------------------------------------------


def test_few_positives_keep_the_fallback():
    # With 3 positives scored 0.02, 0.015 and 0.01 max_f1 alone would pick 0.0075.
    truth = np.zeros((200, 1), dtype=np.uint8)
    truth[:3] = 1
    scores = np.full((200, 1), 0.005, dtype=np.float32)
    scores[:3, 0] = [0.02, 0.015, 0.01]
    choice = pick_thresholds(MaxF1Thresholds(), truth, scores)
    assert choice.thresholds.tolist() == [0.5]
    assert choice.notes == ["fallback 0.5: 3 validation positives < min_positives 10"]

    unguarded = pick_thresholds(
        MaxF1Thresholds(min_positives=3, bounds=(0, 1)), truth, scores
    )
    assert unguarded.thresholds[0] == np.float32(0.0075)


def test_few_positives_take_the_pooled_threshold():
    # Label 0: 3 positives, tuned alone it would go to 0.0075. Label 1: 60 positives
    # cleanly above 0.3. Pooled over both labels, max F1 is reached by the cut that
    # keeps label 1's positives and label 0's three (all scored above the negatives).
    rng = np.random.default_rng(1)
    truth = np.zeros((200, 2), dtype=np.uint8)
    truth[:3, 0] = 1
    truth[:60, 1] = 1
    scores = rng.uniform(0.0, 0.004, size=(200, 2)).astype(np.float32)
    scores[:3, 0] = [0.02, 0.015, 0.01]
    scores[:60, 1] = rng.uniform(0.3, 0.9, size=60)
    choice = pick_thresholds(MaxF1Thresholds(), truth, scores)

    flat_truth, flat_scores = truth.reshape(-1, 1), scores.reshape(-1, 1)
    pooled = pick_thresholds(MaxF1Thresholds(), flat_truth, flat_scores).thresholds[0]
    assert choice.thresholds[0] == pooled
    assert choice.notes[0] == (
        f"pooled {pooled:.3g}: 3 validation positives < min_positives 10"
    )
    assert choice.notes[1].startswith("max_f1 ")
    # Never the 0.0075 that label 0's three positives alone would give.
    assert choice.thresholds[0] >= 0.05


def test_all_zero_label_keeps_the_fallback():
    truth = np.zeros((50, 2), dtype=np.uint8)
    truth[:20, 1] = 1
    scores = np.random.default_rng(0).random((50, 2)).astype(np.float32)
    choice = pick_thresholds(
        MaxF1Thresholds(min_positives=1, fallback=0.4, small_support="fallback"),
        truth,
        scores,
    )
    assert choice.thresholds[0] == np.float32(0.4)
    assert choice.notes[0] == "fallback 0.4: 0 validation positives < min_positives 1"
    assert choice.notes[1].startswith("max_f1 ")


def test_picked_thresholds_are_clipped_into_bounds():
    # Label 0's best cut is at 0.02 (midway 0.0175), label 1's at 0.99 (midway 0.985).
    truth = np.zeros((40, 2), dtype=np.uint8)
    truth[:10] = 1
    scores = np.zeros((40, 2), dtype=np.float32)
    scores[:10, 0], scores[10:, 0] = 0.02, 0.015
    scores[:10, 1], scores[10:, 1] = 0.99, 0.98
    choice = pick_thresholds(MaxF1Thresholds(bounds=(0.05, 0.95)), truth, scores)
    np.testing.assert_array_equal(choice.thresholds, np.float32([0.05, 0.95]))
    assert choice.notes == [
        "max_f1 0.0175 (F1 1.00 on 10 positives), clipped to 0.05",
        "max_f1 0.985 (F1 1.00 on 10 positives), clipped to 0.95",
    ]


def test_inverted_bounds_are_rejected():
    truth = np.ones((4, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match="low < high"):
        MaxF1Thresholds(bounds=(0.9, 0.1))  # the schema refuses it (a 422 at the API)
    unchecked = MaxF1Thresholds.model_construct(bounds=(0.9, 0.1))
    with pytest.raises(ValueError, match=r"got \(0.9, 0.1\)"):
        pick_thresholds(unchecked, truth, truth * 0.5)


# --- target modes --------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
@pytest.mark.parametrize(("seed", "decimals"), [(4, None), (5, 2)])
def test_target_precision_matches_brute_force(target, seed, decimals):
    truth, scores = _label(seed, decimals=decimals)
    config = TargetPrecisionThresholds(target=target, **OPEN)
    choice = pick_thresholds(config, truth[:, None], scores[:, None])
    t, s = truth.tolist(), scores.tolist()

    cut = _ref_target_precision(t, s, target)
    assert cut is not None
    threshold = float(choice.thresholds[0])
    assert _predicted(s, threshold) == _predicted(s, cut)
    assert threshold == pytest.approx(_midway_below(scores, cut), abs=1e-7)
    tp, fp = _counts(t, s, threshold)
    assert choice.notes == [
        f"target_precision {threshold:.3g} (precision {tp / (tp + fp):.2f}, "
        f"recall {tp / sum(t):.2f} on {sum(t)} positives)"
    ]


def test_unreachable_precision_keeps_the_fallback():
    # The best-scored row is a negative, and every cut has precision <= 1/2.
    truth = np.array([[0], [1], [0], [1], [0]] * 4)
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]] * 4, dtype=np.float32)
    config = TargetPrecisionThresholds(target=0.8, min_positives=1, fallback=0.3)
    choice = pick_thresholds(config, truth, scores)
    assert choice.thresholds.tolist() == [np.float32(0.3)]
    assert choice.notes == [
        "target precision 0.8 unreachable (best 0.50); fallback 0.3"
    ]


@pytest.mark.parametrize("target", [0.3, 0.8, 1.0])
@pytest.mark.parametrize(("seed", "decimals"), [(6, None), (7, 1)])
def test_target_recall_matches_brute_force(target, seed, decimals):
    truth, scores = _label(seed, decimals=decimals)
    config = TargetRecallThresholds(target=target, **OPEN)
    choice = pick_thresholds(config, truth[:, None], scores[:, None])
    t, s = truth.tolist(), scores.tolist()

    cut = _ref_target_recall(t, s, target)
    threshold = float(choice.thresholds[0])
    assert _predicted(s, threshold) == _predicted(s, cut)
    assert threshold == pytest.approx(_midway_below(scores, cut), abs=1e-7)
    tp, fp = _counts(t, s, threshold)
    assert choice.notes == [
        f"target_recall {threshold:.3g} (recall {tp / sum(t):.2f}, "
        f"precision {tp / (tp + fp):.2f} on {sum(t)} positives)"
    ]


# --- fixed and shapes ----------------------------------------------------------------


def test_fixed_thresholds():
    truth = np.zeros((5, 3), dtype=np.uint8)
    choice = pick_thresholds(
        FixedThresholds(value=0.3), truth, truth.astype(np.float32)
    )
    assert choice.thresholds.dtype == np.float32
    np.testing.assert_array_equal(choice.thresholds, np.float32([0.3, 0.3, 0.3]))
    assert choice.notes == ["fixed at 0.3"] * 3


def test_several_labels_are_picked_independently():
    labels = [_label(seed) for seed in (10, 11, 12)]
    truth = np.stack([t for t, _ in labels], axis=1)
    scores = np.stack([s for _, s in labels], axis=1)
    choice = pick_thresholds(MaxF1Thresholds(**OPEN), truth, scores)
    assert choice.thresholds.dtype == np.float32 and len(choice.notes) == 3
    for label, (t, s) in enumerate(labels):
        alone = pick_thresholds(MaxF1Thresholds(**OPEN), t[:, None], s[:, None])
        assert choice.thresholds[label] == alone.thresholds[0]


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"got \(4, 2\) and \(4, 3\)"):
        pick_thresholds(MaxF1Thresholds(), np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"val_probs must be finite probabilities"):
        pick_thresholds(MaxF1Thresholds(), np.zeros((2, 1)), np.array([[0.5], [1.5]]))
