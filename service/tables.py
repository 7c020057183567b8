"""Every table, imported in one place for Alembic and the app."""

from service.auth.tables import ApiKey, IdempotencyRecord
from service.datasets.tables import Dataset
from service.db import Base
from service.jobs.tables import (
    Job,
    JobEpoch,
    JobKind,
    JobStatus,
    LabelMetricsRow,
    SplitMetricsRow,
)
from service.models.tables import Model

__all__ = [
    "ApiKey",
    "Base",
    "IdempotencyRecord",
    "JobKind",
    "Dataset",
    "Job",
    "JobEpoch",
    "JobStatus",
    "LabelMetricsRow",
    "Model",
    "SplitMetricsRow",
]
