"""Running one training job: claim its row, feed the engine, record what it reports.

The engine knows nothing of the database; ``JobReporter`` turns its callbacks into
short transactions on the job's rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import torch
from sqlalchemy import select, update

from service.datasets.tables import Dataset
from service.db import session_scope, utcnow
from service.jobs.tables import Job, JobEpoch, JobStatus, LabelMetricsRow, SplitMetricsRow
from service.models.tables import Model
from service.settings import Settings
from service.storage import Storage
from service.types import new_id
from workers.engine.config import TrainingConfig
from workers.engine.errors import EngineError
from workers.engine.metrics import SplitMetrics
from workers.engine.pipeline import LabeledArrays, TrainingOutcome, run_training
from workers.engine.trainer import EpochRecord, Progress, TrainingStopped

log = logging.getLogger(__name__)


class JobReporter:
    """Engine callbacks that write progress and history rows for one job."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def on_progress(self, progress: Progress) -> None:
        with session_scope() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.status == JobStatus.RUNNING)
                .values(
                    progress_epoch=progress.epoch,
                    progress_epochs=progress.epochs,
                    progress_step=progress.step,
                    progress_steps_total=progress.steps_total,
                    progress_loss=progress.loss,
                    progress_eta_seconds=progress.eta_seconds,
                    updated_at=utcnow(),
                )
            )

    def on_epoch_end(self, record: EpochRecord) -> None:
        with session_scope() as session:
            session.merge(JobEpoch(job_id=self.job_id, **asdict(record)))
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(progress_epoch=record.epoch, progress_loss=record.train_loss,
                        updated_at=utcnow())
            )
        log.info(
            "job.epoch_finished job_id=%s epoch=%d train_loss=%.5f val_loss=%.5f "
            "val_macro_f1=%s",
            self.job_id, record.epoch, record.train_loss, record.val_loss,
            record.val_macro_f1,
        )

    def should_stop(self) -> bool:
        with session_scope() as session:
            status = session.scalar(select(Job.status).where(Job.id == self.job_id))
        return status != JobStatus.RUNNING


def claim(job_id: str) -> bool:
    """Move the job from queued to running; False if another delivery got there first
    or the job was cancelled while queued."""
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                started_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        return result.rowcount == 1


def run_job(job_id: str, settings: Settings) -> None:
    if not claim(job_id):
        log.info("job.skipped job_id=%s reason=not_queued", job_id)
        return
    started = time.monotonic()
    log.info("job.started job_id=%s", job_id)
    try:
        _train(job_id, settings)
    except TrainingStopped:
        _finish(job_id, JobStatus.CANCELLED)
        log.info("job.cancelled job_id=%s", job_id)
    except EngineError as exc:
        _finish(job_id, JobStatus.FAILED, exc.code, exc.message)
        log.warning("job.failed job_id=%s code=%s", job_id, exc.code)
    except Exception as exc:
        _finish(
            job_id, JobStatus.FAILED, "internal_error",
            f"Training stopped on an unexpected {type(exc).__name__}; the worker log "
            f"has the traceback under job_id={job_id}.",
        )
        log.exception("job.crashed job_id=%s", job_id)
    else:
        log.info("job.succeeded job_id=%s seconds=%.2f", job_id, time.monotonic() - started)


def _train(job_id: str, settings: Settings) -> None:
    storage = Storage(settings.data_dir)
    with session_scope() as session:
        job = session.get(Job, job_id)
        config = TrainingConfig.model_validate(job.config)
        data = _load(session.get(Dataset, job.dataset_id), storage)
        test = None
        if job.test_dataset_id:
            test = _load(session.get(Dataset, job.test_dataset_id), storage)
        owner, dataset_id = job.owner, job.dataset_id

    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "device.cuda_unavailable",
            "config.train.device is 'cuda' but this worker has no GPU; use 'auto'.",
        )

    model_id = new_id("mdl")
    storage_key = f"models/{model_id}"
    outcome = run_training(
        config, data, storage.path(storage_key), JobReporter(job_id), test=test
    )
    _record_success(job_id, owner, dataset_id, model_id, storage_key, outcome)


def _load(dataset: Dataset, storage: Storage) -> LabeledArrays:
    features, labels = storage.read_arrays(dataset.storage_key)
    return LabeledArrays(features, labels, dataset.feature_names, dataset.label_names)


def _record_success(
    job_id: str, owner: str, dataset_id: str, model_id: str, storage_key: str,
    outcome: TrainingOutcome,
) -> None:
    predictor = outcome.predictor
    with session_scope() as session:
        session.add(
            Model(
                id=model_id,
                owner=owner,
                job_id=job_id,
                dataset_id=dataset_id,
                feature_names=predictor.feature_names,
                label_names=predictor.label_names,
                thresholds=[float(t) for t in predictor.thresholds],
                storage_key=storage_key,
            )
        )
        _add_metrics(session, job_id, "validation", outcome.validation)
        if outcome.test is not None:
            _add_metrics(session, job_id, "test", outcome.test)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.SUCCEEDED,
                model_id=model_id,
                finished_at=utcnow(),
                updated_at=utcnow(),
                progress_eta_seconds=0.0,
            )
        )


def _add_metrics(session, job_id: str, split: str, metrics: SplitMetrics) -> None:
    session.add(
        SplitMetricsRow(
            job_id=job_id,
            split=split,
            rows=metrics.rows,
            micro_f1=metrics.micro_f1,
            macro_f1=metrics.macro_f1,
            weighted_f1=metrics.weighted_f1,
            samples_f1=metrics.samples_f1,
            map=metrics.map,
            hamming_loss=metrics.hamming_loss,
            subset_accuracy=metrics.subset_accuracy,
        )
    )
    for index, label in enumerate(metrics.labels):
        session.add(LabelMetricsRow(job_id=job_id, split=split, label_index=index,
                                    **asdict(label)))


def _finish(job_id: str, status: str, code: str | None = None,
            message: str | None = None) -> None:
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=status, error_code=code, error_message=message,
                    finished_at=utcnow(), updated_at=utcnow())
        )
