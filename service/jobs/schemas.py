from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from workers.engine.config import TrainingConfig


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(max_length=40)
    test_dataset_id: str | None = Field(None, max_length=40)
    config: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="Training config; omit it, or any part of it, for the defaults.",
    )


class Progress(BaseModel):
    epoch: int
    epochs: int
    step: int
    steps_total: int
    loss: float | None = Field(description="Mean per-sample loss of the epoch so far.")
    eta_seconds: float | None


class ErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    dataset_id: str
    test_dataset_id: str | None
    config: dict
    progress: Progress
    error: ErrorOut | None
    model_id: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EpochOut(BaseModel):
    epoch: int
    train_loss: float = Field(description="Mean per-sample loss over the epoch's rows.")
    val_loss: float
    val_macro_f1: float | None
    lr: float = Field(description="Learning rate in effect at the epoch's first step.")
    seconds: float


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
