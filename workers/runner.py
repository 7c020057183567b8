"""Running one job: claim its row, feed the engine, record what it reports.

The database is the job's truth, not the broker. A worker claims a job (an attempt
number, its own name as lease owner, a lease expiry), renews the lease from a heartbeat
thread, and fences every write on (attempt, owner): once another attempt has taken the
job, this one's writes match no row and it stops. A second delivery of a message finds
the claim and does nothing; the reaper (``workers.reaper``) gives expired claims to the
next attempt, which resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import torch
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.datasets.tables import Dataset
from service.db import session_scope, utcnow
from service.jobs.tables import (
    Job,
    JobEpoch,
    JobKind,
    JobStatus,
    LabelMetricsRow,
    SplitMetricsRow,
)
from service.models.tables import Model
from service.settings import Settings
from service.storage import Storage
from service.types import new_id
from workers.engine.config import LRFinderConfig, TrainingConfig
from workers.engine.errors import EngineError
from workers.engine.metrics import SplitMetrics
from workers.engine.pipeline import (
    CandidateOutcome,
    LabeledArrays,
    PreparedData,
    evaluate_on,
    prepare,
    select_winner,
    train_candidate,
)
from workers.engine.strategies import Candidate, candidates
from workers.engine.trainer import EpochRecord, Progress, TrainingStopped

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another attempt owns the job now; this one must stop without writing."""


@dataclass(frozen=True)
class Attempt:
    job_id: str
    number: int
    worker: str


def fence(session: Session, attempt: Attempt, **values) -> None:
    """Update the job row only while this attempt still holds it; raise otherwise.

    On PostgreSQL the UPDATE also locks the row until commit, so the reaper cannot
    hand the job on between this check and the writes that follow in the transaction.
    """
    result = session.execute(
        update(Job)
        .where(
            Job.id == attempt.job_id,
            Job.attempts == attempt.number,
            Job.lease_owner == attempt.worker,
            Job.status == JobStatus.RUNNING,
        )
        .values(updated_at=utcnow(), **values)
    )
    if result.rowcount != 1:
        raise LeaseLost(attempt.job_id)


def claim(job_id: str, worker: str, settings: Settings) -> Attempt | None:
    """queued -> running for this worker, or None when another delivery already holds
    the job or it was cancelled or finished."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                lease_owner=worker,
                lease_expires_at=now + timedelta(seconds=settings.lease_seconds),
                started_at=now,
                updated_at=now,
                error_code=None,
                error_message=None,
            )
            .returning(Job.attempts)
        )
        number = result.scalar_one_or_none()
    return None if number is None else Attempt(job_id, number, worker)


class Heartbeat:
    """Renews the lease every ``heartbeat_seconds`` on a thread of its own, so a long
    step or a slow epoch never lets a live job's lease expire."""

    def __init__(self, attempt: Attempt, settings: Settings) -> None:
        self.attempt = attempt
        self.settings = settings
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                with session_scope() as session:
                    fence(
                        session,
                        self.attempt,
                        lease_expires_at=utcnow()
                        + timedelta(seconds=self.settings.lease_seconds),
                    )
            except LeaseLost:
                self.lost.set()
                return
            except Exception as exc:  # database blip: the next beat tries again
                log.warning(
                    "job.heartbeat_failed job_id=%s error=%s",
                    self.attempt.job_id,
                    type(exc).__name__,
                )


