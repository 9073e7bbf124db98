"""Session fixtures: one real PostgreSQL (embedded, pgvector) and one real Redis per test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from local.services import REPO_ROOT, Postgres, RedisServer, start_postgres, start_redis

TEST_PG_DIR = REPO_ROOT / ".local" / "pg-test"


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    """A freshly created, migrated test database (the server persists between runs)."""
    return start_postgres(TEST_PG_DIR, database="coda_memory_test", fresh_database=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture()
def admin_conn(postgres: Postgres) -> Iterator[psycopg.Connection]:
    """A superuser connection for arranging and inspecting data behind the app's back."""
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def app_conn(postgres: Postgres) -> Iterator[psycopg.Connection]:
    """A raw connection as the service role (what the handlers use)."""
    with psycopg.connect(postgres.app_url) as conn:
        yield conn


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HOME", str(Path.home()))
