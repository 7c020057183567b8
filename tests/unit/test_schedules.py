"""Learning-rate schedules against hand-computed rates and torch's own schedulers."""

from __future__ import annotations

import math

import pytest
import torch

from workers.engine.config import ScheduleConfig
from workers.engine.schedules import (
    Plateau,
    Schedule,
    one_cycle_factor,
    shape_factor,
    warmup_steps,
)


def rates(config: ScheduleConfig, steps_per_epoch: int, epochs: int, lr: float = 1.0):
    schedule = Schedule(
        config,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        metric_mode="max",
        min_delta=0.0,
    )
    return [
        schedule.rate(step, step // steps_per_epoch, lr)
        for step in range(steps_per_epoch * epochs)
    ]


def test_constant_with_warmup_rises_linearly_then_holds():
    config = ScheduleConfig(type="constant", warmup_epochs=1.0)
    got = rates(config, steps_per_epoch=4, epochs=2, lr=0.2)
    assert got == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2], abs=1e-15)


def test_constant_without_warmup_is_the_base_rate():
    assert rates(ScheduleConfig(), steps_per_epoch=3, epochs=2, lr=0.3) == [0.3] * 6


def test_warmup_steps_round_and_never_vanish():
    assert warmup_steps(0.0, 10) == 0
    assert warmup_steps(0.5, 10) == 5
    assert warmup_steps(0.01, 10) == 1  # any warmup is at least one step
    assert warmup_steps(2.5, 4) == 10


def test_step_decays_every_step_size_epochs_counted_from_the_start():
    config = ScheduleConfig(type="step", step_size=2, gamma=0.1, warmup_epochs=1.0)
    got = rates(config, steps_per_epoch=3, epochs=5)
    expected = [1 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0]  # epochs 0-1, warmup in epoch 0
    expected += [0.1] * 6  # epochs 2-3
    expected += [0.01] * 3  # epoch 4
    assert got == pytest.approx(expected, rel=1e-12)


def test_cosine_reaches_min_lr_on_the_last_step_after_warmup():
    # 10 steps, 3 of warmup, 7 of cosine: progress = (step - 3) / 6.
    config = ScheduleConfig(type="cosine", min_lr=0.1, warmup_epochs=0.6)
    got = rates(config, steps_per_epoch=5, epochs=2)
    assert got[:4] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0], rel=1e-12)
    assert got[5] == pytest.approx(0.775, rel=1e-12)  # cos(pi/3) = 0.5
    assert got[7] == pytest.approx(0.325, rel=1e-12)  # cos(2pi/3) = -0.5
    assert got[9] == pytest.approx(0.1, rel=1e-12)
    assert all(a >= b for a, b in zip(got[3:], got[4:], strict=False))


def test_cosine_floor_is_absolute_when_the_base_rate_changes():
    config = ScheduleConfig(type="cosine", min_lr=0.01)
    schedule = Schedule(
        config, steps_per_epoch=5, epochs=1, metric_mode="max", min_delta=0.0
    )
    assert schedule.rate(4, 0, 0.1) == pytest.approx(0.01, rel=1e-12)
    # A rollback halved the base rate: the floor stays at min_lr.
    assert schedule.rate(4, 0, 0.05) == pytest.approx(0.01, rel=1e-12)
    # A base rate under the floor stays constant.
    assert schedule.rate(4, 0, 0.005) == pytest.approx(0.005, rel=1e-12)


