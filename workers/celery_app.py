"""The Celery app. The same code serves the embedded broker (kombu's filesystem
transport, no server) and Redis in production."""

from __future__ import annotations

from celery import Celery

from service.settings import Settings, get_settings

TRAIN_TASK = "labelwise.train"


def make_celery(settings: Settings) -> Celery:
    # `include` is imported by worker processes only, so the API can send tasks by name
    # without importing torch.
    app = Celery(
        "labelwise", broker=settings.resolved_broker_url, include=["workers.tasks"]
    )
    app.conf.update(
        # JSON only: a pickled message could run code in the worker.
        task_serializer="json",
        accept_content=["json"],
        # Job state lives in the database; Celery results would be a second truth.
        task_ignore_result=True,
        task_default_queue=settings.training_queue,
        task_routes={TRAIN_TASK: {"queue": settings.training_queue}},
        # Late ack: a message is acknowledged after the task returns, so a worker that
        # dies mid-job leaves it to be redelivered instead of dropped.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Prefetch 1: a job holds the worker for minutes, so a second reserved message
        # would wait behind it while another worker sits idle.
        worker_prefetch_multiplier=1,
        # A child serves this many jobs and is then replaced, so memory a job leaves
        # behind (allocator caches, a large dataset) is returned to the system.
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        broker_connection_retry_on_startup=True,
        # Keep trying when Redis restarts instead of exiting the worker.
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        # Job messages carry only an id; the row says what to do.
        task_track_started=False,
    )
    if settings.resolved_broker_url.startswith("filesystem://"):
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            # The transport polls its folder; the default 1 s made the embedded
            # queue's latency ~0.9 s.
            "polling_interval": 0.1,
            # Without this kombu writes its control exchange under the working dir.
            "control_folder": str(folder / "control"),
        }
    else:
        # A training job may outlive Redis's default one-hour visibility timeout;
        # the database claim, not redelivery, decides who runs a job.
        app.conf.broker_transport_options = {"visibility_timeout": 12 * 3600}
    return app


app = make_celery(get_settings())
