"""Learning-rate range test: train briefly while the rate grows exponentially and
watch where the loss falls fastest.

The test trains a fresh model exactly as ``fit`` would (same model, loss, sampler,
optimizer, accumulation windows, precision and clipping) but sets the rate of step
``i`` to ``start_lr * (end_lr / start_lr) ** (i / (steps - 1))``, cycling through
epochs of the data as needed. The loss recorded for a step is the window's mean
per-sample training loss, measured before that step's update; it is smoothed with a
bias-corrected exponential moving average (weight ``smoothing`` on the newest loss).
The test stops early once the smoothed loss exceeds 4 times its best, or a loss or
gradient is NaN or infinite (that step is not recorded).

Suggestion rule: the rate at the steepest descent of the smoothed loss against
log(rate), ``argmin(d loss / d log lr)``, searched from the end of the first
``SKIP_START_SHARE`` of the recorded steps up to the minimum of the smoothed loss.
Where the loss falls fastest the rate is large enough to make progress and still below
where it stops helping; no further division is applied. The first steps are skipped
because the EMA has not settled there: its bias correction makes the first values
follow single noisy losses, whose jumps would pass for the steepest descent. There is
no suggestion when fewer than ``MIN_POINTS`` steps were recorded or the loss reached
its minimum within the skipped steps.

The model is thrown away afterwards and every RNG the test draws from is restored, so
a later ``fit`` with the same seed is unaffected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm

from workers.engine.checkpoint import capture_rng, restore_rng
from workers.engine.config import LRFinderConfig, TrainConfig, TrainingConfig
from workers.engine.samplers import Sampler, build_sampler
from workers.engine.trainer import (
    Callbacks,
    NullCallbacks,
    Progress,
    TrainingStopped,
    Window,
    accumulate_window,
    as_tensor,
    batch_norm_layers,
    build_optimizer,
    build_parts,
    plan_windows,
    resolve_precision,
)

EXPLODE_FACTOR = 4.0  # stop once the smoothed loss is this many times its best
MIN_POINTS = 5  # fewer recorded steps than this give no suggestion
SKIP_START_SHARE = 0.1  # share of the recorded steps left out of the slope search
PROGRESS_INTERVAL = 1.0  # seconds between on_progress calls


@dataclass(frozen=True)
class LRFinderResult:
    lrs: list[float]  # rate of each recorded step, increasing
    losses: list[float]  # smoothed loss at each rate
    raw_losses: list[float]  # mean per-sample training loss of each step
    suggested_lr: float | None
    note: str  # how the test ended and why the suggestion is what it is


def lr_find(
    config: TrainingConfig,
    lr_config: LRFinderConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    callbacks: Callbacks | None = None,
) -> LRFinderResult:
    """Run the range test on ``x_train [rows, n_features]`` (already scaled) and
    ``y_train [rows, n_labels]`` {0,1}."""
    callbacks = callbacks or NullCallbacks()
    saved_rng = capture_rng()
    try:
        raw, stop_reason = _sweep(config, lr_config, x_train, y_train, callbacks)
    finally:
        restore_rng(saved_rng)

    lrs = rates(lr_config)[: len(raw)]
    smoothed = smooth(raw, lr_config.smoothing)
    suggested, why = suggest(lrs, smoothed)
    return LRFinderResult(lrs, smoothed, raw, suggested, f"{stop_reason}; {why}.")


def rates(lr_config: LRFinderConfig) -> list[float]:
    """The exponential rate of every step, ``start_lr`` to ``end_lr`` inclusive."""
    ratio = lr_config.end_lr / lr_config.start_lr
    last = lr_config.steps - 1
    return [lr_config.start_lr * ratio ** (i / last) for i in range(lr_config.steps)]


class _Ema:
    """Bias-corrected EMA: without the correction the first values lean toward 0."""

    def __init__(self, weight: float) -> None:
        self.weight, self.average, self.count = weight, 0.0, 0

    def add(self, value: float) -> float:
        self.count += 1
        self.average = self.weight * value + (1.0 - self.weight) * self.average
        return self.average / (1.0 - (1.0 - self.weight) ** self.count)


def smooth(losses: list[float], weight: float) -> list[float]:
    ema = _Ema(weight)
    return [ema.add(loss) for loss in losses]


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, str]:
    """The suggestion rule of the module docstring, with the reason as a sentence."""
    if len(smoothed) < MIN_POINTS:
        return None, (
            f"no suggestion: only {len(smoothed)} steps were recorded, fewer than "
            f"{MIN_POINTS}; lower lr_finder.start_lr"
        )
    skip = max(1, round(SKIP_START_SHARE * len(smoothed)))
    lowest = int(np.argmin(smoothed))
    if lowest <= skip:
        return None, (
            f"no suggestion: the loss was lowest at step {lowest + 1}, within the "
            f"first {skip} steps; lower lr_finder.start_lr"
        )
    slopes = np.gradient(np.asarray(smoothed), np.log(lrs))
    steepest = skip + int(np.argmin(slopes[skip : lowest + 1]))
    return lrs[steepest], (
        f"suggested the rate of steepest loss descent, {lrs[steepest]:.3g} "
        f"(the smoothed loss was lowest at rate {lrs[lowest]:.3g})"
    )


def _sweep(
    config: TrainingConfig,
    lr_config: LRFinderConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    callbacks: Callbacks,
) -> tuple[list[float], str]:
    """Train through the rates; returns the raw losses and why the sweep ended."""
    train = config.train
    imbalance, device, model, loss_fn = build_parts(config, x_train, y_train)
    precision = resolve_precision(train.mixed_precision, device)
    scaler = precision.make_scaler()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(train, params)
    sampler = build_sampler(imbalance.sampler, np.asarray(y_train), train.seed)
    xt, yt = as_tensor(x_train, model, device), as_tensor(y_train, model, device)
    windows = _Windows(sampler, train, device, lr_config.steps, model)
    model.train()

    schedule = rates(lr_config)
    raw: list[float] = []
    ema, best = _Ema(lr_config.smoothing), math.inf
    started = last_report = time.monotonic()
    for epoch, order, window in windows:
        for group in optimizer.param_groups:
            group["lr"] = schedule[len(raw)]
        window_loss = accumulate_window(
            model, loss_fn, xt, yt, order, window, precision, scaler
        )
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = get_total_norm([p.grad for p in params if p.grad is not None])
        loss_sum, norm_value = torch.stack([window_loss, norm.double()]).tolist()
        loss = loss_sum / (window[-1][1] - window[0][0])
        if not (math.isfinite(loss) and math.isfinite(norm_value)):
            return (
                raw,
                f"stopped at step {len(raw) + 1}: the loss or gradient was not finite",
            )

        if train.grad_clip_norm is not None:
            clip_grads_with_norm_(params, train.grad_clip_norm, norm)
        optimizer.step()
        if scaler is not None:
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        raw.append(loss)

        current = ema.add(loss)
        best = min(best, current)
        if current > EXPLODE_FACTOR * best:
            return raw, (
                f"stopped at step {len(raw)}: the smoothed loss exceeded "
                f"{EXPLODE_FACTOR:g} times its best"
            )
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            if callbacks.should_stop():
                raise TrainingStopped(f"learning-rate test stopped at step {len(raw)}")
            eta = (now - started) / len(raw) * (lr_config.steps - len(raw))
            callbacks.on_progress(
                Progress(epoch, windows.epochs, len(raw), lr_config.steps, current, eta)
            )
    return raw, f"ran all {len(raw)} steps"


class _Windows:
    """``(epoch, order, window)`` for ``steps`` optimizer steps, epoch after epoch."""

    def __init__(
        self,
        sampler: Sampler,
        train: TrainConfig,
        device: torch.device,
        steps: int,
        model: nn.Module,
    ) -> None:
        self.sampler, self.device, self.steps = sampler, device, steps
        self.plan = partial(
            plan_windows,
            batch_size=train.batch_size,
            accumulation=train.accumulation_steps,
            merge_single=bool(batch_norm_layers(model)),
        )
        self.epochs = math.ceil(steps / len(self.plan(sampler.rows_per_epoch)))

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, Window]]:
        taken, epoch = 0, 0
        while True:
            epoch += 1
            order = torch.from_numpy(self.sampler.epoch_order(epoch)).to(self.device)
            for window in self.plan(order.shape[0]):
                yield epoch, order, window
                taken += 1
                if taken == self.steps:
                    return
