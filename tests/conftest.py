"""Shared fixtures: a fresh PostgreSQL database built by the real migrations, a Redis
database of its own, and helpers to run real labelwise processes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from service.processes import LabelwiseProcess, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
PG_ADMIN = os.environ.get(
    "LABELWISE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LABELWISE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def dataset_meta(name: str) -> dict:
    return json.loads((DATASETS / name / "meta.json").read_text())


def _reset_caches() -> None:
    from service.db import get_engine, get_sessionmaker
    from service.settings import get_settings

    for cached in (get_settings, get_engine, get_sessionmaker):
        cached.cache_clear()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database for this test session."""
    name = f"labelwise_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{url}/{name}"
    subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate"],
        env={**os.environ, "LABELWISE_DATABASE_URL": url},
        check=True,
        cwd=REPO,
    )
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    return REDIS_URL


@pytest.fixture(scope="session")
def infra_env(pg_database: str, redis_url: str, tmp_path_factory) -> dict[str, str]:
    """Environment for the production mode: PostgreSQL, Redis, a shared data dir, and a
    queue name of this session's own so stray workers never take its jobs."""
    return {
        "LABELWISE_DATABASE_URL": pg_database,
        "LABELWISE_BROKER_URL": redis_url,
        "LABELWISE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "LABELWISE_TRAINING_QUEUE": f"labelwise.test.{secrets.token_hex(4)}",
        "LABELWISE_WORKER_THREADS": "1",
    }


@pytest.fixture
def api_client(infra_env, monkeypatch):
    """The API in-process (FastAPI TestClient) on PostgreSQL and Redis."""
    from fastapi.testclient import TestClient

    for key, value in infra_env.items():
        monkeypatch.setenv(key, value)
    _reset_caches()
    import workers.celery_app as celery_module
    from service.settings import get_settings

    monkeypatch.setattr(celery_module, "app", celery_module.make_celery(get_settings()))
    from service.app import create_app

    with TestClient(create_app()) as client:
        client.headers["Authorization"] = f"Bearer {make_key('tests')}"
        yield client
    _reset_caches()


def make_key(owner: str) -> str:
    from service.auth.keys import create_key
    from service.db import session_scope

    with session_scope() as session:
        return create_key(session, owner)


def cli_key(env: dict[str, str], owner: str) -> str:
    """A key made the way an operator makes one: `labelwise keys create`."""
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "create", "--owner", owner],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return result.stdout.split()[-1]


@pytest.fixture
def spawn(tmp_path):
    """Start labelwise processes; all are stopped when the test ends."""
    started: list[LabelwiseProcess] = []

    def start(args: list[str], env: dict[str, str], name: str) -> LabelwiseProcess:
        process = LabelwiseProcess(args, env, tmp_path / f"{name}.log", cwd=REPO)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def production(infra_env, spawn):
    """`labelwise api` and `labelwise worker` as real processes on PostgreSQL and Redis,
    and a client holding a key made with `labelwise keys create`."""
    from service.client import Client

    port = free_port()
    api = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], infra_env, "api")
    worker = spawn(["worker"], infra_env, "worker")
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, api)
    client = Client(base, api_key=cli_key(infra_env, "e2e"), timeout=120)
    yield client, api, worker
    client.close()
