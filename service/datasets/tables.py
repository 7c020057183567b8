from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utcnow
from service.types import JsonType, Timestamp


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32), default="tabular")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    rows: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[str]] = mapped_column(JsonType)
    label_names: Mapped[list[str]] = mapped_column(JsonType)
    positives: Mapped[list[int]] = mapped_column(JsonType)
    source_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Arrays live under data_dir/<storage_key>/ (features.npy, labels.npy).
    storage_key: Mapped[str] = mapped_column(String(256))
    profile: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
