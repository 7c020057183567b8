"""Celery tasks: thin wrappers that take ids and call the runner."""

from __future__ import annotations

from service.settings import get_settings
from workers.celery_app import TRAIN_TASK, app
from workers.runner import run_job


@app.task(name=TRAIN_TASK)
def train(job_id: str) -> None:
    run_job(job_id, get_settings())
