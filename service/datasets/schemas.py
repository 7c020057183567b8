from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class DatasetOut(BaseModel):
    id: str
    name: str
    kind: str
    created_at: datetime
    rows: int
    features: list[str]
    labels: list[str]
    positives: dict[str, int]
