from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utcnow
from service.types import JsonType, Timestamp


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


class JobKind:
    TRAIN = "train"
    LR_FIND = "lr_find"
    # One strategy tried by an `imbalance: "auto"` job; its parent_id names that job.
    CANDIDATE = "candidate"


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="train")
    status: Mapped[str] = mapped_column(String(16), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    test_dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id"), nullable=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    config_hash: Mapped[str] = mapped_column(String(64))

    progress_epoch: Mapped[int] = mapped_column(Integer, default=0)
    progress_epochs: Mapped[int] = mapped_column(Integer, default=0)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_steps_total: Mapped[int] = mapped_column(Integer, default=0)
    progress_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress_eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)

    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # What the job produced besides a model: the LR finder's curve, auto's choice.
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    progress_skipped_steps: Mapped[int] = mapped_column(Integer, default=0)
    progress_rollbacks: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint_epoch: Mapped[int] = mapped_column(Integer, default=0)

    # The claim: which worker runs the current attempt, and until when its lease holds.
    # Every write a worker makes is fenced on (attempts, lease_owner).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        Timestamp, nullable=True, index=True
    )
    enqueued_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class JobEpoch(Base):
    """One row per finished epoch: the job's history."""

    __tablename__ = "job_epochs"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    # Cross-fitting trains one model per fold, each with its own epochs 1..n.
    fold: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float] = mapped_column(Float)
    val_macro_f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    skipped_steps: Mapped[int] = mapped_column(Integer, default=0)
    grad_norm: Mapped[float | None] = mapped_column(Float, nullable=True)
    rollbacks: Mapped[int] = mapped_column(Integer, default=0)


class SplitMetricsRow(Base):
    """Aggregate metrics of a job's model on one split (validation or test)."""

    __tablename__ = "split_metrics"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer)
    micro_f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    macro_f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    weighted_f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    map: Mapped[float | None] = mapped_column(Float, nullable=True)
    hamming_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    subset_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)


class LabelMetricsRow(Base):
    """Per-label metrics of a job's model on one split: queryable rows, not a blob."""

    __tablename__ = "label_metrics"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    label_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(256), index=True)
    support: Mapped[int] = mapped_column(Integer)
    tp: Mapped[int] = mapped_column(Integer)
    fp: Mapped[int] = mapped_column(Integer)
    fn: Mapped[int] = mapped_column(Integer)
    tn: Mapped[int] = mapped_column(Integer)
    precision: Mapped[float | None] = mapped_column(Float, nullable=True)
    recall: Mapped[float | None] = mapped_column(Float, nullable=True)
    f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    average_precision: Mapped[float | None] = mapped_column(Float, nullable=True)
    roc_auc: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float] = mapped_column(Float)
