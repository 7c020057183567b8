"""Per-label decision thresholds, chosen by name from ``imbalance.thresholds``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.engine.config import FixedThresholds


@dataclass(frozen=True)
class ThresholdChoice:
    thresholds: np.ndarray  # [n_labels] float32
    notes: list[str]  # per label: how its threshold was chosen


def pick_thresholds(
    config: FixedThresholds, y_val: np.ndarray, val_probs: np.ndarray
) -> ThresholdChoice:
    """``y_val [rows, n_labels]`` and ``val_probs [rows, n_labels]`` -> thresholds."""
    n_labels = y_val.shape[1]
    if config.mode == "fixed":
        value = np.full(n_labels, config.value, dtype=np.float32)
        return ThresholdChoice(value, [f"fixed at {config.value}"] * n_labels)
    raise ValueError(f"unknown threshold mode {config.mode!r}")
