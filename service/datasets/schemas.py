from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DatasetOut(BaseModel):
    id: str
    name: str
    kind: str
    created_at: datetime
    rows: int
    features: list[str]
    labels: list[str]
    positives: dict[str, int]


class DatasetProfileOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    dataset_id: str
    rows: int
    n_features: int
    n_labels: int
    labels: list[dict]
    mean_ir: float | None
    max_ir: float | None
    cardinality: float
    density: float
    distinct_labelsets: int
    rows_without_labels: int
    cooccurrence: dict
    scumble: float | None
    warnings: list[dict]
