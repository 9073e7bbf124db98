"""Session fixtures: one real PostgreSQL (embedded, pgvector) and one real Redis per test run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from local.services import REPO_ROOT, Postgres, RedisServer, start_postgres, start_redis

if TYPE_CHECKING:
    from coda_memory.db.pool import Database

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


# --- the API through its real Lambda handlers ------------------------------------------------

from tests.apigw import SERVICE_KEY, Response, read_response  # noqa: E402


@pytest.fixture(scope="session")
def api_env(postgres: Postgres, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    """Environment of the functions under test; settings and resources are rebuilt from it."""
    from coda_memory import runtime

    env = {
        "DATABASE_URL": postgres.app_url,
        "REDIS_URL": redis_server.url,
        "MEMORY_API_KEY": SERVICE_KEY,
        "MEMORY_RATE_LIMIT_BURST": "0",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    runtime.reset()
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    runtime.reset()


class Api:
    """Calls routes the way API Gateway does: the template says which function serves a route
    (``local.apigw.InProcessApi``), and that function's real handler answers."""

    def __init__(self) -> None:
        from local.apigw import InProcessApi

        self.gateway = InProcessApi()
        self.handlers = {"ingest": self.gateway.handler("IngestFunction"),
                         "retrieve": self.gateway.handler("RetrieveFunction")}

    def call(self, method: str, path: str, *, api_key: str | None = SERVICE_KEY, **kwargs: object) -> Response:
        return read_response(self.gateway(method, path, api_key=api_key, **kwargs))

    def ingest(self, **item: object) -> Response:
        item.setdefault("content_type", "fact")
        item.setdefault("source_type", "test")
        return self.call("POST", "/ingest", body=item)

    def search(self, **body: object) -> Response:
        return self.call("POST", "/search", body=body)


@pytest.fixture()
def api(api_env: dict[str, str]) -> Api:
    return Api()


@pytest.fixture()
def settings_env(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Change settings for one test; resources are rebuilt before and after."""
    import redis

    from coda_memory import runtime

    def apply(**env: str) -> None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        runtime.reset()
        # Buckets live in Redis and outlive a test; start every test with full ones.
        client = redis.Redis.from_url(api_env["REDIS_URL"])
        for key in client.scan_iter("coda:rl:*"):
            client.delete(key)

    yield apply
    monkeypatch.undo()
    runtime.reset()


@pytest.fixture()
def user_id() -> str:
    from tests.dbrows import new_user

    return new_user()


@pytest.fixture()
def db(postgres: Postgres) -> Iterator[Database]:
    """The data layer's pool, connected as the application role (row-level security applies)."""
    from coda_memory.db.pool import Database

    database = Database(postgres.app_url)
    yield database
    database.close()


# --- AWS APIs (moto; the databases stay real) ---------------------------------------------------

AWS_REGION = "us-east-1"


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every AWS API call in the test goes to moto (fake credentials, one region)."""
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": AWS_REGION,
                        "AWS_REGION": AWS_REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield
