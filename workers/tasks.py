"""Celery tasks: thin wrappers that take ids and call the runner."""

from __future__ import annotations

import os

# torch.optim imports torch._dynamo on first use, which takes seconds; doing it here,
# in the worker's parent before the pool forks, spares every child (and each job's
# first epoch) that cost. It is a plain import: no CUDA is touched.
import torch._dynamo  # noqa: F401

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
