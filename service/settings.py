"""All settings in one object, read from ``LABELWISE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".labelwise"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELWISE_", extra="ignore")

    # Where datasets and models live. With several machines this must be a shared
    # filesystem (NFS, a mounted volume) that every API process and worker sees.
    data_dir: Path = DEFAULT_DATA_DIR
    # Empty means the embedded default: a SQLite file under data_dir.
    database_url: str = ""
    # Empty means the embedded default: kombu's filesystem transport under data_dir.
    broker_url: str = ""
    # Celery queue for training jobs (prediction is served in the API process).
    training_queue: str = "labelwise.training"
    # Intra-op threads for a worker's torch; 0 lets torch decide (all cores).
    worker_threads: int = Field(0, ge=0)
    # Seconds between progress writes to the database while an epoch runs.
    progress_interval: float = Field(1.0, gt=0)
    # Torch threads of an API process for prediction. One: a request's forward pass is
    # small, and threads fighting over two cores measured 3x slower than one; run more
    # `labelwise api --workers` for parallelism.
    api_threads: int = Field(1, ge=1)
    # Models kept loaded in an API process for prediction.
    model_cache_size: int = Field(8, ge=1)
    log_format: str = Field("console", pattern="^(console|json)$")

    # "on" requires `Authorization: Bearer KEY` on every /v1 request. Empty means the
    # mode's default: off for the embedded default (bound to loopback), on otherwise.
    auth: str = Field("", pattern="^(on|off|)$")
    # Uploads larger than this are refused with 413 as soon as the limit is crossed.
    max_upload_mb: float = Field(1024.0, gt=0)

    # A worker's claim on a job lasts this long unless renewed (seconds). Short enough
    # that a crashed worker's job runs again within a minute, long enough to ride out a
    # slow database write.
    lease_seconds: float = Field(30.0, gt=0)
    # How often a running job renews its lease (seconds); well under lease_seconds.
    heartbeat_seconds: float = Field(5.0, gt=0)
    # How often each worker's reaper looks for expired leases and lost messages.
    reaper_interval: float = Field(5.0, gt=0)
    # A queued job whose message may have been lost (a broker restart without
    # persistence) is sent again after this many seconds unclaimed; duplicates are
    # harmless because only one delivery can claim the job.
    requeue_after: float = Field(30.0, gt=0)
    # Attempts before a job that keeps crashing its worker fails with `worker_lost`.
    max_attempts: int = Field(3, ge=1)
    # A worker child is replaced after this many tasks, bounding memory growth.
    worker_max_tasks_per_child: int = Field(20, ge=1)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'labelwise.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def is_embedded(self) -> bool:
        return not self.database_url

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on" or (self.auth == "" and not self.is_embedded)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()