class JobReporter:
    """Engine callbacks that write progress and history for one attempt.

    ``record_as`` is the row the history belongs to (a candidate's own row under an
    auto job); the fence is always the claimed job's row.
    """

    def __init__(
        self,
        attempt: Attempt,
        heartbeat: Heartbeat,
        record_as: str,
        epoch_offset: int = 0,
        epochs_total: int | None = None,
    ) -> None:
        self.attempt = attempt
        self.heartbeat = heartbeat
        self.record_as = record_as
        self.epoch_offset = epoch_offset
        self.epochs_total = epochs_total

    def on_progress(self, progress: Progress) -> None:
        with session_scope() as session:
            fence(
                session,
                self.attempt,
                progress_epoch=self.epoch_offset + progress.epoch,
                progress_epochs=self.epochs_total or progress.epochs,
                progress_step=progress.step,
                progress_steps_total=progress.steps_total,
                progress_loss=progress.loss,
                progress_eta_seconds=progress.eta_seconds,
                progress_skipped_steps=progress.skipped_steps,
                progress_rollbacks=progress.rollbacks,
            )

    def on_epoch_end(self, record: EpochRecord) -> None:
        with session_scope() as session:
            fence(
                session,
                self.attempt,
                progress_epoch=self.epoch_offset + record.epoch,
                progress_loss=record.train_loss,
                progress_rollbacks=record.rollbacks,
            )
            # merge: an epoch re-run after a resume overwrites its row, never adds one.
            session.merge(JobEpoch(job_id=self.record_as, **_epoch_fields(record)))
        log.info(
            "job.epoch_finished job_id=%s epoch=%d train_loss=%.5f val_loss=%.5f "
            "val_macro_f1=%s skipped_steps=%d",
            self.record_as,
            record.epoch,
            record.train_loss,
            record.val_loss,
            record.val_macro_f1,
            record.skipped_steps,
        )

    def on_checkpoint(self, epoch: int) -> None:
        with session_scope() as session:
            fence(session, self.attempt, checkpoint_epoch=self.epoch_offset + epoch)

    def should_stop(self) -> bool:
        if self.heartbeat.lost.is_set():
            raise LeaseLost(self.attempt.job_id)
        with session_scope() as session:
            cancel = session.scalar(
                select(Job.cancel_requested).where(Job.id == self.attempt.job_id)
            )
        return bool(cancel)


def _epoch_fields(record: EpochRecord) -> dict:
    fields = asdict(record)
    return {
        key: fields[key]
        for key in (
            "fold",
            "epoch",
            "train_loss",
            "val_loss",
            "val_macro_f1",
            "lr",
            "seconds",
            "skipped_steps",
            "grad_norm",
            "rollbacks",
        )
    }


def run_job(job_id: str, settings: Settings, worker: str) -> None:
    attempt = claim(job_id, worker, settings)
    if attempt is None:
        log.info("job.skipped job_id=%s reason=not_queued", job_id)
        return
    started = time.monotonic()
    log.info(
        "job.started job_id=%s attempt=%d worker=%s", job_id, attempt.number, worker
    )
    try:
        with Heartbeat(attempt, settings) as heartbeat:
            with session_scope() as session:
                kind = session.scalar(select(Job.kind).where(Job.id == job_id))
            if kind == JobKind.LR_FIND:
                _lr_find(attempt, heartbeat, settings)
            else:
                _train(attempt, heartbeat, settings)
    except LeaseLost:
        log.warning("job.lease_lost job_id=%s attempt=%d", job_id, attempt.number)
    except TrainingStopped:
        _finish(attempt, JobStatus.CANCELLED)
        log.info("job.cancelled job_id=%s", job_id)
    except EngineError as exc:
        _finish(attempt, JobStatus.FAILED, exc.code, exc.message)
        log.warning("job.failed job_id=%s code=%s", job_id, exc.code)
    except Exception as exc:
        _finish(
            attempt,
            JobStatus.FAILED,
            "internal_error",
            f"Training stopped on an unexpected {type(exc).__name__}; the worker log "
            f"has the traceback under job_id={job_id}.",
        )
        log.exception("job.crashed job_id=%s", job_id)
    else:
        log.info(
            "job.succeeded job_id=%s seconds=%.2f", job_id, time.monotonic() - started
        )


def _load_job(attempt: Attempt, storage: Storage):
    with session_scope() as session:
        job = session.get(Job, attempt.job_id)
        config = TrainingConfig.model_validate(job.config)
        data = _load(session.get(Dataset, job.dataset_id), storage)
        test = None
        if job.test_dataset_id:
            test = _load(session.get(Dataset, job.test_dataset_id), storage)
        return job.owner, job.dataset_id, job.result, config, data, test


def _check_device(config: TrainingConfig) -> None:
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "device.cuda_unavailable",
            "config.train.device is 'cuda' but this worker has no GPU; use 'auto'.",
        )


