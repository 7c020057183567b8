from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service.datasets.ingest import features_from_rows, read_feature_table
from service.db import get_sessionmaker
from service.deps import current_owner, db_session, storage
from service.errors import InvalidInput
from service.models import service
from service.models.schemas import ModelOut, PredictionOut, PredictRequest
from service.settings import get_settings
from service.storage import Storage
from service.uploads import receive_multipart

router = APIRouter(prefix="/v1/models", tags=["models"])
_cache = service.ModelCache(get_settings().model_cache_size)

_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "CSV or Parquet with a column per feature; "
                        "the model's label columns, if present, are ignored.",
                    }
                },
            }
        },
    },
}


@router.get("/{model_id}", response_model=ModelOut)
def read_model(
    model_id: str,
    session: Session = Depends(db_session),
    owner: str = Depends(current_owner),
) -> ModelOut:
    model = service.get_model(session, model_id, owner)
    return ModelOut(
        id=model.id,
        job_id=model.job_id,
        dataset_id=model.dataset_id,
        created_at=model.created_at,
        features=model.feature_names,
        labels=model.label_names,
        thresholds=model.thresholds,
    )


@router.post(
    "/{model_id}/predict",
    response_model=PredictionOut,
    openapi_extra={"requestBody": _PREDICT_BODY},
)
async def predict(
    model_id: str,
    request: Request,
    owner: str = Depends(current_owner),
    files: Storage = Depends(storage),
) -> Response:
    """Score rows sent as JSON (`{"rows": [...]}`) or as a CSV/Parquet `file`, with the
    model's own standardization and per-label thresholds; rows keep input order."""
    predictor = await run_in_threadpool(_load_predictor, model_id, owner, files)
    content_type = request.headers.get("content-type", "")

    if content_type.startswith("multipart/form-data"):
        staged = files.new_upload_path()
        try:
            upload = await receive_multipart(
                request, staged, get_settings().max_upload_bytes
            )
            if not upload.file_received:
                raise InvalidInput(
                    "predict.file_missing",
                    "Multipart field 'file' is missing; attach a CSV or Parquet file "
                    "as 'file'.",
                )
            body = await run_in_threadpool(_predict_file, predictor, staged)
        finally:
            staged.unlink(missing_ok=True)
    else:
        # Parse, score and serialize in one worker thread: 10,000 JSON rows are
        # ~70 ms of parsing that must not hold the event loop.
        body = await run_in_threadpool(_predict_json, predictor, await request.body())
    return Response(body, media_type="application/json")


def _answer(predictor, features) -> bytes:
    probs, labels = service.predict(predictor, features)
    body = {
        "labels": predictor.label_names,
        "thresholds": predictor.thresholds,
        "probabilities": probs,
        "predictions": labels,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _predict_json(predictor, raw: bytes) -> bytes:
    rows = _json_rows(raw)
    return _answer(predictor, features_from_rows(rows, predictor.feature_names))


def _predict_file(predictor, path) -> bytes:
    table = read_feature_table(
        path, predictor.feature_names, ignore_columns=predictor.label_names
    )
    return _answer(predictor, table.features)


def _load_predictor(model_id: str, owner: str, files: Storage):
    with get_sessionmaker()() as session:
        model = service.get_model(session, model_id, owner)
        key = model.storage_key
    return _cache.get(model_id, files.path(key))


def _json_rows(body: bytes) -> list[dict]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            "request.invalid_json", f"The request body is not valid JSON: {exc}."
        ) from exc
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidInput(
            "predict.rows_invalid",
            "Field 'rows' must be a list of objects mapping feature names to numbers.",
        )
    return rows
