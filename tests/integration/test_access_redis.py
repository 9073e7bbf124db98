"""Access statistics counted in Redis (``MEMORY_ACCESS_STATS=redis``): the search is a read-only
transaction (it may run on a reader), the counts reach the writer through the access-fold job,
at least once, through a fold that dies half-way, and only ever on the user's own memories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import redis

from local.services import REPO_ROOT


def _counts(admin_conn, ids):
    rows = admin_conn.execute(
        "SELECT id::text, access_count, accessed_at FROM memories WHERE id = ANY(%s::uuid[])", (ids,)
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _read_only_url(url: str) -> str:
    # what a reader endpoint does to every transaction that tries to write
    return url + ("&" if "?" in url else "?") + "options=-c%20default_transaction_read_only%3Don"


@pytest.fixture()
def redis_stats(api_env, settings_env):
    """Access statistics through Redis, and the counter's keys empty at the start."""
    client = redis.Redis.from_url(api_env["REDIS_URL"])
    for key in client.scan_iter("coda:access:*"):
        client.delete(key)
    settings_env(MEMORY_ACCESS_STATS="redis")
    yield client
    for key in client.scan_iter("coda:access:*"):
        client.delete(key)


def _store(api, user_id, n, text):
    return [api.ingest(user_id=user_id, content=f"{text} {i}").body["memory_id"] for i in range(n)]


def _search_ids(api, user_id, query, k):
    r = api.search(query=query, user_id=user_id, top_k=k)
    assert r.status == 200, r.body
    return sorted(m["id"] for m in r.body["results"])


def _fold():
    from coda_memory.usecases import jobs

    return jobs.run_job("access_fold")


def test_counts_reach_the_writer_through_the_fold(api, user_id, admin_conn, redis_stats):
    ids = _store(api, user_id, 3, "The allotment grows beans, bed")
    for _ in range(2):
        assert _search_ids(api, user_id, "beans allotment", 3) == sorted(ids)
    # not in the database yet: counted in Redis
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {0}
    result = _fold()
    assert (result.affected, result.batches, result.complete) == (6, 1, True)
    counts = _counts(admin_conn, ids)
    assert all(c == 2 and at is not None for c, at in counts.values()), counts
    assert redis_stats.keys("coda:access:*") == []
    # a fold with nothing to do changes nothing
    assert _fold().affected == 0
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {2}


def test_search_runs_on_a_read_only_database(api, api_env, user_id, admin_conn, redis_stats, settings_env):
    ids = _store(api, user_id, 2, "The reader replica answers questions about otters, note")
    settings_env(MEMORY_ACCESS_STATS="redis", MEMORY_SEARCH_DATABASE_URL=_read_only_url(api_env["DATABASE_URL"]))
    assert _search_ids(api, user_id, "otters", 2) == sorted(ids)
    _fold()
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {1}


def test_without_redis_a_reader_search_writes_its_counts_on_the_writer(api, api_env, user_id, admin_conn,
                                                                      settings_env):
    ids = _store(api, user_id, 2, "Kites fly best on the dunes in March, memo")
    settings_env(MEMORY_ACCESS_STATS="transaction", MEMORY_SEARCH_DATABASE_URL=_read_only_url(api_env["DATABASE_URL"]))
    assert _search_ids(api, user_id, "kites dunes", 2) == sorted(ids)
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {1}  # committed before the answer


