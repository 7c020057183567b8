"""Celery tasks: thin wrappers that take ids and call the runner."""

from __future__ import annotations

import os

from service.settings import get_settings
from workers.celery_app import TRAIN_TASK, app
from workers.runner import run_job


@app.task(name=TRAIN_TASK, bind=True)
def train(self, job_id: str) -> None:
    # The claim's owner names this very process, so a recycled child never mistakes
    # an older claim for its own.
    worker = f"{self.request.hostname}:{os.getpid()}"
    settings = get_settings()
    if settings.worker_threads:
        import torch

        torch.set_num_threads(settings.worker_threads)
    run_job(job_id, settings, worker)
