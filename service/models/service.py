"""Serving trained models: load once per API process, predict many times."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.models.tables import Model
from workers.engine.artifact import Predictor, load_artifact


def get_model(session: Session, model_id: str, owner: str) -> Model:
    model = session.scalar(
        select(Model).where(Model.id == model_id, Model.owner == owner)
    )
    if model is None:
        raise NotFound("model.not_found", f"No model with id '{model_id}'.")
    return model


class ModelCache:
    """Least-recently-used predictors, so a model is read from disk once, not per
    request. Artifacts are immutable once written, so a cached copy never goes stale."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, directory: Path) -> Predictor:
        with self._lock:
            if model_id in self._items:
                self._items.move_to_end(model_id)
                return self._items[model_id]
        predictor = load_artifact(directory)
        with self._lock:
            self._items[model_id] = predictor
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return predictor


def predict(
    predictor: Predictor, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``features [rows, n_features]`` -> probabilities, 0/1 predictions [rows, labels]."""
    probs = predictor.predict_proba(features)
    return probs, (probs >= predictor.thresholds).astype(np.uint8)
