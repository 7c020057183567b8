from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from service.deps import current_owner, db_session
from service.jobs import service
from service.jobs.queue import enqueue_training
from service.jobs.schemas import (
    EpochOut,
    ErrorOut,
    HistoryOut,
    JobCreate,
    JobOut,
    LabelMetricsOut,
    MetricsOut,
    Progress,
)
from service.jobs.tables import Job
from workers.engine.metrics import NULL_REASONS

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_out(job: Job) -> JobOut:
    error = None
    if job.error_code:
        error = ErrorOut(code=job.error_code, message=job.error_message or "")
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        dataset_id=job.dataset_id,
        test_dataset_id=job.test_dataset_id,
        config=job.config,
        progress=Progress(
            epoch=job.progress_epoch,
            epochs=job.progress_epochs,
            step=job.progress_step,
            steps_total=job.progress_steps_total,
            loss=job.progress_loss,
            eta_seconds=job.progress_eta_seconds,
        ),
        error=error,
        model_id=job.model_id,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post("", status_code=202, response_model=JobOut)
def create_job(
    request: JobCreate,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> JobOut:
    job = service.create_job(session, request, owner)
    session.commit()
    enqueue_training(job.id)
    return job_out(job)


@router.get("/{job_id}", response_model=JobOut)
def read_job(
    job_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> JobOut:
    return job_out(service.get_job(session, job_id, owner))


@router.get("/{job_id}/history", response_model=HistoryOut)
def read_history(
    job_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> HistoryOut:
    job = service.get_job(session, job_id, owner)
    epochs = [
        EpochOut.model_validate(row, from_attributes=True)
        for row in service.get_history(session, job)
    ]
    return HistoryOut(job_id=job.id, epochs=epochs)


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def read_metrics(
    job_id: str,
    split: Literal["validation", "test"] = Query("validation"),
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> MetricsOut:
    job = service.get_job(session, job_id, owner)
    summary, labels = service.get_metrics(session, job, split)
    return MetricsOut(
        job_id=job.id,
        split=split,
        rows=summary.rows,
        labels=[LabelMetricsOut.model_validate(r, from_attributes=True) for r in labels],
        micro_f1=summary.micro_f1,
        macro_f1=summary.macro_f1,
        weighted_f1=summary.weighted_f1,
        samples_f1=summary.samples_f1,
        map=summary.map,
        hamming_loss=summary.hamming_loss,
        subset_accuracy=summary.subset_accuracy,
        null_reasons=NULL_REASONS,
    )
