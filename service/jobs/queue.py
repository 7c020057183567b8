"""Sending job messages. Called only after the job row is committed, so a worker never
receives an id it cannot read."""

from __future__ import annotations

import logging

from service.errors import ServiceUnavailable

log = logging.getLogger(__name__)


def enqueue_training(job_id: str) -> None:
    from workers.celery_app import TRAIN_TASK, app

    try:
        app.send_task(TRAIN_TASK, args=[job_id], queue=app.conf.task_default_queue)
    except Exception as exc:  # kombu raises transport-specific errors
        log.error("job.enqueue_failed job_id=%s error=%s", job_id, exc)
        raise ServiceUnavailable(
            "broker.unavailable",
            f"Job '{job_id}' is stored but could not be queued because the broker is "
            "unreachable; check LABELWISE_BROKER_URL and retry.",
        ) from exc
