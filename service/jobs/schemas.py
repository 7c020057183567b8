from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.engine.config import LRFinderConfig, TrainingConfig


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["train", "lr_find"] = Field(
        "train",
        description="'lr_find' runs the learning-rate range test instead of "
        "training; its curve and suggested rate appear under `result`.",
    )
    dataset_id: str = Field(max_length=40)
    test_dataset_id: str | None = Field(None, max_length=40)
    config: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="Training config; omit it, or any part of it, for the defaults.",
    )
    lr_finder: LRFinderConfig = Field(
        default_factory=LRFinderConfig,
        description="Range-test settings (lr_find only).",
    )


class Progress(BaseModel):
    epoch: int
    epochs: int
    step: int
    steps_total: int
    loss: float | None = Field(description="Mean per-sample loss of the epoch so far.")
    eta_seconds: float | None
    skipped_steps: int = Field(
        description="Steps skipped for a NaN/Inf loss or gradient."
    )
    rollbacks: int = Field(
        description="Rollbacks to the last good state after divergence."
    )


class ErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    dataset_id: str
    test_dataset_id: str | None
    parent_id: str | None
    config: dict
    progress: Progress
    cancel_requested: bool
    result: dict | None = Field(
        description="lr_find: the loss curve and suggested rate; auto: the chosen strategy."
    )
    error: ErrorOut | None
    model_id: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EpochOut(BaseModel):
    fold: int = Field(description="Cross-fitting fold (1 without data.folds).")
    epoch: int
    train_loss: float = Field(description="Mean per-sample loss over the epoch's rows.")
    val_loss: float
    val_macro_f1: float | None
    lr: float = Field(description="Learning rate in effect at the epoch's first step.")
    seconds: float = Field(
        description="Wall seconds of the epoch, validation included."
    )
    skipped_steps: int
    grad_norm: float | None = Field(
        description="Mean global gradient norm before clipping."
    )
    rollbacks: int = Field(description="Rollbacks so far in the job.")


class HistoryOut(BaseModel):
    job_id: str
    epochs: list[EpochOut]


class LabelMetricsOut(BaseModel):
    label: str
    support: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None
    average_precision: float | None
    roc_auc: float | None
    threshold: float


class MetricsOut(BaseModel):
    job_id: str
    split: str
    rows: int
    labels: list[LabelMetricsOut]
    micro_f1: float | None
    macro_f1: float | None
    weighted_f1: float | None
    samples_f1: float | None
    map: float | None
    hamming_loss: float | None
    subset_accuracy: float | None
    null_reasons: dict[str, str] = Field(
        description="Why a value can be null: it is undefined, never NaN."
    )


class CandidateOut(BaseModel):
    job_id: str
    status: str
    strategy: str
    config: dict
    chosen: bool
    seconds: float | None
    macro_f1: float | None
    micro_f1: float | None
    map: float | None
    labels: list[LabelMetricsOut]
    error: ErrorOut | None


class CandidatesOut(BaseModel):
    job_id: str
    selection: str = Field(description="How the winner was chosen.")
    candidates: list[CandidateOut]
