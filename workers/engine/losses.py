"""Losses on logits, built by name from ``imbalance.loss``.

Every loss maps ``logits [batch, L]`` and 0/1 ``targets [batch, L]`` (float, same dtype
as the logits) to the element-wise term ``[batch, L]``; the trainer reduces it (mean
over labels per sample, then a sample-weighted sum), so accumulation windows and uneven
last batches weigh every sample the same.

Every log term comes from log-sigmoid, never from ``log(sigmoid(x) + eps)``: the eps
form is wrong by up to eps near 0 and 1, and its gradient vanishes once sigmoid
saturates (|x| > 17 in float32), while log-sigmoid is finite and exact for any finite
logit. Focusing factors ``q^gamma`` are written ``exp(gamma * log q)`` with ``log q``
from log-sigmoid too: ``pow`` has an infinite derivative at 0 when gamma < 1, which a
saturated sigmoid reaches in float32.

Per-label vectors (pos_weight, alpha) are float64 numpy arrays until a loss first sees
logits on a device and dtype; a copy for that pair is then kept for later calls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from workers.engine.config import (
    AsymmetricLoss,
    BCELoss,
    FocalLoss,
    PosWeightConfig,
    WeightedBCELoss,
)
from workers.engine.errors import EngineError

ElementwiseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossConfig = BCELoss | WeightedBCELoss | FocalLoss | AsymmetricLoss


class LossConfigError(EngineError, ValueError):
    """A loss setting that does not fit the dataset, e.g. one value per label but a
    different number of labels. The config schema cannot know the label count, so this
    surfaces when the job starts; as an EngineError it fails the job with a stable code
    instead of as an internal error."""


# --- pos_weight ----------------------------------------------------------------------


def pos_weights(
    config: PosWeightConfig, positives: np.ndarray, rows: int
) -> np.ndarray:
    """Weight of each label's positive term, ``[L]`` float32.

    ``positives [L]`` counts the positive rows per label among the ``rows`` training
    rows. A label with no training positive gets 1.0 (every derived strategy divides by
    its count, and it has no positive term to weigh anyway). Any weight is capped at
    ``max_value``. Derived weights are also floored at ``1 / max_value``: a label that
    is positive in every training row has neg_pos_ratio 0, which would silence its
    positive term altogether, so the floor bounds the ratio symmetrically. Explicit
    values are positive by schema and are only capped.
    """
    weights, _ = _resolve_pos_weights(config, positives, rows)
    return weights.astype(np.float32)


def _resolve_pos_weights(
    config: PosWeightConfig, positives: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, raw)`` float64 ``[L]``; raw is the strategy's value before the cap,
    floor and zero-positive rule (NaN where a derived strategy divides by 0)."""
    pos = _check_counts(positives, rows)
    neg = rows - pos
    zero = pos == 0
    explicit = isinstance(config.strategy, list)

    with np.errstate(divide="ignore", invalid="ignore"):
        if explicit:
            raw = _per_label(config.strategy, len(pos), "pos_weight.strategy")
        elif config.strategy == "neg_pos_ratio":
            raw = neg / pos
        elif config.strategy == "sqrt_neg_pos":
            raw = np.sqrt(neg / pos)
        elif config.strategy == "inverse_frequency":
            raw = pos.max() / pos
        elif config.strategy == "effective_number":
            # Class-balanced weight of a class with n rows: (1 - beta) / (1 - beta^n).
            # Positive weight over negative weight is (1 - beta^neg) / (1 - beta^pos);
            # expm1 keeps 1 - beta^n exact when beta^n is close to 1.
            log_beta = np.log(config.beta)
            raw = np.expm1(neg * log_beta) / np.expm1(pos * log_beta)
        else:
            raise ValueError(f"unknown pos_weight strategy {config.strategy!r}")
    if not explicit:
        raw = np.where(zero, np.nan, raw)

    floor = 0.0 if explicit else 1.0 / config.max_value
    weights = np.where(zero, 1.0, np.clip(raw, floor, config.max_value))
    return weights, raw


