from __future__ import annotations

import hashlib
import json
from typing import Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service import idempotency
from service.cache import ResponseCache
from service.db import get_sessionmaker
from service.deps import current_owner, db_session
from service.jobs import service
from service.jobs.queue import enqueue_training
from service.jobs.schemas import (
    CandidateOut,
    CandidatesOut,
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
ENDPOINT = "POST /v1/jobs"


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
        parent_id=job.parent_id,
        config=job.config,
        cancel_requested=job.cancel_requested,
        result=job.result,
        progress=Progress(
            epoch=job.progress_epoch,
            epochs=job.progress_epochs,
            step=job.progress_step,
            steps_total=job.progress_steps_total,
            loss=job.progress_loss,
            eta_seconds=job.progress_eta_seconds,
            skipped_steps=job.progress_skipped_steps,
            rollbacks=job.progress_rollbacks,
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
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
):
    """Queue a training job (or an LR range test). The message is sent only after the
    job row is committed; a retry with the same `Idempotency-Key` returns this job."""
    key = idempotency.check_key(idempotency_key)
    request_hash = hashlib.sha256(
        json.dumps(request.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    if key and (
        stored := idempotency.replay(session, owner, ENDPOINT, key, request_hash)
    ):
        return stored

    job = service.create_job(session, request, owner)
    body = jsonable_encoder(job_out(job))
    if key:
        idempotency.remember(session, owner, ENDPOINT, key, request_hash, 202, body)
    if raced := idempotency.commit_or_replay(
        session, owner, ENDPOINT, key, request_hash
    ):
        return raced
    enqueue_training(job.id)
    return JSONResponse(body, status_code=202)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(
    job_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> JobOut:
    """Cancel a job: a queued one never starts; a running one stops within a few
    steps, keeps its last checkpoint, and ends `cancelled`."""
    job = service.request_cancel(session, service.get_job(session, job_id, owner))
    session.commit()
    return job_out(job)


@router.get("/{job_id}/candidates", response_model=CandidatesOut)
def read_candidates(
    job_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> CandidatesOut:
    """The strategies an `imbalance: "auto"` job tried: each one's config, validation
    metrics per label, and time; `chosen` marks the winner, whose model is the job's."""
    job = service.get_job(session, job_id, owner)
    candidates = service.get_candidates(session, job)
    ids = [c.id for c in candidates]
    labels = service.get_label_metrics(session, ids, "validation")
    summaries = service.get_split_metrics(session, ids, "validation")
    chosen = (job.result or {}).get("chosen_candidate")
    out = []
    for candidate in candidates:
        summary = summaries.get(candidate.id)
        seconds = None
        if candidate.started_at and candidate.finished_at:
            seconds = (candidate.finished_at - candidate.started_at).total_seconds()
        out.append(
            CandidateOut(
                job_id=candidate.id,
                status=candidate.status,
                strategy=(candidate.result or {}).get("strategy", ""),
                config=candidate.config,
                chosen=candidate.id == chosen,
                seconds=seconds,
                macro_f1=summary.macro_f1 if summary else None,
                micro_f1=summary.micro_f1 if summary else None,
                map=summary.map if summary else None,
                labels=[
                    LabelMetricsOut.model_validate(r, from_attributes=True)
                    for r in labels[candidate.id]
                ],
                error=job_out(candidate).error,
            )
        )
    return CandidatesOut(
        job_id=job.id,
        selection="highest validation macro-F1, thresholds picked on the same split",
        candidates=out,
    )


# Polled job bodies, reused for a quarter of a second: fifty clients polling one job
# cost one query per 0.25 s instead of fifty, and a reader sees a status at most that
# old (progress itself is written about once a second).
_polled = ResponseCache(ttl=0.25)


@router.get("/{job_id}", response_model=JobOut)
async def read_job(job_id: str, owner: str = Depends(current_owner)) -> Response:
    """The job's status and progress; poll it."""
    if (body := _polled.get((owner, job_id))) is not None:
        return Response(body, media_type="application/json")
    body = await run_in_threadpool(_job_body, job_id, owner)
    _polled.put((owner, job_id), body)
    return Response(body, media_type="application/json")


def _job_body(job_id: str, owner: str) -> bytes:
    with get_sessionmaker()() as session:
        job = service.get_job(session, job_id, owner)
        return orjson.dumps(job_out(job).model_dump(mode="json"))


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
        labels=[
            LabelMetricsOut.model_validate(r, from_attributes=True) for r in labels
        ],
        micro_f1=summary.micro_f1,
        macro_f1=summary.macro_f1,
        weighted_f1=summary.weighted_f1,
        samples_f1=summary.samples_f1,
        map=summary.map,
        hamming_loss=summary.hamming_loss,
        subset_accuracy=summary.subset_accuracy,
        null_reasons=NULL_REASONS,
    )
