"""The engine's pipeline: splits, cross-fitting, candidates, and the saved model."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from workers.engine.artifact import load_artifact
from workers.engine.config import TrainingConfig
from workers.engine.pipeline import (
    LabeledArrays,
    evaluate_on,
    prepare,
    train_candidate,
)
from workers.engine.strategies import candidates


def arrays(rows: int = 300, seed: int = 0) -> LabeledArrays:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype(np.float32) * np.array(
        [1, 10, 100, 1, 1, 1000], dtype=np.float32
    )
    score = x[:, :3] / np.array([1, 10, 100]) + rng.normal(scale=0.5, size=(rows, 3))
    y = (score > np.quantile(score, [0.9, 0.7, 0.5], axis=0).diagonal()).astype(
        np.uint8
    )
    return LabeledArrays(x, y, [f"f{i}" for i in range(6)], ["rare", "mid", "common"])


def config(**data) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "model": {"hidden_sizes": [16], "dropout": 0.0},
            "train": {"epochs": 3, "batch_size": 32},
            "data": data,
            "imbalance": {"loss": {"type": "bce"}, "thresholds": {"mode": "max_f1"}},
        }
    )


def test_holdout_scaler_sees_only_training_rows():
    data = arrays()
    prepared = prepare(config(validation_fraction=0.25), data)
    (fold,) = prepared.folds
    assert len(fold.val_idx) == 75 and len(fold.train_idx) == 225
    assert not set(fold.train_idx) & set(fold.val_idx)
    expected = data.features[fold.train_idx].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(fold.scaler.mean, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fold.x_train.mean(axis=0), 0, atol=1e-4)


def test_cross_fitting_covers_every_row_once_and_averages_members(tmp_path):
    data = arrays()
    prepared = prepare(config(folds=3), data)
    assert len(prepared.folds) == 3
    assert sorted(prepared.validation_rows.tolist()) == list(range(300))

    (candidate,) = candidates(config(folds=3))
    outcome = train_candidate(candidate, prepared, tmp_path / "model")
    assert len(outcome.predictor.members) == 3
    assert outcome.validation.rows == 300  # out-of-fold on every row
    assert [(r.fold, r.epoch) for r in outcome.history] == [
        (f, e) for f in (1, 2, 3) for e in (1, 2, 3)
    ]

    # The served probability is the members' mean, each on its own scaling.
    members = outcome.predictor.members
    expected = np.mean(
        [
            torch.sigmoid(
                m.model(torch.from_numpy(m.standardizer.apply(data.features)))
            )
            .detach()
            .numpy()
            for m in members
        ],
        axis=0,
    )
    np.testing.assert_allclose(
        outcome.predictor.predict_proba(data.features), expected, rtol=1e-5, atol=1e-6
    )


def test_saved_model_round_trips_without_pickle(tmp_path, monkeypatch):
    data = arrays(seed=1)
    cfg = config(folds=2)
    (candidate,) = candidates(cfg)
    outcome = train_candidate(candidate, prepare(cfg, data), tmp_path / "model")

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model load must never unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    loaded = load_artifact(tmp_path / "model")

    description = json.loads((tmp_path / "model" / "model.json").read_text())
    assert description["feature_names"] == data.feature_names
    assert description["label_names"] == data.label_names
    assert len(description["members"]) == 2
    assert description["thresholds"] == [float(t) for t in outcome.predictor.thresholds]
    np.testing.assert_array_equal(
        loaded.predict_proba(data.features),
        outcome.predictor.predict_proba(data.features),
    )
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["model"]  # no staging left


def test_test_split_is_scored_with_columns_in_any_order(tmp_path):
    data = arrays(seed=2)
    cfg = config()
    (candidate,) = candidates(cfg)
    outcome = train_candidate(candidate, prepare(cfg, data), tmp_path / "m")
    shuffled = LabeledArrays(
        data.features[:, ::-1].copy(),
        data.labels[:, ::-1].copy(),
        data.feature_names[::-1],
        data.label_names[::-1],
    )
    direct = evaluate_on(outcome.predictor, data)
    reordered = evaluate_on(outcome.predictor, shuffled)
    assert [m.label for m in reordered.labels] == data.label_names
    assert reordered == direct


def test_auto_expands_into_candidates_with_the_plain_baseline_first():
    plan = candidates(TrainingConfig())
    assert [c.name for c in plan] == [
        "bce+fixed",
        "bce+max_f1",
        "weighted_bce+max_f1",
        "focal+max_f1",
        "asymmetric+max_f1",
        "bce+repeat_factor+max_f1",
    ]
    assert all(c.config.imbalance != "auto" for c in plan)
    with pytest.raises(ValueError):
        TrainingConfig.model_validate({"imbalance": "magic"})
