from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from sqlalchemy.orm import Session

from service.datasets import service
from service.datasets.schemas import DatasetOut
from service.datasets.tables import Dataset
from service.deps import current_owner, db_session, storage
from service.errors import InvalidInput
from service.storage import Storage

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def dataset_out(dataset: Dataset) -> DatasetOut:
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        kind=dataset.kind,
        created_at=dataset.created_at,
        rows=dataset.rows,
        features=dataset.feature_names,
        labels=dataset.label_names,
        positives=dict(zip(dataset.label_names, dataset.positives, strict=True)),
    )


@router.post("", status_code=201, response_model=DatasetOut)
def upload_dataset(
    file: Annotated[UploadFile, File(description="CSV or Parquet; header required.")],
    label_columns: Annotated[
        str, Form(description="Comma-separated names of the 0/1 label columns.")
    ],
    name: Annotated[str | None, Form(max_length=256)] = None,
    session: Session = Depends(db_session),
    files: Storage = Depends(storage),
    owner: str = Depends(current_owner),
) -> DatasetOut:
    labels = service.parse_label_columns(label_columns)
    staged = files.new_upload_path()
    try:
        with open(staged, "wb") as out:
            shutil.copyfileobj(file.file, out, length=1 << 20)
        if staged.stat().st_size == 0:
            raise InvalidInput("dataset.empty_file", "The uploaded file is empty.")
        dataset = service.create_dataset(session, files, staged, labels, name, owner)
        session.commit()
    finally:
        staged.unlink(missing_ok=True)
    return dataset_out(dataset)


@router.get("/{dataset_id}", response_model=DatasetOut)
def read_dataset(
    dataset_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> DatasetOut:
    return dataset_out(service.get_dataset(session, dataset_id, owner))
