"""Request-scoped dependencies: the database session, storage, the caller's owner."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service.auth.keys import hash_key, owner_for_key
from service.cache import ResponseCache
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


# Key hash -> owner for 30 s, so a client polling a job does not cost a key lookup per
# request; a revoked key keeps working for at most that long.
_owners = ResponseCache(ttl=30.0)


def _lookup_owner(key: str) -> str | None:
    with get_sessionmaker()() as session:
        return owner_for_key(session, key)


async def current_owner(request: Request) -> str:
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
    key = key.strip()
    digest = hash_key(key)
    if (cached := _owners.get(digest)) is not None:
        return cached.decode()
    owner = await run_in_threadpool(_lookup_owner, key)
    if owner is None:
        raise Unauthorized("auth.invalid_key", "The API key is unknown or revoked.")
    _owners.put(digest, owner.encode())
    return owner
