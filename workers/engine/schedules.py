"""Learning-rate schedules as a rate per optimizer step.

The trainer asks for the rate before every optimizer step (skipped steps included, so
the schedule keeps its clock) and writes it into the optimizer; there is no torch
scheduler object. Shapes are pure functions of the step, tested against hand-computed
rates; only ``plateau`` has state, because it reacts to validation scores.

Clock conventions (``step`` is 0-based, ``epoch`` is 0-based):

* warmup: ``W = round(warmup_epochs * steps_per_epoch)`` steps (at least 1 when
  warmup_epochs > 0); step ``s < W`` runs at ``(s + 1) / W`` of the scheduled rate, so
  the first step is not wasted at rate 0 and step ``W - 1`` reaches the full rate.
* constant: the base rate.
* step: ``gamma ** (epoch // step_size)``, counted in epochs from the start of
  training (warmup does not shift it).
* cosine: from the base rate to ``min_lr`` over the steps after warmup; the last step
  runs at ``min_lr``.
* one_cycle: torch's OneCycleLR (cosine annealing, div_factor 25, final_div_factor
  1e4) over the steps after warmup: from ``lr / 25`` up to ``lr`` in the first
  ``pct_start`` of the steps, then down to ``lr / 25 / 1e4``.
* plateau: ReduceLROnPlateau on the early-stopping metric, evaluated at epoch ends:
  after more than ``patience`` epochs without an improvement larger than
  ``early_stopping.min_delta`` the rate is multiplied by ``factor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from workers.engine.config import ScheduleConfig

ONE_CYCLE_DIV_FACTOR = 25.0
ONE_CYCLE_FINAL_DIV_FACTOR = 1e4


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    if warmup_epochs <= 0:
        return 0
    return max(1, round(warmup_epochs * steps_per_epoch))


def warmup_factor(step: int, warmup: int) -> float:
    return 1.0 if step >= warmup else (step + 1) / warmup


def step_decay_factor(epoch: int, step_size: int, gamma: float) -> float:
    return gamma ** (epoch // step_size)


def cosine_factor(step: int, span: int, floor: float) -> float:
    """``floor`` at the last of ``span`` steps, 1 at the first; ``floor`` is
    min_lr / lr, clamped into [0, 1]."""
    progress = min(step / max(span - 1, 1), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def one_cycle_factor(step: int, span: int, pct_start: float) -> float:
    """torch's OneCycleLR (anneal_strategy='cos') as a share of the peak rate."""
    initial = 1.0 / ONE_CYCLE_DIV_FACTOR
    final = initial / ONE_CYCLE_FINAL_DIV_FACTOR
    # Phase boundaries are floats, as in torch: the peak is at pct_start * span - 1.
    peak_step = pct_start * span - 1
    last_step = span - 1
    step = min(step, last_step)
    if step <= peak_step:
        start_step, end_step, start, end = 0.0, peak_step, initial, 1.0
    else:
        start_step, end_step, start, end = peak_step, last_step, 1.0, final
    pct = (
        (step - start_step) / (end_step - start_step) if end_step > start_step else 1.0
    )
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def shape_factor(
    config: ScheduleConfig,
    step: int,
    epoch: int,
    *,
    steps_per_epoch: int,
    total_steps: int,
    floor: float,
) -> float:
    """The schedule's share of the base rate at ``step`` (warmup included), without
    the plateau reductions. ``floor`` is min_lr / lr (cosine only)."""
    warmup = warmup_steps(config.warmup_epochs, steps_per_epoch)
    after = max(step - warmup, 0)
    span = max(total_steps - warmup, 1)
    if config.type == "step":
        shape = step_decay_factor(epoch, config.step_size, config.gamma)
    elif config.type == "cosine":
        shape = cosine_factor(after, span, floor)
    elif config.type == "one_cycle":
        shape = one_cycle_factor(after, span, config.pct_start)
    else:  # constant, plateau
        shape = 1.0
    return warmup_factor(step, warmup) * shape


@dataclass
class Plateau:
    """ReduceLROnPlateau state: ``update`` once per epoch with the metric."""

    mode: Literal["max", "min"]
    factor: float
    patience: int
    min_delta: float
    best: float | None = None
    bad_epochs: int = 0
    scale: float = 1.0

    def update(self, score: float | None) -> None:
        # A missing score (macro-F1 undefined) is never an improvement.
        if score is not None and self._improves(score):
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0

    def _improves(self, score: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return score > self.best + self.min_delta
        return score < self.best - self.min_delta


class Schedule:
    """The rate for every optimizer step of one run."""

    def __init__(
        self,
        config: ScheduleConfig,
        *,
        steps_per_epoch: int,
        epochs: int,
        metric_mode: Literal["max", "min"],
        min_delta: float,
    ) -> None:
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * epochs
        self.plateau = Plateau(metric_mode, config.factor, config.patience, min_delta)

    def rate(self, step: int, epoch: int, base_lr: float) -> float:
        """Rate of optimizer step ``step`` (0-based) in ``epoch`` (0-based)."""
        floor = min(self.config.min_lr / base_lr, 1.0)
        share = shape_factor(
            self.config,
            step,
            epoch,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            floor=floor,
        )
        return base_lr * share * self.plateau.scale

    def epoch_end(self, score: float | None) -> None:
        if self.config.type == "plateau":
            self.plateau.update(score)

    def state_dict(self) -> dict[str, Any]:
        plateau = self.plateau
        return {
            "best": plateau.best,
            "bad_epochs": plateau.bad_epochs,
            "scale": plateau.scale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau.best = state["best"]
        self.plateau.bad_epochs = state["bad_epochs"]
        self.plateau.scale = state["scale"]
