"""The training config: every field has a default, every typo is an error.

This module is torch-free so the API process can validate configs and publish the JSON
schema without loading the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    # forbid: a misspelt key ("learning_rate" for "lr") must be a 422, not ignored.
    model_config = ConfigDict(extra="forbid")


class DatasetKind:
    """Dataset kinds the engine knows; each has its own loader and model families."""

    TABULAR = "tabular"


class MLPConfig(_Section):
    """A multi-layer perceptron on tabular features."""

    type: Literal["mlp"] = "mlp"
    hidden_sizes: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [256, 128],
        max_length=16,
        description="Width of each hidden layer; an empty list is a linear model.",
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


# One model family today; image (CNN), sequence (LSTM/GRU) and autoencoder families join
# this union with their own `type` literal.
ModelConfig = Annotated[MLPConfig, Field(discriminator="type")]


class TrainConfig(_Section):
    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=1_048_576, description="Samples per micro-batch.")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' uses CUDA when the worker has a GPU, else the CPU."
    )


class DataConfig(_Section):
    standardize: bool = Field(
        True, description="Scale features to zero mean and unit variance, fitted on the training part only."
    )
    validation_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of rows held out by iterative stratification."
    )


class BCELoss(_Section):
    """Binary cross-entropy on logits, one term per label."""

    type: Literal["bce"] = "bce"


LossConfig = Annotated[BCELoss, Field(discriminator="type")]


class FixedThresholds(_Section):
    mode: Literal["fixed"] = "fixed"
    value: float = Field(0.5, gt=0.0, lt=1.0, description="Probability at or above which a label is predicted.")


ThresholdConfig = Annotated[FixedThresholds, Field(discriminator="mode")]


class ImbalanceConfig(_Section):
    loss: LossConfig = Field(default_factory=BCELoss)
    thresholds: ThresholdConfig = Field(default_factory=FixedThresholds)


class TrainingConfig(_Section):
    """The whole job config; `{}` is a valid config."""

    model: ModelConfig = Field(default_factory=MLPConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    imbalance: ImbalanceConfig = Field(default_factory=ImbalanceConfig)

    def config_hash(self) -> str:
        """sha256 of the resolved config, stable across key order."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()