def _check_counts(positives: np.ndarray, rows: int) -> np.ndarray:
    """``positives`` as float64 ``[L]``; an engine bug (not user input) if malformed."""
    pos = np.asarray(positives)
    if pos.ndim != 1 or pos.shape[0] == 0:
        raise ValueError(f"positives must be 1-D [labels]; got shape {pos.shape}")
    if rows < 1:
        raise ValueError(f"rows must be at least 1; got {rows}")
    if np.any(pos < 0) or np.any(pos > rows):
        raise ValueError(f"positives must lie in [0, rows={rows}]; got {pos.tolist()}")
    return pos.astype(np.float64)


def _per_label(values: list[float], n_labels: int, field: str) -> np.ndarray:
    if len(values) != n_labels:
        raise LossConfigError(
            "loss.label_count_mismatch",
            f"imbalance.loss.{field} has {len(values)} values but the dataset has "
            f"{n_labels} labels; give one value per label.",
        )
    return np.asarray(values, dtype=np.float64)


class _PerLabel:
    """A per-label vector ``[L]`` handed out on the logits' device and dtype."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self._copies: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.values.shape[0]:
            raise ValueError(
                f"logits have {logits.shape[-1]} labels but the loss was built for "
                f"{self.values.shape[0]}"
            )
        key = (logits.device, logits.dtype)
        if key not in self._copies:
            self._copies[key] = torch.as_tensor(
                self.values, dtype=logits.dtype, device=logits.device
            )
        return self._copies[key]


# --- the losses ----------------------------------------------------------------------


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from logits (log-sum-exp form, finite for any logit)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def _weighted_bce(pos_weight: _PerLabel) -> ElementwiseLoss:
    def weighted_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``-(w * y * log p + (1 - y) * log(1 - p))`` with ``w`` per label."""
        return F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=pos_weight.like(logits), reduction="none"
        )

    return weighted_bce


