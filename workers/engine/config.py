"""The training config: every field has a default, every typo is an error.

This module is torch-free so the API process can validate configs and publish the JSON
schema without loading the engine. Pluggable parts (model, loss, sampler, thresholds,
optimizer, schedule) are tagged unions chosen by ``type``/``mode``; builders in the
engine turn them into small callables, so config objects never reach the math.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

PositiveFloat = Annotated[float, Field(gt=0.0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


def _tag_or(key: str, default: str, tags: list[str]) -> Discriminator:
    """A discriminator that reads ``key`` and falls back to ``default`` when the key is
    absent, so ``{"hidden_sizes": [64]}`` means an MLP and ``{}`` the default loss."""

    def pick(value) -> str:
        if isinstance(value, dict):
            return value.get(key, default)
        return getattr(value, key, default)

    return Discriminator(
        pick,
        custom_error_type="unknown_tag",
        custom_error_message=f"Unknown {key}; use one of: {', '.join(tags)}",
    )


def _union(default_key: str, default: str, *members: type) -> object:
    tags = [m.model_fields[default_key].default for m in members]
    tagged = [Annotated[m, Tag(t)] for m, t in zip(members, tags, strict=True)]
    return Annotated[Union[tuple(tagged)], _tag_or(default_key, default, tags)]  # noqa: UP007


class _Section(BaseModel):
    # forbid: a misspelt key ("learning_rate" for "lr") must be a 422, not ignored.
    model_config = ConfigDict(extra="forbid")


class DatasetKind:
    """Dataset kinds the engine knows; each has its own loader and model families."""

    TABULAR = "tabular"


# --- model ----------------------------------------------------------------------------


class MLPConfig(_Section):
    """A multi-layer perceptron on tabular features."""

    type: Literal["mlp"] = "mlp"
    hidden_sizes: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [256, 128],
        max_length=16,
        description="Width of each hidden layer; an empty list is a linear model.",
    )
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout after each hidden layer."
    )
    batch_norm: bool = Field(
        False, description="BatchNorm1d after each hidden linear layer."
    )


# One model family today; image (CNN), sequence (LSTM/GRU) and autoencoder families join
# this union with their own `type` literal.
ModelConfig = _union("type", "mlp", MLPConfig)


# --- optimisation ---------------------------------------------------------------------


class OptimizerConfig(_Section):
    type: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only.")
    nesterov: bool = Field(False, description="SGD only.")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Adam and AdamW only.")


class ScheduleConfig(_Section):
    """Learning-rate schedule. Epoch-counted fields count epochs; the rate changes at
    optimizer steps, so warmup and cosine are smooth within an epoch."""

    type: Literal["constant", "step", "cosine", "one_cycle", "plateau"] = "constant"
    step_size: int = Field(10, ge=1, description="step: epochs between decays.")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step: factor per decay.")
    min_lr: float = Field(0.0, ge=0.0, description="cosine: floor of the rate.")
    pct_start: float = Field(
        0.3, gt=0.0, lt=1.0, description="one_cycle: share rising."
    )
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="plateau: factor per decay.")
    patience: int = Field(3, ge=0, description="plateau: epochs without improvement.")
    warmup_epochs: float = Field(
        0.0,
        ge=0.0,
        description="Linear warmup from 0 over this many epochs (any type).",
    )


class EarlyStoppingConfig(_Section):
    metric: Literal["val_macro_f1", "val_loss"] = "val_macro_f1"
    patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many epochs without improvement; "
        "null trains all epochs. Either way the best epoch's weights are the model.",
    )
    min_delta: float = Field(0.0, ge=0.0)


class DivergenceConfig(_Section):
    """What happens when a step's loss or gradient norm is NaN or Inf."""

    max_bad_steps: int = Field(
        3, ge=1, description="Consecutive bad (skipped) steps before a rollback."
    )
    lr_factor: float = Field(
        0.5, gt=0.0, lt=1.0, description="Rate multiplier per rollback."
    )
    max_rollbacks: int = Field(
        3, ge=0, description="Rollbacks before the job fails with code 'diverged'."
    )


