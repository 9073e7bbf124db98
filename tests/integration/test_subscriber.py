"""The Redis subscriber against a real Redis and the real ingest path (handler + PostgreSQL).

In-thread subscribers forward through boto3 to a Lambda Invoke endpoint that runs the real
``functions.ingest.app.handler``; process tests run ``python -m functions.subscriber`` and kill,
restart and race it.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from functions.subscriber.consumer import Subscriber
from functions.subscriber.invoker import IngestFailed, InProcessInvoker, LambdaInvoker
from local.apigw import LambdaContext
from tests.subscriber_lambda import LambdaEndpoint
from tests.subscriber_support import (
    Names,
    SubscriberProcess,
    contents,
    count_rows,
    ingest_env,
    load_ingest_handler,
    pending_count,
    rows_by_event,
    running,
    seed_event,
    wait_for,
    xadd_event,
)

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(postgres, redis_server):
    from coda_memory.config import reset_settings

    values = ingest_env(postgres.app_url, redis_server.url)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        reset_settings()
        yield values
    reset_settings()


@pytest.fixture(scope="module")
def handler(env):
    return load_ingest_handler()


@pytest.fixture(scope="module")
def endpoint(handler):
    server = LambdaEndpoint(handler)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _healthy_endpoint(request):
    yield
    if "endpoint" in request.fixturenames:
        ep = request.getfixturevalue("endpoint")
        ep.fail_next = 0
        ep.fail_when = None


@pytest.fixture()
def r(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture()
def lambda_invoker(endpoint):
    return LambdaInvoker("IngestFunction", endpoint_url=endpoint.url, timeout_s=60)


def _consumers(r: redis.Redis, names: Names) -> int:
    try:
        return len(r.xinfo_consumers(names.stream, names.group))
    except redis.ResponseError:
        return 0


def _process_env(names: Names, redis_url: str, endpoint: LambdaEndpoint, **extra: str) -> dict:
    return {
        "REDIS_URL": redis_url,
        "LAMBDA_ENDPOINT_URL": endpoint.url,
        "SUBSCRIBER_CLAIM_IDLE_MS": "1500",
        "SUBSCRIBER_CLAIM_INTERVAL_MS": "250",
        "SUBSCRIBER_BACKOFF_BASE_MS": "50",
        "SUBSCRIBER_BACKOFF_MAX_MS": "500",
        "SUBSCRIBER_STATS_INTERVAL_S": "1",
        # The tests read the subscriber's INFO lines and EMF metrics; the API fixtures turn both
        # down for this test process, and subprocesses would inherit that.
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_METRICS_DISABLED": "false",
        **names.env(),
        **extra,
    }





# ----------------------------------------------------------------------------- end to end


def test_stream_and_pubsub_events_are_stored(r, redis_server, endpoint, lambda_invoker, admin_conn):
    names = Names.fresh("basic")
    settings = names.settings(redis_server.url, endpoint.url)
    with running(settings, lambda_invoker) as sub:
        # The group exists once the subscriber is up; pub/sub needs the subscription.
        wait_for(lambda: r.pubsub_numsub(names.channel)[0][1] >= 1, 10, what="pub/sub subscription")
        for i in range(20):
            xadd_event(r, names.stream, seed_event(names.user, i, "stream"), event_id=f"s-{i}")
        for i in range(5):
            # Seed format on the channel, with an optional ingest field.
            r.publish(names.channel, json.dumps(seed_event(names.user, i, "pubsub", tags=["seed"])))
        wait_for(lambda: count_rows(admin_conn, names.user) >= 25, 60, what="25 rows")
        wait_for(lambda: pending_count(r, names) == 0, 10, what="all acked")
        stats = sub.stats.snapshot()
    by_event = rows_by_event(admin_conn, names.user)
    assert all(by_event[f"s-{i}"] == 1 for i in range(20))
    assert count_rows(admin_conn, names.user) == 25
    assert sum(1 for c in contents(admin_conn, names.user) if c.startswith("[pubsub]")) == 5
    assert stats["stored"] == 25 and stats["bridged"] == 5 and stats["dead_lettered"] == 0
    assert r.xlen(names.dlq) == 0


def test_pubsub_message_bridged_once_across_subscribers(r, redis_server, endpoint, lambda_invoker, admin_conn):
    names = Names.fresh("pubsub2")
    s1 = names.settings(redis_server.url, endpoint.url)
    s2 = names.settings(redis_server.url, endpoint.url)
    with running(s1, lambda_invoker) as a, running(s2, lambda_invoker) as b:
        wait_for(lambda: r.pubsub_numsub(names.channel)[0][1] >= 2, 10, what="2 subscriptions")
        for i in range(10):
            r.publish(names.channel, json.dumps(seed_event(names.user, i, "ps")))
        wait_for(lambda: count_rows(admin_conn, names.user) >= 10, 60, what="10 rows")
        wait_for(lambda: pending_count(r, names) == 0, 10, what="all acked")
        bridged = a.stats.bridged + b.stats.bridged
    assert bridged == 10  # each message appended once, not twice
    assert r.xlen(names.stream) == 10
    assert count_rows(admin_conn, names.user) == 10


def test_redelivered_events_do_not_create_second_rows(r, redis_server, endpoint, lambda_invoker, admin_conn):
    names = Names.fresh("idem")
    settings = names.settings(redis_server.url, endpoint.url)
    with running(settings, lambda_invoker):
        for i in range(5):
            xadd_event(r, names.stream, seed_event(names.user, i, "idem"), event_id=f"e-{i}")
        # The same events again (a producer retrying), with and without their event ids.
        for i in range(5):
            xadd_event(r, names.stream, seed_event(names.user, i, "idem"), event_id=f"e-{i}")
        xadd_event(r, names.stream, seed_event(names.user, 0, "idem"))
        wait_for(
            lambda: pending_count(r, names) == 0 and r.xinfo_groups(names.stream)[0]["last-delivered-id"] != b"0-0",
            30,
            what="all acked",
        )
        wait_for(lambda: r.xlen(names.stream) == 11, 5)
    assert count_rows(admin_conn, names.user) == 5
    assert set(rows_by_event(admin_conn, names.user).values()) == {1}


def test_poison_events_go_to_dlq_and_the_rest_is_stored(r, redis_server, endpoint, lambda_invoker, admin_conn):
    names = Names.fresh("poison")
    settings = names.settings(redis_server.url, endpoint.url)
    good = [f"g-{i}" for i in range(10)]
    for i, event_id in enumerate(good[:5]):
        xadd_event(r, names.stream, seed_event(names.user, i, "good"), event_id=event_id)
    poison = {
        "p-notjson": "{not json",
        "p-array": json.dumps([1, 2, 3]),
        "p-missing": json.dumps({"event_type": "message", "user_id": names.user}),
        "p-baduser": json.dumps(seed_event("bad user id with spaces!", 1, "bad")),
        "p-toolong": json.dumps(seed_event(names.user, 1, "long", content="x" * 40_000)),
        "p-importance": json.dumps(seed_event(names.user, 2, "imp", importance=7)),
    }
    for event_id, data in poison.items():
        xadd_event(r, names.stream, data, event_id=event_id)
    r.xadd(names.stream, {"event_id": "p-nodata", "other": "field"})
    for i, event_id in enumerate(good[5:], start=5):
        xadd_event(r, names.stream, seed_event(names.user, i, "good"), event_id=event_id)

    with running(settings, lambda_invoker) as sub:
        wait_for(lambda: r.xlen(names.dlq) >= 7, 60, what="7 dead letters")
        wait_for(lambda: count_rows(admin_conn, names.user) >= 10, 60, what="10 good rows")
        wait_for(lambda: pending_count(r, names) == 0, 10, what="all acked")
        stats = sub.stats.snapshot()
    dlq = {
        fields[b"event_id"].decode(): {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        for _, fields in r.xrange(names.dlq)
    }
    assert set(dlq) == {*poison, "p-nodata"}
    assert "not JSON" in dlq["p-notjson"]["reason"]
    assert "not a JSON object" in dlq["p-array"]["reason"]
    assert "content" in dlq["p-missing"]["reason"]
    assert "missing field 'data'" in dlq["p-nodata"]["reason"]
    for event_id in ("p-baduser", "p-toolong", "p-importance"):
        assert dlq[event_id]["reason"].startswith("rejected: "), dlq[event_id]
    for entry in dlq.values():
        assert entry["source_id"] and entry["attempts"] and entry["source_stream"] == names.stream
    assert dlq["p-notjson"]["data"] == "{not json"
    assert set(rows_by_event(admin_conn, names.user)) == set(good)
    assert stats["dead_lettered"] == 7 and stats["stored"] == 10


def test_ingest_outage_is_retried_then_stored(r, redis_server, endpoint, lambda_invoker, admin_conn):
    names = Names.fresh("outage")
    settings = names.settings(redis_server.url, endpoint.url, max_attempts=3)
    endpoint.fail_type = "ServiceUnavailable"  # what the handler raises when the DB is down
    endpoint.fail_next = 6  # more failures than max_attempts
    for i in range(30):
        xadd_event(r, names.stream, seed_event(names.user, i, "outage"), event_id=f"o-{i}")
    with running(settings, lambda_invoker) as sub:
        wait_for(lambda: count_rows(admin_conn, names.user) >= 30, 60, what="30 rows")
        wait_for(lambda: pending_count(r, names) == 0, 10, what="all acked")
        stats = sub.stats.snapshot()
    assert endpoint.fail_next == 0
    assert stats["retried"] >= 30 and stats["invoke_failures"] >= 6
    assert stats["dead_lettered"] == 0 and r.xlen(names.dlq) == 0  # outages never dead-letter
    assert set(rows_by_event(admin_conn, names.user).values()) == {1}


def test_unreachable_endpoint_is_retried_then_stored(r, redis_server, handler, admin_conn):
    """The ingest endpoint does not even listen at first (the local runner still starting)."""
    names = Names.fresh("unreach")
    from local.services import free_port

    port = free_port()
    invoker = LambdaInvoker("IngestFunction", endpoint_url=f"http://127.0.0.1:{port}", timeout_s=30)
    settings = names.settings(redis_server.url, f"http://127.0.0.1:{port}", max_attempts=2)
    for i in range(10):
        xadd_event(r, names.stream, seed_event(names.user, i, "unreach"), event_id=f"u-{i}")
    with running(settings, invoker) as sub:
        wait_for(lambda: sub.stats.invoke_failures >= 4, 30, what="failed invokes")
        late = LambdaEndpoint(handler)
        late.server.server_close()
        # Re-bind the same port now that the "runner" is up.
        from http.server import ThreadingHTTPServer

        late.server = ThreadingHTTPServer(("127.0.0.1", port), late.server.RequestHandlerClass)
        import threading

        threading.Thread(target=late.server.serve_forever, daemon=True).start()
        try:
            wait_for(lambda: count_rows(admin_conn, names.user) >= 10, 60, what="10 rows")
        finally:
            late.close()
    assert r.xlen(names.dlq) == 0
    assert count_rows(admin_conn, names.user) == 10


def test_failing_event_is_isolated_after_max_attempts(r, redis_server, endpoint, lambda_invoker, admin_conn):
    """A function error caused by one event (not an outage): after max attempts the batch is
    bisected, the culprit dead-lettered, the others stored."""
    names = Names.fresh("bomb")
    settings = names.settings(redis_server.url, endpoint.url, max_attempts=2)

    def bomb(event):
        ids = [e.get("event_id") for e in event.get("events", [])]
        return "RuntimeError" if "b-bomb" in ids else None

    endpoint.fail_when = bomb
    for i in range(8):
        xadd_event(r, names.stream, seed_event(names.user, i, "bomb"), event_id=f"b-{i}")
    xadd_event(r, names.stream, seed_event(names.user, 99, "bomb"), event_id="b-bomb")
    for i in range(8, 16):
        xadd_event(r, names.stream, seed_event(names.user, i, "bomb"), event_id=f"b-{i}")
    with running(settings, lambda_invoker):
        wait_for(lambda: r.xlen(names.dlq) >= 1, 60, what="dead letter")
        wait_for(lambda: count_rows(admin_conn, names.user) >= 16, 60, what="16 rows")
        wait_for(lambda: pending_count(r, names) == 0, 10, what="all acked")
    ((_, fields),) = r.xrange(names.dlq)
    assert fields[b"event_id"] == b"b-bomb"
    assert b"failed after 2 attempts" in fields[b"reason"] and b"RuntimeError" in fields[b"reason"]
    assert int(fields[b"attempts"]) >= 2
    assert set(rows_by_event(admin_conn, names.user)) == {f"b-{i}" for i in range(16)}


def test_attempts_survive_restarts(r, redis_server, admin_conn, handler):
    """Delivery counts live in Redis: an event that already failed max_attempts times on dead
    consumers is dead-lettered by the next one on its first failure."""
    names = Names.fresh("attempts")
    r.xgroup_create(names.stream, names.group, id="0", mkstream=True)
    entry_id = xadd_event(r, names.stream, seed_event(names.user, 1, "att"), event_id="a-1")
    r.xreadgroup(names.group, "dead-0", {names.stream: ">"})  # three consumers read it and died
    r.xautoclaim(names.stream, names.group, "dead-1", 0)
    r.xautoclaim(names.stream, names.group, "dead-2", 0)
    assert r.xpending_range(names.stream, names.group, "-", "+", 1)[0]["times_delivered"] == 3

    def broken(_event, _context):
        raise RuntimeError("handler bug")

    settings = names.settings(redis_server.url, max_attempts=4, claim_idle_ms=100)
    with running(settings, InProcessInvoker(broken, LambdaContext)):
        wait_for(lambda: r.xlen(names.dlq) >= 1, 30, what="dead letter")
    ((_, fields),) = r.xrange(names.dlq)
    assert fields[b"source_id"].decode() == entry_id and int(fields[b"attempts"]) == 4
    assert pending_count(r, names) == 0


def test_sigterm_finishes_the_batch_and_exits_zero(r, redis_server, endpoint, admin_conn, tmp_path):
    names = Names.fresh("sigterm")
    proc = SubscriberProcess(_process_env(names, redis_server.url, endpoint), "term-1", tmp_path)
    try:
        wait_for(lambda: r.exists(names.stream) and r.xinfo_groups(names.stream), 30, what="group")
        for i in range(300):
            xadd_event(r, names.stream, seed_event(names.user, i, "term"), event_id=f"t-{i}")
        wait_for(lambda: count_rows(admin_conn, names.user) > 0, 60, what="first rows")
        started = time.monotonic()
        assert proc.terminate(timeout=30) == 0
        assert time.monotonic() - started < 20
    finally:
        proc.close()
    # Whatever it had read it finished and acknowledged: nothing left pending on it.
    consumers = {c["name"].decode(): c for c in r.xinfo_consumers(names.stream, names.group)}
    assert consumers["term-1"]["pending"] == 0
    records = proc.log_records()
    assert any(rec.get("message") == "subscriber stopped, final counters" for rec in records)
    assert any("_aws" in rec for rec in records), "no EMF metrics in the output"
    assert set(rows_by_event(admin_conn, names.user).values()) == {1}


@pytest.mark.slow
def test_sigkill_mid_stream_then_another_subscriber_stores_everything_once(
    r, redis_server, endpoint, admin_conn, tmp_path
):
    names = Names.fresh("kill")
    total = 600
    env = _process_env(names, redis_server.url, endpoint)
    first = SubscriberProcess(env, "victim", tmp_path)
    second = None
    try:
        wait_for(lambda: r.exists(names.stream) and r.xinfo_groups(names.stream), 30, what="group")
        for i in range(total):
            xadd_event(r, names.stream, seed_event(names.user, i, "kill"), event_id=f"k-{i}")
        wait_for(lambda: count_rows(admin_conn, names.user) >= 50, 60, what="first rows")
        first.kill()
        stored_at_kill = count_rows(admin_conn, names.user)
        assert stored_at_kill < total, "too late: the victim finished before being killed"
        second = SubscriberProcess(env, "survivor", tmp_path)
        wait_for(lambda: count_rows(admin_conn, names.user) >= total, 120, what="all rows")
        wait_for(lambda: pending_count(r, names) == 0, 30, what="all acked")
    finally:
        first.close()
        if second:
            second.terminate()
            second.close()
    by_event = rows_by_event(admin_conn, names.user)
    assert len(by_event) == total and set(by_event.values()) == {1}
    assert count_rows(admin_conn, names.user) == total
    assert r.xlen(names.dlq) == 0


def _drained_by_survivor(r: redis.Redis, admin_conn, names: Names, proc: SubscriberProcess, total: int) -> None:
    """After a Redis restart: the same subscriber process stores the rest and acknowledges
    everything, then stops cleanly."""
    r.connection_pool.reset()
    wait_for(lambda: count_rows(admin_conn, names.user) >= total, 120, what="all rows")
    wait_for(lambda: pending_count(r, names) == 0, 30, what="all acked")
    assert proc.process.poll() is None, "subscriber died with Redis"
    assert proc.terminate() == 0


@pytest.mark.slow
def test_redis_restart_mid_stream_loses_nothing(r, redis_server, endpoint, admin_conn, tmp_path):
    """A producer keeps appending while Redis is restarted under it (AOF on, as in production):
    every entry Redis acknowledged to the producer is stored exactly once."""
    names = Names.fresh("restart")
    total = 600
    proc = SubscriberProcess(_process_env(names, redis_server.url, endpoint), "restart-1", tmp_path)
    written: list[str] = []

    def produce() -> None:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
        for i in range(total):
            while True:
                try:
                    xadd_event(client, names.stream, seed_event(names.user, i, "rs"), f"r-{i}")
                    written.append(f"r-{i}")
                    break
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.05)
            time.sleep(0.004)

    try:
        wait_for(lambda: r.exists(names.stream) and r.xinfo_groups(names.stream), 30, what="group")
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        wait_for(lambda: count_rows(admin_conn, names.user) > 0, 60, what="first rows")
        redis_server.restart()
        producer.join(120)
        assert len(written) == total
        _drained_by_survivor(r, admin_conn, names, proc, total)
    finally:
        proc.close()
    by_event = rows_by_event(admin_conn, names.user)
    assert len(by_event) == total and set(by_event.values()) == {1}


def test_redis_killed_while_the_subscriber_has_a_backlog_stores_each_event_once(
    r, redis_server, endpoint, admin_conn, tmp_path
):
    """A backlog waits in the stream; Redis is SIGKILLed (a crash, not a shutdown) while the
    subscriber has entries read but not yet acknowledged, and comes back from its AOF: the
    entries whose XACK was lost are delivered again and the ingest path stores them once."""
    names = Names.fresh("backlog")
    total = 800
    for i in range(total):
        xadd_event(r, names.stream, seed_event(names.user, i, "bl"), event_id=f"bl-{i}")
    time.sleep(1.2)  # appendfsync everysec: the backlog is on disk before the crash
    proc = SubscriberProcess(_process_env(names, redis_server.url, endpoint), "backlog-1", tmp_path)
    try:
        wait_for(lambda: count_rows(admin_conn, names.user) > 0 and pending_count(r, names) > 0, 60,
                 interval=0.01, what="rows stored and entries in flight")
        stored_at_kill = count_rows(admin_conn, names.user)
        redis_server.restart(hard=True)
        assert stored_at_kill < total, "too late: the backlog was gone before the crash"
        _drained_by_survivor(r, admin_conn, names, proc, total)
    finally:
        proc.close()
    by_event = rows_by_event(admin_conn, names.user)
    print(f"\nbacklog {total}: {stored_at_kill} stored at the crash, {len(by_event)} distinct stored after, "
          f"max rows per event {max(by_event.values())}")
    assert len(by_event) == total and set(by_event.values()) == {1}
    assert count_rows(admin_conn, names.user) == total
    assert r.xlen(names.dlq) == 0


@pytest.mark.slow
def test_two_subscribers_share_the_work_and_store_each_event_once(r, redis_server, endpoint, admin_conn, tmp_path):
    names = Names.fresh("pair")
    total = 800
    env = _process_env(names, redis_server.url, endpoint, SUBSCRIBER_BATCH_SIZE="20")
    procs = [SubscriberProcess(env, f"pair-{n}", tmp_path) for n in range(2)]
    try:
        wait_for(lambda: _consumers(r, names) >= 2, 30, what="two consumers")
        for i in range(total):
            xadd_event(r, names.stream, seed_event(names.user, i, "pair"), event_id=f"p-{i}")
        wait_for(lambda: count_rows(admin_conn, names.user) >= total, 120, what="all rows")
        wait_for(lambda: pending_count(r, names) == 0, 30, what="all acked")
        assert [p.terminate() for p in procs] == [0, 0]
    finally:
        for p in procs:
            p.close()
    by_event = rows_by_event(admin_conn, names.user)
    assert len(by_event) == total and set(by_event.values()) == {1}
    stored = {}
    for p in procs:
        finals = [rec for rec in p.log_records() if rec.get("message") == "subscriber stopped, final counters"]
        stored[p.name] = finals[-1]["counters"]["stored"]
    assert sum(stored.values()) == total, stored
    assert all(v > 0 for v in stored.values()), f"one subscriber did all the work: {stored}"


def test_in_process_invoker_maps_exceptions(handler):
    def broken(_e, _c):
        raise ValueError("boom")

    with pytest.raises(IngestFailed, match="ValueError"):
        InProcessInvoker(broken, LambdaContext)([{"event_id": None, "data": {}}])
    assert Subscriber._backoff(1, 100, 1000) <= 0.1
    assert 0.5 <= Subscriber._backoff(50, 100, 1000) <= 1.0