def _focal(
    gamma: float, alpha: float | _PerLabel | None, pos_weight: _PerLabel | None
) -> ElementwiseLoss:
    def focal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``alpha_t * (1 - p_t)^gamma * BCE_t`` (Lin et al. 2017).

        ``p_t`` is p for a positive and 1 - p for a negative; ``BCE_t`` carries the
        per-label pos_weight on positive terms when one is configured, and
        ``alpha_t`` is alpha for a positive and 1 - alpha for a negative. Targets must
        be 0 or 1: ``log(1 - p_t)`` is log-sigmoid of ``-x`` for a positive and of
        ``x`` for a negative, i.e. of ``x * (1 - 2y)``.
        """
        weight = None if pos_weight is None else pos_weight.like(logits)
        loss = F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=weight, reduction="none"
        )
        if gamma > 0:
            log_miss = F.logsigmoid(logits * (1 - 2 * targets))  # log(1 - p_t)
            loss = torch.exp(gamma * log_miss) * loss
        if alpha is not None:
            a = alpha if isinstance(alpha, float) else alpha.like(logits)
            loss = (a * targets + (1 - a) * (1 - targets)) * loss
        return loss

    return focal


def _asymmetric(gamma_pos: float, gamma_neg: float, clip: float) -> ElementwiseLoss:
    def asymmetric(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """ASL (Ridnik et al. 2021): ``p = sigmoid(x)``, ``p_m = max(p - clip, 0)``.

        Positive term ``-(1 - p)^gamma_pos * log p``; negative term
        ``-p_m^gamma_neg * log(1 - p_m)``. Gradients flow through the focusing
        weights, as in the authors' default. With clip = 0 the negative log term is
        log-sigmoid of ``-x``; with clip > 0 it is ``log1p(-p_m)``, finite because
        ``p_m <= 1 - clip``. Where ``p <= clip`` the negative term is exactly 0 and so
        is its gradient: those easy negatives are discarded.
        """
        log_p = F.logsigmoid(logits)
        log_not_p = F.logsigmoid(-logits)
        positive = -torch.exp(gamma_pos * log_not_p) * log_p

        if clip > 0:
            p_m = (torch.sigmoid(logits) - clip).clamp_min(0)
            shifted = p_m > 0
            # pow of the clamped zeros would have an infinite derivative for
            # gamma_neg < 1; route them through 1 and mask the weight afterwards.
            base = torch.where(shifted, p_m, torch.ones_like(p_m))
            focus = torch.where(shifted, base**gamma_neg, torch.zeros_like(p_m))
            negative = -focus * torch.log1p(-p_m)
        else:
            negative = -torch.exp(gamma_neg * log_p) * log_not_p

        return targets * positive + (1 - targets) * negative

    return asymmetric


# --- building ------------------------------------------------------------------------


def build_loss(config: LossConfig, positives: np.ndarray, rows: int) -> ElementwiseLoss:
    """The configured loss; ``positives [L]`` are training positives per label among
    ``rows`` training rows (used by pos_weight strategies and to check per-label
    lists). Raises LossConfigError when a per-label list does not match L."""
    if config.type == "bce":
        _check_counts(positives, rows)
        return bce
    if config.type == "weighted_bce":
        weights, _ = _resolve_pos_weights(config.pos_weight, positives, rows)
        return _weighted_bce(_PerLabel(weights))
    if config.type == "focal":
        alpha, pos_weight = _focal_parts(config, positives, rows)
        return _focal(config.gamma, alpha, pos_weight)
    if config.type == "asymmetric":
        _check_counts(positives, rows)
        return _asymmetric(config.gamma_pos, config.gamma_neg, config.clip)
    raise ValueError(f"unknown loss type {config.type!r}")


def _focal_parts(
    config: FocalLoss, positives: np.ndarray, rows: int
) -> tuple[float | _PerLabel | None, _PerLabel | None]:
    n_labels = _check_counts(positives, rows).shape[0]
    alpha: float | _PerLabel | None = None
    if isinstance(config.alpha, list):
        alpha = _PerLabel(_per_label(config.alpha, n_labels, "alpha"))
    elif config.alpha is not None:
        # The schema bounds per-label alphas to [0, 1] but not a scalar one; outside
        # that range one of alpha and 1 - alpha is negative and the loss rewards error.
        if not 0.0 <= config.alpha <= 1.0:
            raise LossConfigError(
                "loss.alpha_out_of_range",
                f"imbalance.loss.alpha is {config.alpha} but must lie in [0, 1].",
            )
        alpha = float(config.alpha)

    pos_weight = None
    if config.pos_weight is not None:
        weights, _ = _resolve_pos_weights(config.pos_weight, positives, rows)
        pos_weight = _PerLabel(weights)
    return alpha, pos_weight


def describe_loss(config: LossConfig, positives: np.ndarray, rows: int) -> dict:
    """The resolved loss, JSON-ready, for display: per-label lists are in label order.

    ``pos_weight_uncapped`` is the strategy's own value before the cap and floor; it
    is null where a derived strategy has no value (a label without training positives,
    which gets 1.0).
    """
    n_labels = _check_counts(positives, rows).shape[0]
    out: dict = {"type": config.type}
    pos_config = getattr(config, "pos_weight", None)
    if pos_config is not None:
        weights, raw = _resolve_pos_weights(pos_config, positives, rows)
        strategy = pos_config.strategy
        out["pos_weight_strategy"] = (
            "explicit" if isinstance(strategy, list) else strategy
        )
        out["pos_weight"] = [float(np.float32(w)) for w in weights]
        out["pos_weight_uncapped"] = [None if np.isnan(r) else float(r) for r in raw]
        out["pos_weight_max_value"] = pos_config.max_value

    if config.type == "focal":
        alpha, _ = _focal_parts(config, positives, rows)
        out["gamma"] = config.gamma
        if alpha is None:
            out["alpha"] = None
        elif isinstance(alpha, float):
            out["alpha"] = [alpha] * n_labels
        else:
            out["alpha"] = alpha.values.tolist()
    elif config.type == "asymmetric":
        out.update(
            gamma_pos=config.gamma_pos, gamma_neg=config.gamma_neg, clip=config.clip
        )
    return out
