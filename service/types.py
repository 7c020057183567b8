"""Column types and id helpers shared by the tables."""

from __future__ import annotations

import secrets

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB

# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)


def new_id(prefix: str) -> str:
    """``ds_3f9c...``: the prefix names the kind; 96 random bits keep it unique."""
    return f"{prefix}_{secrets.token_hex(12)}"
