"""Losses on logits, built by name from ``imbalance.loss``.

Every loss returns the element-wise term ``[batch, n_labels]``; the trainer reduces it
(mean over labels per sample, then a sample-weighted sum), so accumulation windows and
uneven last batches weigh every sample the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from workers.engine.config import BCELoss

ElementwiseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from logits (log-sum-exp form, finite for any logit)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def build_loss(config: BCELoss) -> ElementwiseLoss:
    if config.type == "bce":
        return bce
    raise ValueError(f"unknown loss type {config.type!r}")