def _train(attempt: Attempt, heartbeat: Heartbeat, settings: Settings) -> None:
    storage = Storage(settings.data_dir)
    owner, dataset_id, _result, config, data, test = _load_job(attempt, storage)
    _check_device(config)
    prepared = prepare(config, data)
    plan = candidates(config)
    auto = config.imbalance == "auto"
    rows = _candidate_rows(attempt, plan) if auto else [attempt.job_id]

    outcomes: dict[str, CandidateOutcome] = {}
    # Progress counts epochs over every candidate and fold of the job.
    epochs = config.train.epochs * config.data.folds
    for index, (candidate, row_id) in enumerate(zip(plan, rows, strict=True)):
        reporter = JobReporter(
            attempt,
            heartbeat,
            record_as=row_id,
            epoch_offset=index * epochs,
            epochs_total=epochs * len(plan),
        )
        outcome = _run_candidate(
            attempt, candidate, row_id, prepared, reporter, storage, settings, auto
        )
        if outcome is not None:
            outcomes[row_id] = outcome

    if not outcomes:
        raise EngineError(
            "auto.no_candidate",
            "Every candidate strategy failed; see "
            "GET /v1/jobs/{id}/candidates for each one's error.",
        )
    winner = select_winner(outcomes)
    best = outcomes[winner]
    test_metrics = evaluate_on(best.predictor, test) if test is not None else None
    model_id = new_id("mdl")
    storage_key = f"models/{model_id}"
    shutil.copytree(storage.path(_candidate_key(winner)), storage.path(storage_key))
    result = None
    if auto:
        result = {
            "chosen_candidate": winner,
            "strategy": plan[rows.index(winner)].name,
            "imbalance": plan[rows.index(winner)].config.imbalance.model_dump(
                mode="json"
            ),
            "threshold_notes": dict(
                zip(best.predictor.label_names, best.threshold_notes, strict=True)
            ),
        }
    else:
        result = {
            "threshold_notes": dict(
                zip(best.predictor.label_names, best.threshold_notes, strict=True)
            ),
            "best_epoch": best.best_epoch,
        }
    _record_success(
        attempt,
        owner,
        dataset_id,
        model_id,
        storage_key,
        best,
        test_metrics,
        result,
        winner if auto else None,
    )
    for row_id in rows:
        storage.remove(_candidate_key(row_id))
        shutil.rmtree(_checkpoint_dir(storage, row_id), ignore_errors=True)


def _candidate_key(row_id: str) -> str:
    return f"candidates/{row_id}"


def _checkpoint_dir(storage: Storage, row_id: str) -> Path:
    return storage.path(f"checkpoints/{row_id}")


def _candidate_rows(attempt: Attempt, plan: list[Candidate]) -> list[str]:
    """The candidate jobs of an auto job: created on the first attempt, reused after a
    resume (in plan order)."""
    with session_scope() as session:
        parent = session.get(Job, attempt.job_id)
        existing = list(
            session.scalars(
                select(Job)
                .where(Job.parent_id == parent.id)
                .order_by(Job.created_at, Job.id)
            )
        )
        if existing:
            return [job.id for job in existing]
        fence(session, attempt)
        ids = []
        for position, candidate in enumerate(plan):
            job = Job(
                id=new_id("job"),
                owner=parent.owner,
                kind=JobKind.CANDIDATE,
                status=JobStatus.QUEUED,
                dataset_id=parent.dataset_id,
                parent_id=parent.id,
                config=candidate.config.model_dump(mode="json"),
                config_hash=candidate.config.config_hash(),
                progress_epochs=candidate.config.train.epochs,
                result={"strategy": candidate.name, "position": position},
                created_at=parent.created_at + timedelta(microseconds=position + 1),
            )
            session.add(job)
            ids.append(job.id)
        return ids


