"""Jobs: create, read, and the rows a worker writes (history, metrics)."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.datasets.service import get_dataset
from service.datasets.tables import Dataset
from service.db import utcnow
from service.errors import Conflict, InvalidInput, NotFound
from service.jobs.schemas import JobCreate
from service.jobs.tables import (
    Job,
    JobEpoch,
    JobKind,
    JobStatus,
    LabelMetricsRow,
    SplitMetricsRow,
)
from service.types import new_id
from workers.engine.strategies import candidates

log = logging.getLogger(__name__)

SPLITS = ("validation", "test")


def create_job(session: Session, request: JobCreate, owner: str) -> Job:
    """Check the request against its datasets and add a queued job; the caller commits
    and only then enqueues."""
    dataset = get_dataset(session, request.dataset_id, owner, field="dataset_id")
    _check_split_sizes(dataset, request.config.data.validation_fraction)
    if request.test_dataset_id is not None:
        test = get_dataset(
            session, request.test_dataset_id, owner, field="test_dataset_id"
        )
        _check_test_matches(dataset, test)

    config = request.config
    result = None
    if request.kind == JobKind.LR_FIND:
        result = {"lr_finder": request.lr_finder.model_dump(mode="json")}
    job = Job(
        id=new_id("job"),
        owner=owner,
        kind=request.kind,
        result=result,
        status=JobStatus.QUEUED,
        dataset_id=dataset.id,
        test_dataset_id=request.test_dataset_id,
        config=config.model_dump(mode="json"),
        config_hash=config.config_hash(),
        progress_epochs=config.train.epochs
        * config.data.folds
        * len(candidates(config)),
        enqueued_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def request_cancel(session: Session, job: Job) -> Job:
    """A queued job is cancelled at once and never starts; a running one is flagged and
    its worker stops at the next progress check, keeping its last checkpoint."""
    if job.status in JobStatus.FINAL:
        raise Conflict(
            "job.not_cancellable", f"Job '{job.id}' has already {job.status}."
        )
    if job.kind == JobKind.CANDIDATE:
        raise Conflict(
            "job.not_cancellable",
            f"Job '{job.id}' is a candidate of job '{job.parent_id}'; cancel that job.",
        )
    now = utcnow()
    if job.status == JobStatus.QUEUED:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.CANCELLED,
                cancel_requested=True,
                finished_at=now,
                updated_at=now,
            )
        )
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(cancel_requested=True, updated_at=now)
    )
    session.flush()
    session.refresh(job)
    return job


def get_candidates(session: Session, job: Job) -> list[Job]:
    return list(
        session.scalars(
            select(Job).where(Job.parent_id == job.id).order_by(Job.created_at, Job.id)
        )
    )


def get_label_metrics(
    session: Session, job_ids: list[str], split: str
) -> dict[str, list]:
    rows = session.scalars(
        select(LabelMetricsRow)
        .where(LabelMetricsRow.job_id.in_(job_ids), LabelMetricsRow.split == split)
        .order_by(LabelMetricsRow.job_id, LabelMetricsRow.label_index)
    )
    grouped: dict[str, list] = {job_id: [] for job_id in job_ids}
    for row in rows:
        grouped[row.job_id].append(row)
    return grouped


def get_split_metrics(session: Session, job_ids: list[str], split: str) -> dict:
    rows = session.scalars(
        select(SplitMetricsRow).where(
            SplitMetricsRow.job_id.in_(job_ids), SplitMetricsRow.split == split
        )
    )
    return {row.job_id: row for row in rows}


def _check_split_sizes(dataset: Dataset, fraction: float) -> None:
    held_out = int(dataset.rows * fraction)
    if held_out < 1 or dataset.rows - held_out < 1:
        raise InvalidInput(
            "job.dataset_too_small",
            f"Dataset '{dataset.id}' has {dataset.rows} rows, too few to hold out "
            f"config.data.validation_fraction={fraction} for validation and still train.",
        )


def _check_test_matches(train: Dataset, test: Dataset) -> None:
    missing = sorted(set(train.feature_names) - set(test.feature_names))
    missing += sorted(set(train.label_names) - set(test.label_names))
    if missing:
        shown = ", ".join(missing[:10])
        raise InvalidInput(
            "job.test_dataset_mismatch",
            f"Test dataset '{test.id}' lacks columns of the training dataset: {shown}.",
        )


def get_job(session: Session, job_id: str, owner: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))
    if job is None:
        raise NotFound("job.not_found", f"No job with id '{job_id}'.")
    return job


def get_history(session: Session, job: Job) -> list[JobEpoch]:
    return list(
        session.scalars(
            select(JobEpoch)
            .where(JobEpoch.job_id == job.id)
            .order_by(JobEpoch.fold, JobEpoch.epoch)
        )
    )


def get_metrics(
    session: Session, job: Job, split: str
) -> tuple[SplitMetricsRow, list[LabelMetricsRow]]:
    summary = session.get(SplitMetricsRow, (job.id, split))
    if summary is None:
        if job.status != JobStatus.SUCCEEDED:
            raise NotFound(
                "metrics.not_ready",
                f"Job '{job.id}' is {job.status}; metrics exist once it has succeeded.",
            )
        raise NotFound(
            "metrics.split_missing",
            f"Job '{job.id}' has no {split} metrics; pass test_dataset_id when creating "
            "a job to get test metrics.",
        )
    rows = session.scalars(
        select(LabelMetricsRow)
        .where(LabelMetricsRow.job_id == job.id, LabelMetricsRow.split == split)
        .order_by(LabelMetricsRow.label_index)
    )
    return summary, list(rows)
