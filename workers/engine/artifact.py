"""A trained model on disk: ``model.safetensors`` (weights) + ``model.json``
(architecture, feature and label names, standardization, thresholds, config).

Never pickle: loading a model reads tensors and JSON only, so a model file cannot run
code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workers.engine.config import MLPConfig, TrainingConfig
from workers.engine.data import Standardizer
from workers.engine.models import build_model

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
DESCRIPTION_FILE = "model.json"


@dataclass
class Predictor:
    """A loaded model ready to score feature rows."""

    model: nn.Module
    feature_names: list[str]
    label_names: list[str]
    thresholds: np.ndarray  # [n_labels]
    standardizer: Standardizer
    description: dict[str, Any]

    @torch.inference_mode()
    def predict_proba(self, features: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """``features [rows, n_features]`` in ``feature_names`` order, unscaled ->
        probabilities ``[rows, n_labels]`` float32."""
        scaled = torch.from_numpy(self.standardizer.apply(features))
        out = np.empty((features.shape[0], len(self.label_names)), dtype=np.float32)
        for start in range(0, features.shape[0], chunk):
            logits = self.model(scaled[start : start + chunk])
            out[start : start + chunk] = torch.sigmoid(logits).numpy()
        return out


def save_artifact(
    directory: Path,
    model: nn.Module,
    config: TrainingConfig,
    feature_names: list[str],
    label_names: list[str],
    standardizer: Standardizer,
    thresholds: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the model into ``directory`` atomically (temp dir, then rename)."""
    description = {
        "format_version": FORMAT_VERSION,
        "dataset_kind": "tabular",
        "model": config.model.model_dump(mode="json"),
        "n_features": len(feature_names),
        "feature_names": list(feature_names),
        "label_names": list(label_names),
        "standardization": standardizer.to_json(),
        "thresholds": [float(t) for t in thresholds],
        "config": config.model_dump(mode="json"),
        "config_hash": config.config_hash(),
        **(extra or {}),
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        (staging / DESCRIPTION_FILE).write_text(json.dumps(description, indent=1))
        if directory.exists():
            # A resumed run saves again: move the old copy aside, then swap in the new.
            old = directory.with_name(f".old-{directory.name}-{os.getpid()}")
            os.replace(directory, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_artifact(directory: Path) -> Predictor:
    """Rebuild the network from ``model.json`` and fill it from safetensors."""
    description = json.loads((directory / DESCRIPTION_FILE).read_text())
    if description.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"model format {description.get('format_version')!r} is not supported; "
            f"this labelwise reads format {FORMAT_VERSION}"
        )
    model = build_model(
        MLPConfig.model_validate(description["model"]),
        description["n_features"],
        len(description["label_names"]),
        batchnorm=description["config"]["train"]["batchnorm"],
    )
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    model.eval()
    return Predictor(
        model=model,
        feature_names=description["feature_names"],
        label_names=description["label_names"],
        thresholds=np.asarray(description["thresholds"], dtype=np.float32),
        standardizer=Standardizer.from_json(description["standardization"]),
        description=description,
    )
