"""Idempotency-Key handling for creating requests.

The first response is stored in the same transaction as the resource it describes, so
a retry either finds both or neither. A retry with the same key but a different request
is a 409: the key was reused for something else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth.tables import IdempotencyRecord
from service.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 256


def check_key(key: str | None) -> str | None:
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise InvalidInput(
            "idempotency.invalid_key",
            f"Header 'Idempotency-Key' must be 1 to {MAX_KEY_LENGTH} characters.",
        )
    return key


def replay(
    session: Session, owner: str, endpoint: str, key: str, request_hash: str
) -> JSONResponse | None:
    record = session.get(IdempotencyRecord, (owner, endpoint, key))
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise Conflict(
            "idempotency.key_reused",
            f"Idempotency-Key '{key}' was already used for a different request; use a "
            "new key for a new request.",
        )
    return JSONResponse(record.response, status_code=record.status_code)


def remember(
    session: Session,
    owner: str,
    endpoint: str,
    key: str,
    request_hash: str,
    status_code: int,
    body: dict[str, Any],
) -> None:
    session.add(
        IdempotencyRecord(
            owner=owner,
            endpoint=endpoint,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response=body,
        )
    )
    session.flush()


def commit_or_replay(
    session: Session,
    owner: str,
    endpoint: str,
    key: str | None,
    request_hash: str,
    on_conflict: Callable[[], None] | None = None,
) -> JSONResponse | None:
    """Commit; if a concurrent request with the same key won the race, roll back and
    return its stored response instead."""
    try:
        session.commit()
        return None
    except IntegrityError:
        session.rollback()
        if key is None:
            raise
        if on_conflict:
            on_conflict()
        return replay(session, owner, endpoint, key, request_hash)
