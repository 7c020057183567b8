from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ModelOut(BaseModel):
    id: str
    job_id: str
    dataset_id: str
    created_at: datetime
    features: list[str]
    labels: list[str]
    thresholds: list[float]


class PredictRequest(BaseModel):
    rows: list[dict[str, float | int | bool | None]] = Field(
        description="Feature rows, each mapping every feature name to a number."
    )


class PredictionOut(BaseModel):
    labels: list[str]
    thresholds: list[float]
    probabilities: list[list[float]] = Field(description="[rows][labels], input order.")
    predictions: list[list[int]] = Field(
        description="1 where probability >= threshold."
    )