@pytest.mark.parametrize(
    "total,pct_start", [(20, 0.3), (7, 0.25), (100, 0.5), (3, 0.1)]
)
def test_one_cycle_matches_torch(total, pct_start):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=2.0,
        total_steps=total,
        pct_start=pct_start,
        anneal_strategy="cos",
        cycle_momentum=False,
    )
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torch_schedule.step()

    got = [2.0 * one_cycle_factor(step, total, pct_start) for step in range(total)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_one_cycle_hand_values():
    # 20 steps, pct_start 0.3: rises from lr/25 at step 0 to lr at step 5 (0.3*20 - 1),
    # ends at lr/25/1e4 at step 19.
    assert one_cycle_factor(0, 20, 0.3) == pytest.approx(0.04, rel=1e-12)
    assert one_cycle_factor(5, 20, 0.3) == pytest.approx(1.0, rel=1e-12)
    assert one_cycle_factor(19, 20, 0.3) == pytest.approx(4e-6, rel=1e-12)
    # Step 2 is 2/5 of the way up: cosine interpolation from 0.04 to 1.
    mid = 1.0 + (0.04 - 1.0) / 2 * (math.cos(math.pi * 2 / 5) + 1)
    assert one_cycle_factor(2, 20, 0.3) == pytest.approx(mid, rel=1e-12)


def test_one_cycle_runs_after_warmup_and_holds_its_last_value_past_the_end():
    config = ScheduleConfig(type="one_cycle", pct_start=0.3, warmup_epochs=0.5)
    # 4 steps per epoch, 3 epochs: 2 warmup steps, then one cycle over 10 steps.
    kwargs = {"steps_per_epoch": 4, "total_steps": 12, "floor": 0.0}
    assert shape_factor(config, 0, 0, **kwargs) == pytest.approx(0.5 * 0.04)
    assert shape_factor(config, 1, 0, **kwargs) == pytest.approx(0.04)
    for step in range(2, 12):
        expected = one_cycle_factor(step - 2, 10, 0.3)
        assert shape_factor(config, step, step // 4, **kwargs) == pytest.approx(
            expected
        )
    # An epoch longer than planned must not index past the cycle.
    assert shape_factor(config, 15, 3, **kwargs) == pytest.approx(4e-6)


def test_plateau_matches_torch_reduce_lr_on_plateau():
    scores = [0.1, 0.2, 0.2, 0.15, 0.2, 0.3, 0.3, 0.29, 0.31, 0.31, 0.2, 0.2, 0.2]
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=0.5,
        patience=1,
        threshold=0.005,
        threshold_mode="abs",
    )
    plateau = Plateau("max", factor=0.5, patience=1, min_delta=0.005)
    for score in scores:
        reference.step(score)
        plateau.update(score)
        assert plateau.scale == optimizer.param_groups[0]["lr"]
    assert plateau.scale == 0.0625


def test_plateau_minimizes_val_loss_and_a_missing_score_is_no_improvement():
    plateau = Plateau("min", factor=0.1, patience=0, min_delta=0.0)
    plateau.update(1.0)
    assert (plateau.best, plateau.scale) == (1.0, 1.0)
    plateau.update(0.9)
    assert (plateau.best, plateau.scale) == (0.9, 1.0)
    plateau.update(None)
    assert plateau.scale == pytest.approx(0.1)
    plateau.update(0.95)
    assert plateau.scale == pytest.approx(0.01)


def test_schedule_applies_plateau_only_for_its_type_and_round_trips_state():
    config = ScheduleConfig(type="plateau", factor=0.5, patience=0, warmup_epochs=0.5)
    schedule = Schedule(
        config, steps_per_epoch=2, epochs=4, metric_mode="max", min_delta=0.0
    )
    assert schedule.rate(0, 0, 1.0) == 1.0  # warmup of one step: (0 + 1) / 1
    schedule.epoch_end(0.5)
    schedule.epoch_end(0.4)
    assert schedule.rate(4, 2, 1.0) == 0.5

    copy = Schedule(config, steps_per_epoch=2, epochs=4, metric_mode="max", min_delta=0)
    copy.load_state_dict(schedule.state_dict())
    assert copy.state_dict() == {"best": 0.5, "bad_epochs": 0, "scale": 0.5}

    constant = Schedule(
        ScheduleConfig(), steps_per_epoch=2, epochs=4, metric_mode="max", min_delta=0
    )
    constant.epoch_end(0.5)
    constant.epoch_end(0.1)
    assert constant.rate(4, 2, 1.0) == 1.0
