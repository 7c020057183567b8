"""The learning-rate range test on a small synthetic problem."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from workers.engine import lr_finder
from workers.engine.config import LRFinderConfig, TrainingConfig
from workers.engine.lr_finder import lr_find, rates, smooth, suggest
from workers.engine.trainer import TrainingStopped


def make_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x @ rng.normal(size=(8, 3)) > 0.5).astype(np.uint8)
    return x, y


def make_config(optimizer: str = "sgd", **train) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "model": {"type": "mlp", "hidden_sizes": [16], "dropout": 0.0},
            "train": {"batch_size": 16, "optimizer": {"type": optimizer}, **train},
            "imbalance": {"loss": {"type": "bce"}},
        }
    )


def test_rates_grow_exponentially_from_start_to_end():
    got = rates(LRFinderConfig(start_lr=1e-4, end_lr=1.0, steps=10))
    assert got[0] == 1e-4 and got[-1] == pytest.approx(1.0, rel=1e-12)
    ratios = [b / a for a, b in zip(got, got[1:], strict=False)]
    assert ratios == pytest.approx([10 ** (4 / 9)] * 9, rel=1e-12)


def test_smooth_is_a_bias_corrected_ema():
    # weight 0.5: averages 0.5, 1.25, 1.125; corrections 0.5, 0.75, 0.875.
    assert smooth([1.0, 2.0, 1.0], 0.5) == pytest.approx([1.0, 5 / 3, 9 / 7])


def test_suggest_takes_the_steepest_descent_before_the_minimum():
    lrs = [10.0**e for e in range(-6, 4)]  # equal steps in log lr
    losses = [1.0, 1.0, 0.99, 0.9, 0.6, 0.5, 0.45, 0.44, 0.8, 3.0]
    lr, note = suggest(lrs, losses)
    # Central differences per log step: -0.195 at 1e-3, -0.2 at 1e-2, -0.075 at 1e-1.
    assert lr == 1e-2
    assert note == (
        "suggested the rate of steepest loss descent, 0.01 (the smoothed loss was "
        "lowest at rate 10)"
    )


def test_suggest_gives_none_for_short_or_rising_curves():
    assert suggest([1e-3, 1e-2], [1.0, 0.5]) == (
        None,
        "no suggestion: only 2 steps were recorded, fewer than 5; lower "
        "lr_finder.start_lr",
    )
    lrs = [10.0**e for e in range(-6, 4)]
    rising = [0.5 + 0.1 * i for i in range(10)]
    assert suggest(lrs, rising) == (
        None,
        "no suggestion: the loss was lowest at step 1, within the first 1 steps; "
        "lower lr_finder.start_lr",
    )


def test_range_test_on_a_small_problem():
    x, y = make_data()
    lr_config = LRFinderConfig(start_lr=1e-5, end_lr=10.0, steps=120)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    python_state = random.getstate()

    result = lr_find(make_config(), lr_config, x, y)

    # The loss blows up before the end at rate 10 with plain SGD on this problem.
    assert 20 <= len(result.lrs) < lr_config.steps
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses)
    assert result.lrs == rates(lr_config)[: len(result.lrs)]
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:], strict=False))
    assert result.losses == smooth(result.raw_losses, lr_config.smoothing)
    assert all(math.isfinite(v) for v in result.losses + result.raw_losses)
    assert result.note.startswith(
        f"stopped at step {len(result.lrs)}: the smoothed loss exceeded 4 times its "
        "best; suggested the rate of steepest loss descent, "
    )
    assert result.suggested_lr is not None
    assert lr_config.start_lr <= result.suggested_lr <= lr_config.end_lr
    assert result.suggested_lr in result.lrs

    # Nothing left behind: every global RNG is where it was.
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    assert random.getstate() == python_state


def test_range_test_is_deterministic_and_cycles_through_epochs():
    x, y = make_data()
    # 13 micro-batches of 16 per epoch, windows of 2: 7 steps per epoch, 30 steps.
    lr_config = LRFinderConfig(start_lr=1e-6, end_lr=1e-3, steps=30)
    config = make_config("adam", accumulation_steps=2)
    first = lr_find(config, lr_config, x, y)
    second = lr_find(config, lr_config, x, y)
    assert len(first.lrs) == 30
    assert first.raw_losses == second.raw_losses
    assert first.note.startswith("ran all 30 steps; ")


def test_progress_is_reported_and_the_callbacks_can_stop_the_test(monkeypatch):
    class StopAfterThree:
        def __init__(self) -> None:
            self.progress = []

        def on_progress(self, progress):
            self.progress.append(progress)

        def should_stop(self):
            return len(self.progress) == 3

    monkeypatch.setattr(lr_finder, "PROGRESS_INTERVAL", 0.0)  # report every step
    x, y = make_data()
    callbacks = StopAfterThree()
    with pytest.raises(TrainingStopped, match="learning-rate test stopped at step 4"):
        lr_find(make_config(), LRFinderConfig(steps=20), x, y, callbacks)
    # 13 micro-batches per epoch: 20 steps span 2 epochs.
    assert [(p.step, p.steps_total, p.epochs) for p in callbacks.progress] == [
        (1, 20, 2),
        (2, 20, 2),
        (3, 20, 2),
    ]
