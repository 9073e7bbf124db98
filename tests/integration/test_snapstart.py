"""SnapStart: the API functions register their hooks with ``snapshot_restore_py`` (the module
Lambda's Python runtime provides), and running those hooks the way SnapStart does -- every
before-snapshot hook, then every after-restore hook -- leaves an environment that opens its own
database connections, draws its own random numbers and still answers requests against the real
database."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import snapshot_restore_py

from coda_memory import runtime, snapstart


def _run(hooks: list[Any]) -> None:
    for func, args, kwargs in hooks:  # what the runtime does with the registry
        func(*args, **kwargs)


def _search(api: Any, user: str) -> Any:
    r = api.search(query="favourite colour", user_id=user, top_k=3)
    assert r.status == 200, r.body
    return r


def _backend_pid() -> int:
    db = runtime.database()
    with db.system_tx() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        row = cur.fetchone()
    assert row is not None
    return int(row["pid"])


@pytest.fixture()
def fresh_runtime(api_env: dict[str, str]) -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


def test_api_functions_register_both_hooks_once(api):
    assert snapstart.register() is True
    snapstart.register()
    befores = [f for f, _, _ in snapshot_restore_py.get_before_snapshot()]
    afters = [f for f, _, _ in snapshot_restore_py.get_after_restore()]
    assert befores.count(snapstart.before_snapshot) == 1
    assert afters.count(snapstart.after_restore) == 1


def test_snapshot_then_restore_replaces_the_pool_and_requests_still_work(api, fresh_runtime, user_id):
    assert api.ingest(user_id=user_id, content="My favourite colour is teal").status == 201
    _search(api, user_id)
    pool_before = runtime.database()
    pid_before = _backend_pid()
    authenticator = runtime.authenticator()  # its key cache expires by the monotonic clock

    _run(snapshot_restore_py.get_before_snapshot())
    assert runtime.database.peek() is None  # no live server session goes into the snapshot
    assert pool_before._opened is False

    _run(snapshot_restore_py.get_after_restore())
    assert runtime.database.peek() is None
    assert runtime.authenticator.peek() is None

    r = _search(api, user_id)
    assert [m["content"] for m in r.body["results"]][:1] == ["My favourite colour is teal"]
    assert runtime.database() is not pool_before
    assert runtime.authenticator() is not authenticator
    assert _backend_pid() != pid_before


def test_restore_drops_a_pool_that_was_opened_after_the_snapshot_hook(api, fresh_runtime, user_id):
    """A restore must not trust the snapshot to be clean (e.g. a request raced the hook)."""
    _search(api, user_id)
    stale = runtime.database()
    _run(snapshot_restore_py.get_after_restore())
    assert stale._opened is False
    _search(api, user_id)
    assert runtime.database() is not stale


def test_environments_restored_from_one_snapshot_draw_different_random_numbers():
    snapshot_state = random.getstate()
    draws = []
    for _ in range(2):  # two environments restored from the same memory image
        random.setstate(snapshot_state)
        snapstart.after_restore()
        draws.append([random.random() for _ in range(4)])
    random.setstate(snapshot_state)
    without_hook = [random.random() for _ in range(4)]
    random.setstate(snapshot_state)
    assert without_hook == [random.random() for _ in range(4)]  # what a restore would repeat
    assert draws[0] != draws[1]


def test_snapstart_init_loads_the_model_and_opens_no_connection(api_env, fresh_runtime, monkeypatch):
    """At publish time (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start) the prewarm loads only the
    model, and the before-snapshot hook waits for it: the snapshot holds a ready model."""
    monkeypatch.setenv("MEMORY_PREWARM", "1")
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    runtime.prewarm()
    snapstart.before_snapshot()
    assert runtime.embedder.peek() is not None
    assert runtime.database.peek() is None


def test_on_demand_init_prewarms_the_pool_too(api_env, fresh_runtime, monkeypatch):
    monkeypatch.setenv("MEMORY_PREWARM", "1")
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    runtime.prewarm()
    runtime.wait_prewarm()
    assert runtime.embedder.peek() is not None
    assert runtime.database.peek() is not None
