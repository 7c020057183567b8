from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utcnow
from service.types import JsonType, Timestamp


class Model(Base):
    """A trained model; weights and description live under data_dir/<storage_key>/."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    feature_names: Mapped[list[str]] = mapped_column(JsonType)
    label_names: Mapped[list[str]] = mapped_column(JsonType)
    thresholds: Mapped[list[float]] = mapped_column(JsonType)
    storage_key: Mapped[str] = mapped_column(String(256))
