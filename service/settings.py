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
    # Models kept loaded in an API process for prediction.
    model_cache_size: int = Field(8, ge=1)
    log_format: str = Field("console", pattern="^(console|json)$")

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
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()
