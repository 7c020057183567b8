"""The training loop: mini-batches by index from in-memory tensors, reported through
callbacks.

A step reads: forward, loss, backward, step, report. Batches are gathered with one
index tensor per step (``x[idx]``) rather than a per-row ``Dataset``: no Python object
per row, no collate, one memory copy per batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from workers.engine.config import TrainingConfig
from workers.engine.losses import build_loss
from workers.engine.metrics import macro_f1
from workers.engine.models import build_model


class TrainingStopped(Exception):
    """Raised when the callbacks asked the loop to stop (cancellation)."""


@dataclass(frozen=True)
class Progress:
    epoch: int  # 1-based epoch in progress
    epochs: int
    step: int  # optimizer steps taken so far, over all epochs
    steps_total: int
    loss: float | None  # mean per-sample loss of the epoch so far
    eta_seconds: float | None


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float  # mean per-sample loss over the epoch's rows
    val_loss: float
    val_macro_f1: float | None
    lr: float  # rate in effect at the epoch's first step
    seconds: float


class Callbacks(Protocol):
    def on_progress(self, progress: Progress) -> None: ...

    def on_epoch_end(self, record: EpochRecord) -> None: ...

    def should_stop(self) -> bool: ...


class NullCallbacks:
    def on_progress(self, progress: Progress) -> None:
        pass

    def on_epoch_end(self, record: EpochRecord) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass
class FitResult:
    model: nn.Module  # on the CPU, in eval mode
    history: list[EpochRecord] = field(default_factory=list)
    val_probs: np.ndarray | None = None  # [val_rows, n_labels]


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@torch.no_grad()
def predict_proba(
    model: nn.Module, features: torch.Tensor, batch_size: int = 65536
) -> torch.Tensor:
    """``features [rows, n_features] -> probabilities [rows, n_labels]`` (float32)."""
    model.eval()
    chunks = [
        torch.sigmoid(model(features[start : start + batch_size]).float())
        for start in range(0, features.shape[0], batch_size)
    ]
    return torch.cat(chunks) if chunks else features.new_zeros((0, 0))


def fit(
    config: TrainingConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    thresholds: np.ndarray,
    callbacks: Callbacks | None = None,
    progress_interval: float = 1.0,
) -> FitResult:
    """Train the configured model.

    ``x_* [rows, n_features]`` float32 (already scaled), ``y_* [rows, n_labels]`` {0,1}.
    ``thresholds [n_labels]`` are used for the per-epoch validation macro-F1.
    ``progress_interval`` bounds how often (seconds) ``on_progress`` is called.
    """
    callbacks = callbacks or NullCallbacks()
    train_cfg = config.train
    device = resolve_device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)
    generator = torch.Generator().manual_seed(train_cfg.seed)

    xt = torch.from_numpy(np.ascontiguousarray(x_train)).to(device)
    yt = torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.float32)).to(device)
    xv = torch.from_numpy(np.ascontiguousarray(x_val)).to(device)
    yv = torch.from_numpy(np.ascontiguousarray(y_val, dtype=np.float32)).to(device)
    rows, n_labels = yt.shape

    model = build_model(config.model, xt.shape[1], n_labels).to(device)
    loss_fn = build_loss(config.imbalance.loss)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )

    batch_size = min(train_cfg.batch_size, rows)
    steps_per_epoch = math.ceil(rows / batch_size)
    steps_total = steps_per_epoch * train_cfg.epochs
    result = FitResult(model=model)
    step = 0
    started = time.monotonic()
    last_report = started

    for epoch in range(1, train_cfg.epochs + 1):
        epoch_started = time.monotonic()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        # Summed on the device; one sync per report instead of one per step.
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0
        order = torch.randperm(rows, generator=generator).to(device)

        for start in range(0, rows, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = xt[idx], yt[idx]

            per_sample = loss_fn(model(xb), yb).mean(dim=1)  # [batch]
            loss = per_sample.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            loss_sum += per_sample.detach().sum(dtype=torch.float64)
            seen += idx.shape[0]
            step += 1
            now = time.monotonic()
            if now - last_report >= progress_interval:
                last_report = now
                if callbacks.should_stop():
                    raise TrainingStopped(f"stopped at epoch {epoch}, step {step}")
                eta = (now - started) / step * (steps_total - step)
                callbacks.on_progress(
                    Progress(epoch, train_cfg.epochs, step, steps_total,
                             float(loss_sum) / seen, eta)
                )

        train_loss = float(loss_sum) / seen
        val_loss, result.val_probs = _validate(model, loss_fn, xv, yv)
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_macro_f1=macro_f1(y_val, result.val_probs, thresholds),
            lr=lr,
            seconds=time.monotonic() - epoch_started,
        )
        result.history.append(record)
        callbacks.on_epoch_end(record)
        if callbacks.should_stop():
            raise TrainingStopped(f"stopped after epoch {epoch}")

    result.model = model.cpu().eval()
    return result


@torch.no_grad()
def _validate(
    model: nn.Module, loss_fn, xv: torch.Tensor, yv: torch.Tensor, chunk: int = 65536
) -> tuple[float, np.ndarray]:
    """Mean per-sample validation loss (from logits) and probabilities [rows, n_labels]."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=xv.device)
    probs = []
    for start in range(0, xv.shape[0], chunk):
        logits = model(xv[start : start + chunk]).float()
        total += loss_fn(logits, yv[start : start + chunk]).mean(dim=1).sum(dtype=torch.float64)
        probs.append(torch.sigmoid(logits))
    return float(total) / max(xv.shape[0], 1), torch.cat(probs).cpu().numpy()
