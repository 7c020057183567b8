"""The reaper: hands expired claims to the next attempt and resends lost messages.

`labelwise worker` runs one beside each Celery worker, as a process of its own: a thread
in the Celery parent would be copied mid-lock into every pool child forked after it
(children are recycled), and such a child can hang forever on that lock. Reapers
coordinate through the database alone: each pass locks the rows it handles
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two never act on the same job.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from sqlalchemy import select

from service.db import session_scope, utcnow
from service.settings import Settings
from service.tables import Job, JobKind, JobStatus  # every table: the FKs resolve

# Named explicitly: run as `python -m workers.reaper`, __name__ is "__main__".
log = logging.getLogger("workers.reaper")


def reap(settings: Settings, enqueue) -> dict[str, int]:
    """One pass. ``enqueue(job_id)`` sends a message; it is called after commit."""
    now = utcnow()
    to_send: list[str] = []
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "resent": 0}
    with session_scope() as session:
        expired = session.scalars(
            select(Job)
            .where(
                Job.status == JobStatus.RUNNING,
                Job.kind != JobKind.CANDIDATE,
                Job.lease_expires_at < now,
            )
            .with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            if job.cancel_requested:
                _end(job, JobStatus.CANCELLED, None, None, now)
                counts["cancelled"] += 1
            elif job.attempts >= settings.max_attempts:
                _end(
                    job,
                    JobStatus.FAILED,
                    "worker_lost",
                    f"The worker running this job stopped answering on each of "
                    f"{job.attempts} attempts (out of memory, or killed); check the "
                    "worker logs and the job's memory needs.",
                    now,
                )
                counts["failed"] += 1
            else:
                job.status = JobStatus.QUEUED
                job.lease_owner = None
                job.lease_expires_at = None
                job.enqueued_at = now
                job.updated_at = now
                to_send.append(job.id)
                counts["requeued"] += 1
                log.warning(
                    "job.lease_expired job_id=%s attempt=%d", job.id, job.attempts
                )

        stale = session.scalars(
            select(Job)
            .where(
                Job.status == JobStatus.QUEUED,
                Job.kind != JobKind.CANDIDATE,
                Job.enqueued_at < now - timedelta(seconds=settings.requeue_after),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for job in stale:
            job.enqueued_at = now
            to_send.append(job.id)
            counts["resent"] += 1

    for job_id in to_send:
        try:
            enqueue(job_id)
        except Exception as exc:  # the next pass sends it again
            log.warning("reaper.enqueue_failed job_id=%s error=%s", job_id, exc)
    return counts


def _end(job: Job, status: str, code: str | None, message: str | None, now) -> None:
    job.status = status
    job.error_code = code
    job.error_message = message
    job.finished_at = now
    job.updated_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    log.warning(
        "job.reaped job_id=%s status=%s attempts=%d", job.id, status, job.attempts
    )


def run_forever(settings: Settings, parent_pid: int | None = None) -> None:
    """Reap every ``reaper_interval`` seconds; exit when the parent worker is gone."""
    from service.jobs.queue import enqueue_training

    while parent_pid is None or os.getppid() == parent_pid:
        try:
            counts = reap(settings, enqueue_training)
            if any(counts.values()):
                log.info(
                    "reaper.pass %s", " ".join(f"{k}={v}" for k, v in counts.items())
                )
        except Exception as exc:  # database down: try again next interval
            log.warning(
                "reaper.pass_failed error=%s detail=%s", type(exc).__name__, exc
            )
        time.sleep(settings.reaper_interval)


def main() -> None:
    from service.logs import setup_logging
    from service.settings import get_settings

    settings = get_settings()
    setup_logging(settings.log_format)
    run_forever(settings, parent_pid=os.getppid())


if __name__ == "__main__":
    main()
