"""workers.engine.losses against plain float64 reference formulas.

The references below are written the obvious way, with ``torch.sigmoid`` and
``torch.log``, which is accurate for the moderate logits used here (|x| <= 4). The
module computes the same quantities from log-sigmoid; its own stability is tested
separately at logits of +-100.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from workers.engine.config import (
    AsymmetricLoss,
    BCELoss,
    FocalLoss,
    PosWeightConfig,
    WeightedBCELoss,
)
from workers.engine.errors import EngineError
from workers.engine.losses import (
    LossConfigError,
    bce,
    build_loss,
    describe_loss,
    pos_weights,
)

# Per-label training positives among 100 rows: common, rare, balanced, absent.
POSITIVES = np.array([10, 1, 50, 0])
ROWS = 100


def _batch(seed: int = 0, rows: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits [rows, 4]`` in (-4, 4) and 0/1 ``targets [rows, 4]``, float64."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.rand(rows, 4, generator=gen, dtype=torch.float64) * 8 - 4
    targets = (torch.rand(rows, 4, generator=gen) < 0.4).double()
    return logits, targets


# --- plain references --------------------------------------------------------------


def _ref_bce(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None):
    p = torch.sigmoid(x)
    w = torch.ones(x.shape[-1], dtype=x.dtype) if w is None else w
    return -(w * y * torch.log(p) + (1 - y) * torch.log(1 - p))


def _ref_focal(x, y, gamma, alpha=None, w=None):
    p = torch.sigmoid(x)
    p_t = torch.where(y == 1, p, 1 - p)
    loss = (1 - p_t) ** gamma * _ref_bce(x, y, w)
    if alpha is not None:
        loss = torch.where(y == 1, alpha, 1 - alpha) * loss
    return loss


def _ref_asl(x, y, gamma_pos, gamma_neg, clip):
    p = torch.sigmoid(x)
    p_m = torch.clamp(p - clip, min=0)
    positive = -((1 - p) ** gamma_pos) * torch.log(p)
    negative = -(p_m**gamma_neg) * torch.log(1 - p_m)
    return y * positive + (1 - y) * negative


def _grad(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x, y).sum(), x)
    return grad


# --- pos_weight ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        # neg / pos = 90/10, 99/1 (capped at 50), 50/50; no positives -> 1.
        ("neg_pos_ratio", [9.0, 50.0, 1.0, 1.0]),
        ("sqrt_neg_pos", [3.0, math.sqrt(99.0), 1.0, 1.0]),
        # most positives (50) / positives.
        ("inverse_frequency", [5.0, 50.0, 1.0, 1.0]),
        (
            "effective_number",
            [
                (1 - 0.99**90) / (1 - 0.99**10),
                50.0,  # (1 - 0.99**99) / (1 - 0.99) = 63.03, capped
                1.0,
                1.0,
            ],
        ),
    ],
)
def test_pos_weight_strategies_match_hand_computation(strategy, expected):
    config = PosWeightConfig(strategy=strategy, beta=0.99, max_value=50.0)
    weights = pos_weights(config, POSITIVES, ROWS)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-6)


def test_pos_weight_cap_and_floor():
    # sqrt(99) = 9.95 is capped at 4; a label positive in all 100 rows has ratio 0,
    # floored at 1 / max_value so its positive term still counts.
    config = PosWeightConfig(strategy="sqrt_neg_pos", max_value=4.0)
    weights = pos_weights(config, np.array([1, 100, 25]), ROWS)
    np.testing.assert_allclose(weights, [4.0, 0.25, math.sqrt(3.0)], rtol=1e-6)


def test_effective_number_large_counts_stay_finite():
    # beta^n underflows to 0 for n ~ 1e6; the ratio tends to 1 / (1 - beta^pos).
    config = PosWeightConfig(strategy="effective_number", beta=0.999, max_value=1e9)
    weights = pos_weights(config, np.array([10, 500_000]), 1_000_000)
    np.testing.assert_allclose(
        weights, [1 / (1 - 0.999**10), (1 - 0.999**500_000) / (1 - 0.999**500_000)]
    )


def test_explicit_pos_weights_are_capped_and_zero_positive_gets_one():
    config = PosWeightConfig(strategy=[2.0, 0.5, 80.0, 7.0], max_value=50.0)
    np.testing.assert_array_equal(
        pos_weights(config, POSITIVES, ROWS), np.float32([2.0, 0.5, 50.0, 1.0])
    )


def test_explicit_pos_weights_of_wrong_length_name_both_lengths():
    config = WeightedBCELoss(pos_weight=PosWeightConfig(strategy=[1.0, 2.0, 3.0]))
    with pytest.raises(LossConfigError) as info:
        build_loss(config, POSITIVES, ROWS)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EngineError)
    assert info.value.code == "loss.label_count_mismatch"
    assert info.value.message == (
        "imbalance.loss.pos_weight.strategy has 3 values but the dataset has 4 labels; "
        "give one value per label."
    )


def test_malformed_counts_are_rejected():
    config = PosWeightConfig()
    with pytest.raises(ValueError, match=r"positives must lie in \[0, rows=100\]"):
        pos_weights(config, np.array([10, 101]), ROWS)
    with pytest.raises(ValueError, match="positives must be 1-D"):
        pos_weights(config, np.zeros((2, 2)), ROWS)


# --- values and gradients against the references --------------------------------------


def test_bce_matches_reference_and_analytic_gradient():
    x, y = _batch()
    loss = build_loss(BCELoss(), POSITIVES, ROWS)
    torch.testing.assert_close(loss(x, y), _ref_bce(x, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_grad(loss, x, y), torch.sigmoid(x) - y)


def test_weighted_bce_matches_reference_and_analytic_gradient():
    x, y = _batch(1)
    config = WeightedBCELoss(pos_weight=PosWeightConfig(strategy="neg_pos_ratio"))
    loss = build_loss(config, POSITIVES, ROWS)
    w = torch.tensor([9.0, 50.0, 1.0, 1.0], dtype=torch.float64)

    torch.testing.assert_close(loss(x, y), _ref_bce(x, y, w), rtol=1e-12, atol=1e-12)
    # d/dx -(w y log p + (1 - y) log(1 - p)) = (1 - y) p - w y (1 - p).
    p = torch.sigmoid(x)
    torch.testing.assert_close(_grad(loss, x, y), (1 - y) * p - w * y * (1 - p))


@pytest.mark.parametrize(
    ("config", "alpha", "w"),
    [
        (FocalLoss(gamma=2.0), None, None),
        (FocalLoss(gamma=0.5, alpha=0.25), 0.25, None),
        (
            FocalLoss(gamma=3.0, alpha=[0.1, 0.9, 0.5, 0.3]),
            torch.tensor([0.1, 0.9, 0.5, 0.3], dtype=torch.float64),
            None,
        ),
        (
            FocalLoss(
                gamma=1.5,
                alpha=0.75,
                pos_weight=PosWeightConfig(strategy="sqrt_neg_pos"),
            ),
            0.75,
            torch.tensor([3.0, math.sqrt(99.0), 1.0, 1.0], dtype=torch.float64),
        ),
    ],
)
def test_focal_matches_reference_values_and_gradients(config, alpha, w):
    x, y = _batch(2)
    loss = build_loss(config, POSITIVES, ROWS)

    def reference(x, y):
        return _ref_focal(x, y, config.gamma, alpha, w)

    torch.testing.assert_close(loss(x, y), reference(x, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        _grad(loss, x, y), _grad(reference, x, y), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_without_focusing_or_balancing_is_plain_bce_exactly(dtype):
    x, y = _batch(3)
    x, y = x.to(dtype), y.to(dtype)
    loss = build_loss(FocalLoss(gamma=0.0, alpha=None), POSITIVES, ROWS)
    assert torch.equal(loss(x, y), bce(x, y))
    assert torch.equal(_grad(loss, x, y), _grad(bce, x, y))


@pytest.mark.parametrize(
    ("gamma_pos", "gamma_neg", "clip"),
    [(0.0, 4.0, 0.05), (1.0, 4.0, 0.0), (2.0, 1.0, 0.2), (0.0, 0.0, 0.1)],
)
def test_asymmetric_matches_reference_values_and_gradients(gamma_pos, gamma_neg, clip):
    x, y = _batch(4, rows=64)
    config = AsymmetricLoss(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip)
    loss = build_loss(config, POSITIVES, ROWS)

    def reference(x, y):
        return _ref_asl(x, y, gamma_pos, gamma_neg, clip)

    torch.testing.assert_close(loss(x, y), reference(x, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        _grad(loss, x, y), _grad(reference, x, y), rtol=1e-10, atol=1e-12
    )


def test_asymmetric_discards_easy_negatives_below_the_margin():
    # p = sigmoid(x) <= clip = 0.2 for x <= -1.39: the negative term and its gradient
    # are exactly 0; just above the margin both are not.
    x = torch.tensor([[-3.0, -1.5, -1.0, 0.5]], dtype=torch.float64)
    y = torch.zeros_like(x)
    loss = build_loss(AsymmetricLoss(gamma_neg=2.0, clip=0.2), POSITIVES, ROWS)
    values, grad = loss(x, y), _grad(loss, x, y)
    assert values[0, :2].tolist() == [0.0, 0.0] and grad[0, :2].tolist() == [0.0, 0.0]
    assert (values[0, 2:] > 0).all() and (grad[0, 2:] > 0).all()


def test_asymmetric_without_focusing_or_margin_is_bce():
    x, y = _batch(5)
    loss = build_loss(AsymmetricLoss(gamma_pos=0, gamma_neg=0, clip=0), POSITIVES, ROWS)
    torch.testing.assert_close(loss(x, y), bce(x, y), rtol=1e-12, atol=1e-12)


ALL_LOSSES = [
    BCELoss(),
    WeightedBCELoss(pos_weight=PosWeightConfig(strategy="neg_pos_ratio")),
    FocalLoss(gamma=2.0, alpha=0.25),
    FocalLoss(gamma=0.5, pos_weight=PosWeightConfig()),
    AsymmetricLoss(),
    AsymmetricLoss(gamma_pos=1.0, gamma_neg=0.5, clip=0.0),
    AsymmetricLoss(gamma_pos=0.5, gamma_neg=0.5, clip=0.3),
]


@pytest.mark.parametrize("config", ALL_LOSSES, ids=lambda c: repr(c))
def test_gradcheck(config):
    x, y = _batch(6, rows=3)
    loss = build_loss(config, POSITIVES, ROWS)
    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", ALL_LOSSES, ids=lambda c: repr(c))
def test_finite_at_saturated_logits(config, dtype):
    # Every combination of a confident right and a confident wrong logit per label.
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0]] * 2, dtype=dtype)
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    loss = build_loss(config, POSITIVES, ROWS)
    values, grad = loss(x, y), _grad(loss, x, y)
    assert values.dtype == dtype and torch.isfinite(values).all()
    assert torch.isfinite(grad).all()


def test_confidently_wrong_positive_costs_its_logit():
    # log(1 + e^100) = 100 to float precision; a sigmoid-then-log(p + eps) loss would
    # report -log(eps) instead.
    x = torch.tensor([[-100.0, -100.0, -100.0, -100.0]])
    y = torch.ones_like(x)
    plain = build_loss(BCELoss(), POSITIVES, ROWS)(x, y)
    torch.testing.assert_close(plain, torch.full_like(x, 100.0))
    weighted = build_loss(
        WeightedBCELoss(pos_weight=PosWeightConfig(strategy="neg_pos_ratio")),
        POSITIVES,
        ROWS,
    )(x, y)
    torch.testing.assert_close(weighted, torch.tensor([[900.0, 5000.0, 100.0, 100.0]]))


def test_per_label_vectors_follow_the_logits_dtype_and_device():
    config = FocalLoss(
        gamma=1.0, alpha=[0.1, 0.2, 0.3, 0.4], pos_weight=PosWeightConfig()
    )
    loss = build_loss(config, POSITIVES, ROWS)
    x, y = _batch(7)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            out = loss(x.to(device, dtype), y.to(device, dtype))
            assert out.dtype == dtype and out.device.type == device
            torch.testing.assert_close(
                out.cpu().double(),
                loss(x, y),
                rtol=1e-5 if dtype == torch.float32 else 1e-12,
                atol=1e-6 if dtype == torch.float32 else 1e-12,
            )


def test_logits_with_another_label_count_are_rejected():
    loss = build_loss(WeightedBCELoss(), POSITIVES, ROWS)
    with pytest.raises(
        ValueError, match="logits have 3 labels but the loss was built for 4"
    ):
        loss(torch.zeros(2, 3), torch.zeros(2, 3))


def test_focal_alpha_checks():
    with pytest.raises(LossConfigError) as info:
        build_loss(FocalLoss(alpha=[0.5, 0.5]), POSITIVES, ROWS)
    assert info.value.code == "loss.label_count_mismatch"
    assert info.value.message == (
        "imbalance.loss.alpha has 2 values but the dataset has 4 labels; "
        "give one value per label."
    )
    # The schema refuses a scalar alpha outside [0, 1]; the builder guards it again
    # for configs built without validation.
    with pytest.raises(ValidationError):
        FocalLoss(alpha=1.5)
    with pytest.raises(LossConfigError) as info:
        build_loss(FocalLoss.model_construct(alpha=1.5, gamma=2.0), POSITIVES, ROWS)
    assert info.value.code == "loss.alpha_out_of_range"
    assert info.value.message == "imbalance.loss.alpha is 1.5 but must lie in [0, 1]."


def test_describe_loss_is_json_ready_and_resolved():
    weighted = describe_loss(
        WeightedBCELoss(pos_weight=PosWeightConfig(strategy="neg_pos_ratio")),
        POSITIVES,
        ROWS,
    )
    assert json.loads(json.dumps(weighted)) == weighted
    assert weighted == {
        "type": "weighted_bce",
        "pos_weight_strategy": "neg_pos_ratio",
        "pos_weight": [9.0, 50.0, 1.0, 1.0],
        "pos_weight_uncapped": [9.0, 99.0, 1.0, None],
        "pos_weight_max_value": 50.0,
    }

    focal = describe_loss(FocalLoss(gamma=2.0, alpha=0.25), POSITIVES, ROWS)
    assert focal == {"type": "focal", "gamma": 2.0, "alpha": [0.25] * 4}
    explicit = describe_loss(
        FocalLoss(
            alpha=None, pos_weight=PosWeightConfig(strategy=[2.0, 3.0, 4.0, 5.0])
        ),
        POSITIVES,
        ROWS,
    )
    assert explicit["pos_weight_strategy"] == "explicit"
    assert explicit["pos_weight"] == [2.0, 3.0, 4.0, 1.0]
    assert explicit["pos_weight_uncapped"] == [2.0, 3.0, 4.0, 5.0]
    assert explicit["alpha"] is None
    assert describe_loss(BCELoss(), POSITIVES, ROWS) == {"type": "bce"}
    assert describe_loss(AsymmetricLoss(), POSITIVES, ROWS) == {
        "type": "asymmetric",
        "gamma_pos": 0.0,
        "gamma_neg": 4.0,
        "clip": 0.05,
    }
