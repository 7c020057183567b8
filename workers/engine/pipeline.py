"""Training runs from arrays to saved models and their metrics.

prepare (split, scale) -> for each strategy: fit -> thresholds -> evaluate -> artifact.
``imbalance: "auto"`` expands into candidate strategies trained on the same split; the
caller (the worker) runs them, records each, and keeps the best by validation macro-F1.
Plain Python and PyTorch: no Celery, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from workers.engine.artifact import Member, Predictor, save_artifact
from workers.engine.config import TrainingConfig
from workers.engine.data import Standardizer, stratified_folds, stratified_split
from workers.engine.metrics import SplitMetrics, evaluate, macro_f1
from workers.engine.strategies import Candidate
from workers.engine.thresholds import pick_thresholds
from workers.engine.trainer import Callbacks, EpochRecord, Progress, fit


@dataclass(frozen=True)
class LabeledArrays:
    features: np.ndarray  # [rows, n_features] float32, unscaled
    labels: np.ndarray  # [rows, n_labels] uint8
    feature_names: list[str]
    label_names: list[str]


@dataclass(frozen=True)
class Fold:
    """One training part and its validation part, scaled with statistics of the
    training part only."""

    train_idx: np.ndarray  # rows of the job's dataset
    val_idx: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    scaler: Standardizer


@dataclass(frozen=True)
class PreparedData:
    """The split(s) every candidate trains on: one holdout, or k cross-fitting folds
    whose validation parts cover every row once."""

    folds: list[Fold]
    labels: np.ndarray  # [rows, n_labels] the dataset's labels (out-of-fold truth)
    feature_names: list[str]
    label_names: list[str]

    @property
    def validation_rows(self) -> np.ndarray:
        return np.concatenate([fold.val_idx for fold in self.folds])


@dataclass
class CandidateOutcome:
    predictor: Predictor
    history: list[EpochRecord]
    validation: SplitMetrics  # on the holdout, or out-of-fold on every row
    threshold_notes: list[str]
    best_epoch: int  # of the first fold


def prepare(config: TrainingConfig, data: LabeledArrays) -> PreparedData:
    seed = config.train.seed
    if config.data.folds > 1:
        splits = stratified_folds(data.labels, config.data.folds, seed)
    else:
        splits = [stratified_split(data.labels, config.data.validation_fraction, seed)]
    # TODO(build each fold when it trains): all k folds are scaled up front, about k
    # copies of the data in memory; fine for the small datasets folds are meant for.
    folds = [_fold(config, data, train_idx, val_idx) for train_idx, val_idx in splits]
    return PreparedData(
        folds, data.labels, list(data.feature_names), list(data.label_names)
    )


def _fold(
    config: TrainingConfig,
    data: LabeledArrays,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
) -> Fold:
    # Fancy indexing copies the rows once; they are then scaled in place, so a fold
    # costs one float32 copy of the data, not three.
    x_train = np.ascontiguousarray(data.features[train_idx], dtype=np.float32)
    x_val = np.ascontiguousarray(data.features[val_idx], dtype=np.float32)
    scaler = (
        Standardizer.fit(x_train)
        if config.data.standardize
        else Standardizer.identity(x_train.shape[1])
    )
    return Fold(
        train_idx,
        val_idx,
        scaler.apply_(x_train),
        np.asarray(data.labels[train_idx]),
        scaler.apply_(x_val),
        np.asarray(data.labels[val_idx]),
        scaler,
    )


class _FoldCallbacks:
    """Passes a fold's reports on, numbering its epochs among all folds' and tagging
    its history rows with the fold."""

    def __init__(self, inner: Callbacks | None, fold: int, folds: int, epochs: int):
        self.inner, self.fold, self.folds, self.epochs = inner, fold, folds, epochs

    def on_progress(self, progress: Progress) -> None:
        if self.inner:
            self.inner.on_progress(
                replace(
                    progress,
                    epoch=(self.fold - 1) * self.epochs + progress.epoch,
                    epochs=self.folds * self.epochs,
                )
            )

    def on_epoch_end(self, record: EpochRecord) -> None:
        if self.inner:
            self.inner.on_epoch_end(replace(record, fold=self.fold))

    def on_checkpoint(self, epoch: int) -> None:
        hook = getattr(self.inner, "on_checkpoint", None)
        if hook:
            hook((self.fold - 1) * self.epochs + epoch)

    def should_stop(self) -> bool:
        return bool(self.inner and self.inner.should_stop())


def train_candidate(
    candidate: Candidate,
    data: PreparedData,
    model_dir: Path,
    callbacks: Callbacks | None = None,
    checkpoint_dir: Path | None = None,
    progress_interval: float = 1.0,
) -> CandidateOutcome:
    """Fit one strategy on every fold, pick its thresholds on the (out-of-fold)
    validation predictions, save the model (one member per fold)."""
    config = candidate.config
    picker = config.imbalance.thresholds

    def score(y_val: np.ndarray, probs: np.ndarray) -> float | None:
        return macro_f1(y_val, probs, pick_thresholds(picker, y_val, probs).thresholds)

    members, history, val_probs, best_epoch = [], [], [], None
    for number, fold in enumerate(data.folds, start=1):
        fitted = fit(
            config,
            fold.x_train,
            fold.y_train,
            fold.x_val,
            fold.y_val,
            score,
            _FoldCallbacks(callbacks, number, len(data.folds), config.train.epochs),
            checkpoint_dir=_fold_dir(checkpoint_dir, number, len(data.folds)),
            progress_interval=progress_interval,
        )
        members.append(Member(fitted.model, fold.scaler))
        history += [replace(record, fold=number) for record in fitted.history]
        val_probs.append(fitted.val_probs)
        best_epoch = best_epoch or fitted.best_epoch

    y_val = data.labels[data.validation_rows]
    probs = np.concatenate(val_probs)
    choice = pick_thresholds(picker, y_val, probs)
    validation = evaluate(y_val, probs, choice.thresholds, data.label_names)
    save_artifact(
        model_dir,
        members,
        config,
        data.feature_names,
        data.label_names,
        choice.thresholds,
        extra={
            "threshold_notes": choice.notes,
            "strategy": candidate.name,
            "best_epoch": best_epoch,
        },
    )
    predictor = Predictor(
        members, data.feature_names, data.label_names, choice.thresholds, {}
    )
    return CandidateOutcome(predictor, history, validation, choice.notes, best_epoch)


def _fold_dir(checkpoint_dir: Path | None, fold: int, folds: int) -> Path | None:
    if checkpoint_dir is None or folds == 1:
        return checkpoint_dir
    return checkpoint_dir / f"fold-{fold}"


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
