"""`make bench`'s loader on a small data set, in a database of its own: rows go in through the
batch endpoint, their vectors follow, and a reload starts from an empty vector table."""

from __future__ import annotations

import pytest

from bench import run as bench_run
from bench.common import bench_env
from coda_memory import runtime
from local.services import start_postgres
from tests.conftest import TEST_PG_DIR


@pytest.fixture()
def bench_pg(monkeypatch: pytest.MonkeyPatch):
    pg = start_postgres(TEST_PG_DIR, database="coda_bench_loader_test", fresh_database=True)
    for key, value in bench_env(pg.app_url).items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    yield pg
    monkeypatch.undo()
    runtime.reset()


def test_loader_stores_every_row_and_its_vectors(bench_pg):
    users = bench_run.user_ids(3)
    result = bench_run.ensure_loaded(bench_pg, users, 40, reload=True)
    assert result["reused"] is False
    with bench_run._admin(bench_pg) as conn:
        counts = dict(conn.execute("SELECT user_id, count(*) FROM memories GROUP BY user_id").fetchall())
        assert counts == {u: 40 for u in users}
        vectors = dict(conn.execute("SELECT user_id, count(*) FROM memory_vectors GROUP BY user_id").fetchall())
        assert vectors == {u: 40 for u in users}
    assert bench_run.ensure_loaded(bench_pg, users, 40, reload=False)["reused"] is True
    bench_run.ensure_loaded(bench_pg, users, 40, reload=True)
    with bench_run._admin(bench_pg) as conn:
        vectors = dict(conn.execute("SELECT user_id, count(*) FROM memory_vectors GROUP BY user_id").fetchall())
    assert vectors == {u: 40 for u in users}
