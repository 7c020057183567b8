from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service import idempotency
from service.datasets import service
from service.datasets.schemas import DatasetOut, DatasetProfileOut
from service.datasets.tables import Dataset
from service.deps import current_owner, db_session, storage
from service.errors import InvalidInput
from service.settings import get_settings
from service.storage import Storage
from service.uploads import multipart_body_schema, receive_multipart

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
ENDPOINT = "POST /v1/datasets"

_UPLOAD_BODY = multipart_body_schema(
    {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "CSV or Parquet with a header row.",
        },
        "label_columns": {
            "type": "string",
            "description": "Comma-separated names of the 0/1 label columns.",
        },
        "name": {"type": "string", "maxLength": 256},
    },
    required=["file", "label_columns"],
)


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


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra={"requestBody": _UPLOAD_BODY},
)
async def upload_dataset(
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
    session: Session = Depends(db_session),
    files: Storage = Depends(storage),
    owner: str = Depends(current_owner),
):
    """Upload a CSV or Parquet file (multipart `file`) with its `label_columns`. The
    file is streamed to disk and validated before anything is stored."""
    key = idempotency.check_key(idempotency_key)
    staged = files.new_upload_path()
    try:
        upload = await receive_multipart(
            request, staged, get_settings().max_upload_bytes
        )
        labels, name = _form_fields(upload.fields, upload.file_received)
        request_hash = hashlib.sha256(
            f"{upload.sha256}|{','.join(labels)}|{name}".encode()
        ).hexdigest()
        if key and (
            stored := idempotency.replay(session, owner, ENDPOINT, key, request_hash)
        ):
            return stored

        dataset = await run_in_threadpool(
            service.create_dataset, session, files, staged, labels, name, owner
        )
        body = jsonable_encoder(dataset_out(dataset))
        if key:
            idempotency.remember(session, owner, ENDPOINT, key, request_hash, 201, body)
        raced = idempotency.commit_or_replay(
            session,
            owner,
            ENDPOINT,
            key,
            request_hash,
            on_conflict=lambda: files.remove(dataset.storage_key),
        )
        return raced or JSONResponse(body, status_code=201)
    finally:
        staged.unlink(missing_ok=True)


def _form_fields(
    fields: dict[str, str], file_received: bool
) -> tuple[list[str], str | None]:
    if not file_received:
        raise InvalidInput(
            "request.invalid",
            "Field 'file' is required: attach the CSV or Parquet file.",
        )
    if "label_columns" not in fields:
        raise InvalidInput(
            "request.invalid",
            "Field 'label_columns' is required: name the 0/1 label columns, comma-separated.",
        )
    name = fields.get("name") or None
    if name is not None and len(name) > 256:
        raise InvalidInput(
            "request.invalid", "Field 'name' is longer than 256 characters."
        )
    return service.parse_label_columns(fields["label_columns"]), name


@router.get("/{dataset_id}", response_model=DatasetOut)
def read_dataset(
    dataset_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> DatasetOut:
    return dataset_out(service.get_dataset(session, dataset_id, owner))


@router.get("/{dataset_id}/profile", response_model=DatasetProfileOut)
def read_profile(
    dataset_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> DatasetProfileOut:
    """Label statistics computed at upload: rates, imbalance ratios (IRLbl, mean and max
    IR), cardinality, density, label sets, co-occurrence, SCUMBLE, and warnings."""
    dataset = service.get_dataset(session, dataset_id, owner)
    return DatasetProfileOut(dataset_id=dataset.id, **(dataset.profile or {}))