def _run_candidate(
    attempt: Attempt,
    candidate: Candidate,
    row_id: str,
    data: PreparedData,
    reporter: JobReporter,
    storage: Storage,
    settings: Settings,
    auto: bool,
) -> CandidateOutcome | None:
    model_dir = storage.path(_candidate_key(row_id))
    if auto:
        with session_scope() as session:
            fence(session, attempt)
            session.execute(
                update(Job)
                .where(Job.id == row_id)
                .values(
                    status=JobStatus.RUNNING,
                    started_at=utcnow(),
                    attempts=Job.attempts + 1,
                )
            )
    try:
        outcome = train_candidate(
            candidate,
            data,
            model_dir,
            reporter,
            checkpoint_dir=_checkpoint_dir(storage, row_id),
            progress_interval=settings.progress_interval,
        )
    except EngineError as exc:
        if not auto:
            raise
        _finish_candidate(attempt, row_id, JobStatus.FAILED, exc.code, exc.message)
        log.warning("candidate.failed job_id=%s code=%s", row_id, exc.code)
        return None
    if auto:
        with session_scope() as session:
            fence(session, attempt)
            _add_metrics(session, row_id, "validation", outcome.validation)
            session.execute(
                update(Job)
                .where(Job.id == row_id)
                .values(
                    status=JobStatus.SUCCEEDED,
                    finished_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
    return outcome


def _finish_candidate(
    attempt: Attempt, row_id: str, status: str, code: str, message: str
) -> None:
    with session_scope() as session:
        fence(session, attempt)
        session.execute(
            update(Job)
            .where(Job.id == row_id)
            .values(
                status=status,
                error_code=code,
                error_message=message,
                finished_at=utcnow(),
                updated_at=utcnow(),
            )
        )


def _lr_find(attempt: Attempt, heartbeat: Heartbeat, settings: Settings) -> None:
    from workers.engine.lr_finder import lr_find

    storage = Storage(settings.data_dir)
    _owner, _dataset_id, result, config, data, _test = _load_job(attempt, storage)
    _check_device(config)
    prepared = prepare(config, data)
    if config.imbalance == "auto":
        config = candidates(config)[
            1
        ].config  # plain BCE: the rate, not the loss, is tested
    finder = LRFinderConfig.model_validate((result or {}).get("lr_finder", {}))
    reporter = JobReporter(attempt, heartbeat, record_as=attempt.job_id)
    fold = prepared.folds[0]  # the range test needs one training part, not k
    found = lr_find(config, finder, fold.x_train, fold.y_train, reporter)
    with session_scope() as session:
        fence(
            session,
            attempt,
            status=JobStatus.SUCCEEDED,
            finished_at=utcnow(),
            lease_expires_at=None,
            result={
                "lr_finder": finder.model_dump(mode="json"),
                "lrs": found.lrs,
                "losses": found.losses,
                "suggested_lr": found.suggested_lr,
                "note": found.note,
            },
        )


def _load(dataset: Dataset, storage: Storage) -> LabeledArrays:
    # Memory-mapped: the split copies the rows it needs, so the full matrix is never
    # held twice.
    features, labels = storage.read_arrays(dataset.storage_key, mmap=True)
    return LabeledArrays(features, labels, dataset.feature_names, dataset.label_names)


def _record_success(
    attempt: Attempt,
    owner: str,
    dataset_id: str,
    model_id: str,
    storage_key: str,
    outcome: CandidateOutcome,
    test: SplitMetrics | None,
    result: dict,
    history_from: str | None,
) -> None:
    predictor = outcome.predictor
    with session_scope() as session:
        fence(session, attempt)
        session.add(
            Model(
                id=model_id,
                owner=owner,
                job_id=attempt.job_id,
                dataset_id=dataset_id,
                feature_names=predictor.feature_names,
                label_names=predictor.label_names,
                thresholds=[float(t) for t in predictor.thresholds],
                storage_key=storage_key,
            )
        )
        _add_metrics(session, attempt.job_id, "validation", outcome.validation)
        if test is not None:
            _add_metrics(session, attempt.job_id, "test", test)
        if history_from:
            # An auto job's history is its winner's, epoch for epoch.
            for record in outcome.history:
                session.merge(JobEpoch(job_id=attempt.job_id, **_epoch_fields(record)))
        fence(
            session,
            attempt,
            status=JobStatus.SUCCEEDED,
            model_id=model_id,
            result=result,
            finished_at=utcnow(),
            lease_expires_at=None,
            progress_eta_seconds=0.0,
        )


def _add_metrics(
    session: Session, job_id: str, split: str, metrics: SplitMetrics
) -> None:
    session.merge(
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
        session.merge(
            LabelMetricsRow(
                job_id=job_id, split=split, label_index=index, **asdict(label)
            )
        )


def _finish(
    attempt: Attempt, status: str, code: str | None = None, message: str | None = None
) -> None:
    try:
        with session_scope() as session:
            fence(
                session,
                attempt,
                status=status,
                error_code=code,
                error_message=message,
                finished_at=utcnow(),
                lease_expires_at=None,
            )
            # Candidates still running under this job end with it.
            session.execute(
                update(Job)
                .where(
                    Job.parent_id == attempt.job_id,
                    Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                )
                .values(status=status, finished_at=utcnow(), updated_at=utcnow())
            )
    except LeaseLost:
        log.warning(
            "job.lease_lost job_id=%s attempt=%d", attempt.job_id, attempt.number
        )
