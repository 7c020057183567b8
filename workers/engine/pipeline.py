"""One training run from arrays to a saved model and its metrics.

split -> scale -> fit -> thresholds -> evaluate (validation, optional test) -> artifact.
Plain Python and PyTorch: the worker calls this with arrays and callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workers.engine.artifact import Predictor, save_artifact
from workers.engine.config import TrainingConfig
from workers.engine.data import Standardizer, stratified_split
from workers.engine.metrics import SplitMetrics, evaluate
from workers.engine.thresholds import pick_thresholds
from workers.engine.trainer import Callbacks, EpochRecord, fit


@dataclass(frozen=True)
class LabeledArrays:
    features: np.ndarray  # [rows, n_features] float32, unscaled
    labels: np.ndarray  # [rows, n_labels] uint8
    feature_names: list[str]
    label_names: list[str]


@dataclass
class TrainingOutcome:
    predictor: Predictor
    history: list[EpochRecord]
    validation: SplitMetrics
    test: SplitMetrics | None
    threshold_notes: list[str]


def run_training(
    config: TrainingConfig,
    data: LabeledArrays,
    model_dir: Path,
    callbacks: Callbacks | None = None,
    test: LabeledArrays | None = None,
) -> TrainingOutcome:
    """Train on ``data``, save the model into ``model_dir``, return its metrics."""
    train_idx, val_idx = stratified_split(
        data.labels, config.data.validation_fraction, config.train.seed
    )
    x_train, y_train = data.features[train_idx], data.labels[train_idx]
    x_val, y_val = data.features[val_idx], data.labels[val_idx]

    scaler = (
        Standardizer.fit(x_train)
        if config.data.standardize
        else Standardizer.identity(x_train.shape[1])
    )
    x_train, x_val = scaler.apply(x_train), scaler.apply(x_val)

    # Per-epoch validation F1 is read at the configured fixed value (or 0.5) until
    # thresholds are picked on the final model.
    initial = np.full(y_val.shape[1], 0.5, dtype=np.float32)
    if config.imbalance.thresholds.mode == "fixed":
        initial[:] = config.imbalance.thresholds.value
    fitted = fit(config, x_train, y_train, x_val, y_val, initial, callbacks)

    choice = pick_thresholds(config.imbalance.thresholds, y_val, fitted.val_probs)
    predictor = Predictor(
        model=fitted.model,
        feature_names=list(data.feature_names),
        label_names=list(data.label_names),
        thresholds=choice.thresholds,
        standardizer=scaler,
        description={},
    )
    validation = evaluate(y_val, fitted.val_probs, choice.thresholds, data.label_names)
    test_metrics = None
    if test is not None:
        probs = predictor.predict_proba(_reorder(test, data.feature_names))
        test_metrics = evaluate(
            _labels_in_order(test, data.label_names), probs, choice.thresholds,
            data.label_names,
        )

    save_artifact(
        model_dir, fitted.model, config, data.feature_names, data.label_names, scaler,
        choice.thresholds, extra={"threshold_notes": choice.notes},
    )
    return TrainingOutcome(predictor, fitted.history, validation, test_metrics, choice.notes)


def _reorder(arrays: LabeledArrays, feature_names: list[str]) -> np.ndarray:
    position = {name: i for i, name in enumerate(arrays.feature_names)}
    return np.ascontiguousarray(arrays.features[:, [position[n] for n in feature_names]])


def _labels_in_order(arrays: LabeledArrays, label_names: list[str]) -> np.ndarray:
    position = {name: i for i, name in enumerate(arrays.label_names)}
    return arrays.labels[:, [position[n] for n in label_names]]


def set_threads(count: int | None) -> None:
    """Cap intra-op threads so a worker does not oversubscribe a shared machine."""
    if count:
        torch.set_num_threads(count)
