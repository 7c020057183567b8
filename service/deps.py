"""Request-scoped dependencies: the database session, storage, the caller's owner."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.orm import Session

from service.db import get_sessionmaker
from service.settings import get_settings
from service.storage import Storage

# TODO(API keys land): every request acts for this owner until keys exist.
LOCAL_OWNER = "local"


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


def current_owner() -> str:
    return LOCAL_OWNER
