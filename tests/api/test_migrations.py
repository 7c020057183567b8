"""The Alembic migrations build exactly the schema the code declares, on PostgreSQL and
on SQLite, and run down and up again."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import PG_ADMIN, REPO

pytestmark = pytest.mark.infra


def alembic(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def scratch_pg():
    name = f"labelwise_mig_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_migrations_match_the_models_and_reverse(backend, scratch_pg, tmp_path):
    if backend == "postgresql":
        env = {"LABELWISE_DATABASE_URL": scratch_pg}
    else:
        env = {"LABELWISE_DATABASE_URL": "", "LABELWISE_DATA_DIR": str(tmp_path)}
    alembic(env, "upgrade", "head")
    assert "No new upgrade operations detected" in alembic(env, "check")
    alembic(env, "downgrade", "base")
    alembic(env, "upgrade", "head")