class TrainConfig(_Section):
    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(
        128, ge=1, le=1_048_576, description="Samples per micro-batch."
    )
    accumulation_steps: int = Field(
        1,
        ge=1,
        le=4096,
        description="Micro-batches per optimizer step; each micro-batch's loss is "
        "weighted by its share of the window's samples, so k micro-batches of b equal "
        "one batch of k*b.",
    )
    effective_batch_size: int | None = Field(
        None,
        ge=1,
        description="Samples per optimizer step; derives accumulation_steps = "
        "ceil(effective_batch_size / batch_size). Give this or accumulation_steps.",
    )
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    grad_clip_norm: float | None = Field(
        None, gt=0.0, description="Clip the global gradient norm to this value."
    )
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="CUDA only: 'auto' is bf16 where supported; the CPU always "
        "trains in float32. fp16 uses a gradient scaler.",
    )
    batchnorm: Literal["keep", "freeze", "group_norm"] = Field(
        "keep",
        description="With accumulation, batch norm sees micro-batches, not the "
        "effective batch: 'freeze' stops updating its running statistics after the "
        "first epoch, 'group_norm' replaces it with GroupNorm, which does not depend "
        "on batch size.",
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' uses CUDA when the worker has a GPU, else the CPU."
    )

    @model_validator(mode="after")
    def _derive_accumulation(self) -> TrainConfig:
        if self.effective_batch_size is None:
            return self
        if self.effective_batch_size < self.batch_size:
            raise ValueError(
                "train.effective_batch_size must be at least train.batch_size"
            )
        derived = math.ceil(self.effective_batch_size / self.batch_size)
        # A stored config carries both, consistently; a user giving both must agree.
        explicit = "accumulation_steps" in self.model_fields_set
        if explicit and self.accumulation_steps not in (1, derived):
            raise ValueError(
                "give train.effective_batch_size or train.accumulation_steps, not both"
            )
        self.accumulation_steps = derived
        return self


class DataConfig(_Section):
    standardize: bool = Field(
        True,
        description="Scale features to zero mean and unit variance, fitted on the "
        "training part only.",
    )
    validation_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Share of rows held out by iterative stratification.",
    )
    folds: int = Field(
        1,
        ge=1,
        le=10,
        description="1: one stratified holdout of validation_fraction. k >= 2: k-fold "
        "cross-fitting: k models, each early-stopped on its own fold; thresholds are "
        "picked on the out-of-fold predictions of every training row, and the served "
        "model averages the k members. Costs k times the training; worth it on small "
        "datasets, where one holdout leaves rare labels a handful of positives.",
    )


# --- imbalance: losses ----------------------------------------------------------------

PosWeightStrategy = Literal[
    "neg_pos_ratio", "inverse_frequency", "sqrt_neg_pos", "effective_number"
]


class PosWeightConfig(_Section):
    """How much a positive counts against a negative, per label, from the training rows.

    neg_pos_ratio: negatives/positives. sqrt_neg_pos: its square root (a common middle
    ground when the full ratio overshoots into false positives). inverse_frequency:
    positives of the most frequent label / positives of this label (IRLbl).
    effective_number: class-balanced weighting with the effective number of samples
    (1 - beta^n) / (1 - beta), positives against negatives. Explicit values: one per
    label.
    """

    strategy: PosWeightStrategy | list[PositiveFloat] = "sqrt_neg_pos"
    beta: float = Field(0.999, gt=0.0, lt=1.0, description="effective_number only.")
    max_value: float = Field(
        50.0, ge=1.0, description="Cap on any label's weight; 0-positive labels get 1."
    )


class BCELoss(_Section):
    """Binary cross-entropy on logits, one term per label."""

    type: Literal["bce"] = "bce"


class WeightedBCELoss(_Section):
    """BCE on logits with a per-label weight on the positive term."""

    type: Literal["weighted_bce"] = "weighted_bce"
    pos_weight: PosWeightConfig = Field(default_factory=PosWeightConfig)


class FocalLoss(_Section):
    """Focal loss on logits: BCE scaled by (1 - p_t)^gamma, optionally weighted."""

    type: Literal["focal"] = "focal"
    gamma: float = Field(2.0, ge=0.0, le=10.0)
    alpha: Probability | list[Probability] | None = Field(
        None,
        description="Weight of the positive term (1 - alpha for the negative); a "
        "scalar, one value per label, or null for no balancing.",
    )
    pos_weight: PosWeightConfig | None = None


class AsymmetricLoss(_Section):
    """Asymmetric loss for multi-label classification: separate focusing for positives
    and negatives, and a probability margin that discards easy negatives."""

    type: Literal["asymmetric"] = "asymmetric"
    gamma_pos: float = Field(0.0, ge=0.0, le=10.0)
    gamma_neg: float = Field(4.0, ge=0.0, le=10.0)
    clip: float = Field(
        0.05, ge=0.0, lt=1.0, description="Margin m: p_neg = max(p - m, 0)."
    )


LossConfig = _union("type", "bce", BCELoss, WeightedBCELoss, FocalLoss, AsymmetricLoss)


