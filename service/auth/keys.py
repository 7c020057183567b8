"""API keys: `lw_` + 32 random bytes, stored as sha256 only."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.tables import ApiKey
from service.types import new_id

KEY_PREFIX = "lw_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, owner: str) -> str:
    """Add a key for ``owner`` and return it; this is the only time it is visible."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(id=new_id("key"), owner=owner, key_hash=hash_key(key), prefix=key[:10])
    )
    session.flush()
    return key


def owner_for_key(session: Session, key: str) -> str | None:
    return session.scalar(
        select(ApiKey.owner).where(
            ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)
        )
    )
