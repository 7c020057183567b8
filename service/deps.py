"""Request-scoped dependencies: the database session, storage, the caller's owner."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from service.auth.keys import owner_for_key
from service.db import get_sessionmaker
from service.errors import DomainError
from service.settings import get_settings
from service.storage import Storage

# The owner of everything when authentication is off.
LOCAL_OWNER = "local"


class Unauthorized(DomainError):
    status_code = 401


def db_session() -> Iterator[Session]:
    """A session for one request. Handlers commit at their end; anything uncommitted
    (an error midway) is rolled back here."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def storage() -> Storage:
    return Storage(get_settings().data_dir)


def current_owner(request: Request) -> str:
    """The owner the request acts for. Another owner's resources answer 404, never 403,
    so ids do not leak across owners."""
    if not get_settings().auth_enabled:
        return LOCAL_OWNER
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "auth.missing_key",
            "This request needs an 'Authorization: Bearer KEY' header; create a key with "
            "`labelwise keys create --owner NAME`.",
        )
    with get_sessionmaker()() as session:
        owner = owner_for_key(session, key.strip())
    if owner is None:
        raise Unauthorized("auth.invalid_key", "The API key is unknown or revoked.")
    return owner
