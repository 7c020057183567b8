"""Datasets: validate an upload, store its arrays, record the row.

Validation happens before anything is stored: a rejected upload leaves no row and no
file behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from service.datasets.ingest import read_training_table, sniff_format
from service.datasets.profile import compute_profile
from service.datasets.tables import Dataset
from service.errors import InvalidInput, NotFound
from service.storage import Storage
from service.types import new_id

log = logging.getLogger(__name__)


def parse_label_columns(raw: str) -> list[str]:
    labels = [part.strip() for part in raw.split(",") if part.strip()]
    if not labels:
        raise InvalidInput(
            "dataset.no_label_columns",
            "Field 'label_columns' is empty; name the 0/1 label columns, comma-separated.",
        )
    return labels


def create_dataset(
    session: Session,
    storage: Storage,
    upload: Path,
    label_columns: list[str],
    name: str | None,
    owner: str,
) -> Dataset:
    """Parse and validate ``upload``, then store it; the caller commits."""
    source_format = sniff_format(upload)
    table = read_training_table(upload, label_columns)

    dataset_id = new_id("ds")
    storage_key = f"datasets/{dataset_id}"
    storage.write_arrays(storage_key, table.features, table.labels)
    positives = table.labels.sum(axis=0, dtype=np.int64)
    dataset = Dataset(
        id=dataset_id,
        owner=owner,
        name=name or dataset_id,
        rows=int(table.features.shape[0]),
        feature_names=table.feature_names,
        label_names=table.label_names,
        positives=[int(p) for p in positives],
        source_format=source_format,
        size_bytes=upload.stat().st_size,
        storage_key=storage_key,
        profile=_profile(table),
    )
    session.add(dataset)
    session.flush()
    log.info(
        "dataset.created dataset_id=%s rows=%d features=%d labels=%d",
        dataset_id,
        dataset.rows,
        len(dataset.feature_names),
        len(dataset.label_names),
    )
    return dataset


def _profile(table) -> dict:
    # One BLAS thread: the profile's small products ran 20x slower with OpenBLAS
    # threads fighting over two cores.
    with threadpool_limits(1):
        return compute_profile(
            table.features, table.labels, table.feature_names, table.label_names
        )


def get_dataset(
    session: Session, dataset_id: str, owner: str, field: str = "id"
) -> Dataset:
    dataset = session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner)
    )
    if dataset is None:
        raise NotFound("dataset.not_found", f"No dataset with {field} '{dataset_id}'.")
    return dataset