# --- imbalance: samplers --------------------------------------------------------------


class NoSampler(_Section):
    type: Literal["none"] = "none"


class RepeatFactorSampler(_Section):
    """Each row repeats max(1, sqrt(threshold / f)) times per epoch, f the training
    frequency of its rarest label; fractional repeats are drawn stochastically."""

    type: Literal["repeat_factor"] = "repeat_factor"
    threshold: float = Field(0.1, gt=0.0, le=1.0)


class MLROSSampler(_Section):
    """Label-based random oversampling: clone rows of minority labels (IRLbl above the
    mean) until `percentage`% more rows are drawn."""

    type: Literal["ml_ros"] = "ml_ros"
    percentage: float = Field(25.0, gt=0.0, le=400.0)


class MLRUSSampler(_Section):
    """Label-based random undersampling: drop rows of majority labels (IRLbl below the
    mean) that carry no minority label until `percentage`% fewer rows remain."""

    type: Literal["ml_rus"] = "ml_rus"
    # Capped at 90: Charte's ML-RUS keeps shrinking the most frequent label while it is
    # the largest, so near 100% it empties that label.
    percentage: float = Field(25.0, gt=0.0, le=90.0)


SamplerConfig = _union(
    "type", "none", NoSampler, RepeatFactorSampler, MLROSSampler, MLRUSSampler
)


# --- imbalance: thresholds ------------------------------------------------------------


class FixedThresholds(_Section):
    mode: Literal["fixed"] = "fixed"
    value: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Probability at or above which a label is predicted.",
    )


class _PickedThresholds(_Section):
    min_positives: int = Field(
        10,
        ge=1,
        description="Labels with fewer validation positives are not tuned on their "
        "own: see small_support.",
    )
    small_support: Literal["pooled", "fallback"] = Field(
        "pooled",
        description="For a label under min_positives: 'pooled' picks one threshold the "
        "same way on all labels' validation scores together (many rows, so not "
        "noise); 'fallback' uses the fixed `fallback`.",
    )
    fallback: float = Field(0.5, gt=0.0, lt=1.0)
    bounds: tuple[Probability, Probability] = Field(
        (0.05, 0.95), description="Picked thresholds are clipped into this range."
    )

    @model_validator(mode="after")
    def _ordered_bounds(self) -> _PickedThresholds:
        low, high = self.bounds
        if not low < high:
            raise ValueError("thresholds.bounds must be (low, high) with low < high")
        return self


class MaxF1Thresholds(_PickedThresholds):
    mode: Literal["max_f1"] = "max_f1"


class TargetPrecisionThresholds(_PickedThresholds):
    mode: Literal["target_precision"] = "target_precision"
    target: float = Field(0.8, gt=0.0, le=1.0)


class TargetRecallThresholds(_PickedThresholds):
    mode: Literal["target_recall"] = "target_recall"
    target: float = Field(0.8, gt=0.0, le=1.0)


ThresholdConfig = Annotated[
    FixedThresholds
    | MaxF1Thresholds
    | TargetPrecisionThresholds
    | TargetRecallThresholds,
    Field(discriminator="mode"),
]


class ImbalanceConfig(_Section):
    loss: LossConfig = Field(default_factory=BCELoss)
    sampler: SamplerConfig = Field(default_factory=NoSampler)
    thresholds: ThresholdConfig = Field(default_factory=FixedThresholds)


# --- the job --------------------------------------------------------------------------


class TrainingConfig(_Section):
    """The whole job config; `{}` is a valid config.

    ``imbalance: "auto"`` (the default) trains a small set of candidate strategies on
    the same split and keeps the best by validation macro-F1.
    """

    model: ModelConfig = Field(default_factory=MLPConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    imbalance: Literal["auto"] | ImbalanceConfig = "auto"

    def config_hash(self) -> str:
        """sha256 of the resolved config, stable across key order."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class LRFinderConfig(_Section):
    """Learning-rate range test: the rate grows exponentially from start_lr to end_lr
    over `steps` optimizer steps; the test stops early once the loss explodes."""

    start_lr: float = Field(1e-7, gt=0.0)
    end_lr: float = Field(10.0, gt=0.0, le=100.0)
    steps: int = Field(200, ge=10, le=5000)
    smoothing: float = Field(
        0.05, gt=0.0, le=1.0, description="EMA weight of the newest loss."
    )

    @model_validator(mode="after")
    def _ordered(self) -> LRFinderConfig:
        if self.end_lr <= self.start_lr:
            raise ValueError("lr_finder.end_lr must be greater than lr_finder.start_lr")
        return self