def test_when_redis_fails_the_counts_are_written_directly(api, user_id, admin_conn, settings_env):
    ids = _store(api, user_id, 2, "The ferry to the island leaves at dawn, ticket")
    from local.services import free_port

    settings_env(MEMORY_ACCESS_STATS="redis", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert _search_ids(api, user_id, "ferry island", 2) == sorted(ids)
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {1}


# The fold in a process of its own that dies (os._exit: no cleanup, no finally) inside the
# database transaction of the second user it folds, before that transaction commits.
_CRASHING_FOLD = """
import os
from coda_memory.db import memories
from coda_memory.usecases import jobs
real, calls = memories.add_accesses, []
def add_accesses(cur, user_id, counts, last_at):
    calls.append(user_id)
    if len(calls) == 2:
        os._exit(3)
    real(cur, user_id, counts, last_at)
memories.add_accesses = add_accesses
jobs.run_job("access_fold")
"""


def test_a_fold_that_dies_half_way_loses_and_repeats_nothing(api, api_env, admin_conn, redis_stats):
    users = sorted(f"user-{uuid.uuid4().hex[:12]}" for _ in range(3))
    ids = {u: _store(api, u, 2, f"Cello practice notes for {u}, page") for u in users}
    for u in users:
        _search_ids(api, u, "cello practice", 2)
    env = {**os.environ, **api_env, "MEMORY_ACCESS_STATS": "redis", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", _CRASHING_FOLD], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr[-2000:]
    assert {c for c, _ in _counts(admin_conn, ids[users[0]]).values()} == {1}  # committed, then forgotten
    assert {c for c, _ in _counts(admin_conn, ids[users[1]] + ids[users[2]]).values()} == {0}
    # accesses after the crash wait in a new pending hash
    _search_ids(api, users[2], "cello practice", 2)
    redis_stats.delete("coda:access:fold-lock")  # as its expiry would, a few minutes later
    first = _fold()
    assert (first.batches, first.affected) == (2, 4)  # what the dead fold left: users 1 and 2
    second = _fold()
    assert (second.batches, second.affected) == (1, 2)  # the new accesses of user 2
    assert {c for c, _ in _counts(admin_conn, ids[users[0]] + ids[users[1]]).values()} == {1}
    assert {c for c, _ in _counts(admin_conn, ids[users[2]]).values()} == {2}
    assert redis_stats.keys("coda:access:*") == []


def test_one_fold_at_a_time(api, user_id, admin_conn, redis_stats):
    ids = _store(api, user_id, 1, "Sourdough starter fed at nine, jar")
    _search_ids(api, user_id, "sourdough starter", 1)
    redis_stats.set("coda:access:fold-lock", "another-fold")
    assert _fold().params["skipped"] == "another fold is running"
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {0}
    redis_stats.delete("coda:access:fold-lock")
    assert _fold().affected == 1


def test_counts_never_reach_another_users_memories(api, admin_conn, redis_stats):
    alice, mallory = (f"user-{uuid.uuid4().hex[:12]}" for _ in range(2))
    (alice_memory,) = _store(api, alice, 1, "Alice's locker code is written in her diary, entry")
    (mallory_memory,) = _store(api, mallory, 1, "Mallory's notes, entry")
    # counts filed under mallory for alice's memory (as a forged or mixed-up field would be),
    # and a field that is not the counter's at all
    redis_stats.hset("coda:access:pending", mapping={f"{alice_memory}:{mallory}": 5, "junk": 1,
                                                     f"{mallory_memory}:{mallory}": 1})
    result = _fold()
    assert result.affected == 6  # taken from Redis ...
    counts = _counts(admin_conn, [alice_memory, mallory_memory])
    assert counts[alice_memory][0] == 0  # ... but only mallory's own memory changed
    assert counts[mallory_memory][0] == 1
    assert redis_stats.keys("coda:access:*") == []


def test_fold_handler_is_the_scheduled_entry_point(api, user_id, admin_conn, redis_stats):
    from functions.jobs import app
    from local.apigw import LambdaContext

    ids = _store(api, user_id, 1, "The greenhouse thermometer reads high at noon, log")
    _search_ids(api, user_id, "greenhouse thermometer", 1)
    out = app.access_fold_handler({"source": "aws.events"}, LambdaContext("access-fold"))
    assert out["job"] == "access_fold" and out["affected"] == 1
    assert json.loads(json.dumps(out))["complete"] is True
    assert {c for c, _ in _counts(admin_conn, ids).values()} == {1}
