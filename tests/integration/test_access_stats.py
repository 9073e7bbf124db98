"""Access statistics are part of the search: committed before the handler returns, so they
survive Lambda's freeze of the execution environment (nothing runs after the handler returns)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from local.services import REPO_ROOT

# One Lambda invocation, then the environment is destroyed at once (os._exit: no atexit, no
# background thread gets to run) -- the harshest form of "frozen after the handler returns".
_ONE_INVOCATION = """
import json, os, sys
from functions.retrieve.app import handler
from tests.apigw import invoke
body = json.loads(sys.argv[1])
r = invoke(handler, "POST", "/search", body=body)
print(json.dumps({"status": r.status, "ids": [m["id"] for m in r.body["results"]]}), flush=True)
os._exit(0)
"""


def _counts(admin_conn, ids):
    rows = admin_conn.execute(
        "SELECT id::text, access_count, accessed_at FROM memories WHERE id = ANY(%s::uuid[])", (ids,)
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_statistics_are_committed_when_the_handler_returns(api, user_id, admin_conn):
    ids = [api.ingest(user_id=user_id, content=f"I keep bees on the roof, hive {i}").body["memory_id"]
           for i in range(3)]
    for n in (1, 2):
        r = api.search(query="bees", user_id=user_id, top_k=3)
        assert r.status == 200 and sorted(m["id"] for m in r.body["results"]) == sorted(ids)
        # read at once, from another connection, with no flush of any kind
        counts = _counts(admin_conn, ids)
        assert all(c == n and at is not None for c, at in counts.values()), counts
    assert not [t for t in threading.enumerate() if "access" in t.name]  # no background writer


def test_statistics_survive_an_environment_destroyed_right_after_the_handler(api_env, api, user_id, admin_conn):
    ids = [api.ingest(user_id=user_id, content=f"The lighthouse keeper logs storm {i}").body["memory_id"]
           for i in range(4)]
    env = {**os.environ, **api_env, "PYTHONPATH": str(REPO_ROOT)}
    for n in (1, 2):
        out = subprocess.run(
            [sys.executable, "-c", _ONE_INVOCATION,
             json.dumps({"query": "storm log", "user_id": user_id, "top_k": 4})],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        answer = json.loads(out.stdout.strip().splitlines()[-1])
        assert answer["status"] == 200 and sorted(answer["ids"]) == sorted(ids)
        assert {c for c, _ in _counts(admin_conn, ids).values()} == {n}
