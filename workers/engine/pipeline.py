"""Training runs from arrays to saved models and their metrics.

prepare (split, scale) -> for each strategy: fit -> thresholds -> evaluate -> artifact.
``imbalance: "auto"`` expands into candidate strategies trained on the same split; the
caller (the worker) runs them, records each, and keeps the best by validation macro-F1.
Plain Python and PyTorch: no Celery, no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.engine.artifact import Predictor, save_artifact
from workers.engine.config import (
    AsymmetricLoss,
    BCELoss,
    FixedThresholds,
    FocalLoss,
    ImbalanceConfig,
    MaxF1Thresholds,
    PosWeightConfig,
    RepeatFactorSampler,
    TrainingConfig,
    WeightedBCELoss,
)
from workers.engine.data import Standardizer, stratified_split
from workers.engine.metrics import SplitMetrics, evaluate, macro_f1
from workers.engine.thresholds import pick_thresholds
from workers.engine.trainer import Callbacks, EpochRecord, fit


@dataclass(frozen=True)
class LabeledArrays:
    features: np.ndarray  # [rows, n_features] float32, unscaled
    labels: np.ndarray  # [rows, n_labels] uint8
    feature_names: list[str]
    label_names: list[str]


@dataclass(frozen=True)
class PreparedData:
    """One split, scaled with statistics of its training part, shared by candidates."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    scaler: Standardizer
    feature_names: list[str]
    label_names: list[str]


@dataclass(frozen=True)
class Candidate:
    name: str  # e.g. "focal+max_f1"
    config: TrainingConfig  # imbalance resolved, never "auto"


@dataclass
class CandidateOutcome:
    predictor: Predictor
    history: list[EpochRecord]
    validation: SplitMetrics
    threshold_notes: list[str]
    best_epoch: int


def prepare(config: TrainingConfig, data: LabeledArrays) -> PreparedData:
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
    return PreparedData(
        scaler.apply(x_train), y_train, scaler.apply(x_val), y_val, scaler,
        list(data.feature_names), list(data.label_names),
    )


def candidates(config: TrainingConfig) -> list[Candidate]:
    """The strategies a job trains: its own, or for ``"auto"`` a small validated set.

    Every auto candidate picks per-label thresholds for maximum validation F1 (with the
    small-support guard); plain BCE at a fixed 0.5 is kept as the baseline, so auto is
    never worse than plain BCE on the split it is judged on.
    """
    if config.imbalance != "auto":
        return [Candidate(strategy_name(config.imbalance), config)]
    tuned = MaxF1Thresholds()
    strategies = [
        ImbalanceConfig(loss=BCELoss(), thresholds=FixedThresholds()),
        ImbalanceConfig(loss=BCELoss(), thresholds=tuned),
        ImbalanceConfig(
            loss=WeightedBCELoss(pos_weight=PosWeightConfig(strategy="sqrt_neg_pos")),
            thresholds=tuned,
        ),
        ImbalanceConfig(loss=FocalLoss(gamma=2.0), thresholds=tuned),
        ImbalanceConfig(loss=AsymmetricLoss(), thresholds=tuned),
        ImbalanceConfig(loss=BCELoss(), sampler=RepeatFactorSampler(), thresholds=tuned),
    ]
    return [
        Candidate(strategy_name(s), config.model_copy(update={"imbalance": s}))
        for s in strategies
    ]


def strategy_name(imbalance: ImbalanceConfig) -> str:
    parts = [imbalance.loss.type]
    if imbalance.sampler.type != "none":
        parts.append(imbalance.sampler.type)
    parts.append(imbalance.thresholds.mode)
    return "+".join(parts)


def train_candidate(
    candidate: Candidate,
    data: PreparedData,
    model_dir: Path,
    callbacks: Callbacks | None = None,
    checkpoint_dir: Path | None = None,
    progress_interval: float = 1.0,
) -> CandidateOutcome:
    """Fit one strategy, pick its thresholds on validation, save its model."""
    config = candidate.config
    picker = config.imbalance.thresholds

    def score(y_val: np.ndarray, probs: np.ndarray) -> float | None:
        return macro_f1(y_val, probs, pick_thresholds(picker, y_val, probs).thresholds)

    fitted = fit(
        config, data.x_train, data.y_train, data.x_val, data.y_val, score, callbacks,
        checkpoint_dir=checkpoint_dir, progress_interval=progress_interval,
    )
    choice = pick_thresholds(picker, data.y_val, fitted.val_probs)
    validation = evaluate(data.y_val, fitted.val_probs, choice.thresholds, data.label_names)
    save_artifact(
        model_dir, fitted.model, config, data.feature_names, data.label_names,
        data.scaler, choice.thresholds,
        extra={"threshold_notes": choice.notes, "strategy": candidate.name,
               "best_epoch": fitted.best_epoch},
    )
    predictor = Predictor(
        model=fitted.model,
        feature_names=data.feature_names,
        label_names=data.label_names,
        thresholds=choice.thresholds,
        standardizer=data.scaler,
        description={},
    )
    return CandidateOutcome(
        predictor, fitted.history, validation, choice.notes, fitted.best_epoch
    )


def select_winner(outcomes: dict[str, CandidateOutcome]) -> str:
    """The key of the outcome with the highest validation macro-F1 (first on ties)."""
    return max(outcomes, key=lambda key: outcomes[key].validation.macro_f1 or -1.0)


def evaluate_on(predictor: Predictor, test: LabeledArrays) -> SplitMetrics:
    """Metrics of a model on another dataset with the same columns (any order)."""
    features = _columns(test.features, test.feature_names, predictor.feature_names)
    labels = _columns(test.labels, test.label_names, predictor.label_names)
    probs = predictor.predict_proba(features)
    return evaluate(labels, probs, predictor.thresholds, predictor.label_names)


def _columns(array: np.ndarray, names: list[str], wanted: list[str]) -> np.ndarray:
    position = {name: i for i, name in enumerate(names)}
    return np.ascontiguousarray(array[:, [position[n] for n in wanted]])
