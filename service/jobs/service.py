"""Jobs: create, read, and the rows a worker writes (history, metrics)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets.service import get_dataset
from service.datasets.tables import Dataset
from service.errors import InvalidInput, NotFound
from service.jobs.schemas import JobCreate
from service.jobs.tables import Job, JobEpoch, JobStatus, LabelMetricsRow, SplitMetricsRow
from service.types import new_id

log = logging.getLogger(__name__)

SPLITS = ("validation", "test")


def create_job(session: Session, request: JobCreate, owner: str) -> Job:
    """Check the request against its datasets and add a queued job; the caller commits
    and only then enqueues."""
    dataset = get_dataset(session, request.dataset_id, owner, field="dataset_id")
    _check_split_sizes(dataset, request.config.data.validation_fraction)
    if request.test_dataset_id is not None:
        test = get_dataset(session, request.test_dataset_id, owner, field="test_dataset_id")
        _check_test_matches(dataset, test)

    config = request.config
    job = Job(
        id=new_id("job"),
        owner=owner,
        kind="train",
        status=JobStatus.QUEUED,
        dataset_id=dataset.id,
        test_dataset_id=request.test_dataset_id,
        config=config.model_dump(mode="json"),
        config_hash=config.config_hash(),
        progress_epochs=config.train.epochs,
    )
    session.add(job)
    session.flush()
    return job


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
            select(JobEpoch).where(JobEpoch.job_id == job.id).order_by(JobEpoch.epoch)
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
