"""Every table, imported in one place for Alembic and the app."""

from service.datasets.tables import Dataset
from service.db import Base
from service.jobs.tables import Job, JobEpoch, JobStatus, LabelMetricsRow, SplitMetricsRow
from service.models.tables import Model

__all__ = [
    "Base", "Dataset", "Job", "JobEpoch", "JobStatus", "LabelMetricsRow", "Model",
    "SplitMetricsRow",
]
