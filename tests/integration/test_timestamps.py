"""Every timestamp the API reads, under a property-based test through the real handlers.

Generated RFC 3339 timestamps over the whole range Python and PostgreSQL can write -- year 1 and
9999, offsets up to +-23:59 (so ``0001-01-01T00:00:05+04:00`` lies in year 0 once in UTC), and
offsets no parser accepts (``+24:00``) -- go into every timestamp field: ingest and batch
items, events, PATCH, import lines, the search/context/list filters and the list and export
cursors. Each field answers the one right outcome, decided here independently of the code:
accepted (and stored or applied as that instant in UTC) or refused with a 4xx / a rejected item
whose message names the field. Never a 500.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_EXAMPLES = 60


# --- the timestamps, and what each of them is ----------------------------------------------------


_EDGES = [
    (datetime(1, 1, 1), datetime(1, 1, 2)),  # year 1: a positive offset moves it to year 0
    (datetime(9999, 12, 30), datetime(9999, 12, 31, 23, 59, 59, 999999)),  # a negative one to 10000
    (datetime(1969, 12, 31), datetime(1970, 1, 2)),  # the earliest created_at
    (datetime(9998, 12, 31), datetime(9999, 1, 2)),  # the latest expires_at
]


def _offset(minutes: int) -> str:
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def outside_once_in_utc(draw: st.DrawFn) -> str:
    """A local time in year 1 with a larger positive offset (year 0 in UTC), or in 9999 with a
    larger negative one (year 10000): ``0001-01-01T00:00:05+04:00`` and its kind."""
    minutes = draw(st.integers(1, 24 * 60 - 1))
    into = timedelta(seconds=draw(st.integers(0, minutes * 60 - 1)))
    if draw(st.booleans()):
        return (datetime(1, 1, 1) + into).isoformat() + _offset(minutes)
    return (datetime.max.replace(microsecond=0) - into).isoformat() + _offset(-minutes)


@st.composite
def anywhere(draw: st.DrawFn) -> str:
    """A local time near one of the edges, near now, or anywhere in the years 1-9999, with ``Z``,
    no offset, an offset within +-23:59 (often whole hours), or one no parser takes."""
    now = datetime.now().replace(microsecond=0)
    low, high = draw(st.sampled_from([*_EDGES, (now - timedelta(days=2), now + timedelta(days=2)),
                                      (datetime.min, datetime.max)]))
    local = draw(st.datetimes(min_value=low, max_value=high))
    minutes = draw(st.one_of(st.integers(-23, 23).map(lambda h: h * 60), st.integers(-(24 * 60 - 1), 24 * 60 - 1)))
    offset = draw(st.sampled_from(["Z", "", *[_offset(minutes)] * 4, "+24:00", "-99:00"]))
    return local.isoformat() + offset


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """About one in four outside the range once in UTC, the rest anywhere."""
    return draw(outside_once_in_utc() if draw(st.integers(0, 3)) == 3 else anywhere())


def utc(text: str) -> datetime | None:
    """The instant ``text`` names, in UTC; None when it is no instant Python can hold."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:  # an offset of 24 hours or more
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 0 or 10000 once in UTC
        return None


def created_at_allowed(text: str) -> bool:
    at = utc(text)
    return at is not None and datetime(1970, 1, 1, tzinfo=UTC) <= at <= datetime.now(UTC) + timedelta(minutes=5)


def expires_at_allowed(text: str) -> bool:
    at = utc(text)
    return at is not None and datetime.now(UTC) < at and at.year <= 9998


def instant(text: str) -> bool:
    return utc(text) is not None


def _stored(api, user: str, memory_id: str) -> dict:
    r = api.call("GET", f"/memory/{memory_id}", query={"user_id": user})
    assert r.status == 200, r.body
    return r.body


def _same_instant(stored: str, text: str) -> bool:
    return datetime.fromisoformat(stored) == utc(text)


# --- one probe per field: send the timestamp, report accepted or the refusal's message -----------


@dataclass(frozen=True)
class Probe:
    where: str
    field: str
    allowed: Callable[[str], bool]
    send: Callable[..., str | None]  # (api, user, memory_id, text) -> None if accepted, else the message


def _content() -> str:
    return f"timestamp probe {uuid.uuid4().hex}"


def ingest_field(name: str) -> Callable[..., str | None]:
    def send(api, user, memory_id, text):
        r = api.call("POST", "/ingest", body={"content": _content(), "content_type": "fact", "source_type": "t",
                                              "user_id": user, name: text})
        if r.status == 422:
            return r.body["error"]["message"]
        assert r.status == 201, (r.status, r.body)
        assert _same_instant(_stored(api, user, r.body["memory_id"])[name], text)
        return None
    return send


def batch_field(name: str) -> Callable[..., str | None]:
    def send(api, user, memory_id, text):
        item = {"content": _content(), "content_type": "fact", "source_type": "t", "user_id": user, name: text}
        r = api.call("POST", "/ingest/batch", body={"items": [item]})
        assert r.status == 200, (r.status, r.body)
        [result] = r.body["results"]
        return _item_outcome(api, user, name, text, result)
    return send


def _item_outcome(api, user, name, text, result) -> str | None:
    """A batch's or an event's result for one item: the refusal, or None once the stored value
    is checked."""
    if result["status"] == "rejected":
        return result["error"]["message"]
    assert result["status"] == "created", result
    assert _same_instant(_stored(api, user, result["memory_id"])[name], text)
    return None


def event_field(name: str) -> Callable[..., str | None]:
    def send(api, user, memory_id, text):
        from functions.ingest.app import handler
        from local.apigw import LambdaContext

        event = {"event_type": "fact", "content": _content(), "user_id": user, name: text}
        out = handler({"kind": "ingest_events", "events": [{"event_id": uuid.uuid4().hex, "data": event}]},
                      LambdaContext())
        [result] = out["results"]
        return _item_outcome(api, user, name, text, result)
    return send


def import_field(name: str) -> Callable[..., str | None]:
    def send(api, user, memory_id, text):
        line = {"content": _content(), "content_type": "fact", name: text}
        r = api.call("POST", f"/users/{user}/import", raw_body=json.dumps(line) + "\n")
        assert r.status == 200, (r.status, r.body)
        if r.body["rejected"]:
            [rejected] = r.body["rejected"]
            return rejected["error"]["message"]
        assert r.body["created"] == 1, r.body
        return None
    return send


def patch_expires_at(api, user, memory_id, text):
    r = api.call("PATCH", f"/memory/{memory_id}", query={"user_id": user}, body={"expires_at": text})
    if r.status == 422:
        return r.body["error"]["message"]
    assert r.status == 200, (r.status, r.body)
    assert _same_instant(r.body["expires_at"], text)
    api.call("PATCH", f"/memory/{memory_id}", query={"user_id": user}, body={"expires_at": None})
    return None


def filter_field(route: str, name: str) -> Callable[..., str | None]:
    def send(api, user, memory_id, text):
        r = api.call("POST", route, body={"query": "probe", "user_id": user, "filters": {name: text}})
        if r.status == 422:
            return r.body["error"]["message"]
        assert r.status == 200, (r.status, r.body)
        return None
    return send


def list_field(name: str) -> Callable[..., str | None]:
    def send(api, user, memory_id, text):
        r = api.call("GET", "/memories", query={"user_id": user, name: text})
        if r.status == 422:
            return r.body["error"]["message"]
        assert r.status == 200, (r.status, r.body)
        return None
    return send


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(f"{text}|{uuid.uuid4()}".encode()).decode().rstrip("=")


def list_cursor(api, user, memory_id, text):
    r = api.call("GET", "/memories", query={"user_id": user, "cursor": _cursor(text)})
    if r.status == 400:
        return "cursor: " + r.body["error"]["message"]
    assert r.status == 200, (r.status, r.body)
    return None


def export_cursor(api, user, memory_id, text):
    r = api.call("GET", f"/users/{user}/export", query={"cursor": _cursor(text)})
    if r.status == 400:
        return "cursor: " + r.body["error"]["message"]
    assert r.status == 200, (r.status, r.body)
    return None


PROBES = [
    Probe("POST /ingest", "created_at", created_at_allowed, ingest_field("created_at")),
    Probe("POST /ingest", "expires_at", expires_at_allowed, ingest_field("expires_at")),
    Probe("POST /ingest/batch", "created_at", created_at_allowed, batch_field("created_at")),
    Probe("POST /ingest/batch", "expires_at", expires_at_allowed, batch_field("expires_at")),
    Probe("event", "created_at", created_at_allowed, event_field("created_at")),
    Probe("event", "expires_at", expires_at_allowed, event_field("expires_at")),
    Probe("import line", "created_at", created_at_allowed, import_field("created_at")),
    Probe("import line", "expires_at", expires_at_allowed, import_field("expires_at")),
    Probe("PATCH /memory/{id}", "expires_at", expires_at_allowed, patch_expires_at),
    Probe("POST /search", "filters.created_after", instant, filter_field("/search", "created_after")),
    Probe("POST /search", "filters.created_before", instant, filter_field("/search", "created_before")),
    Probe("POST /context", "filters.created_after", instant, filter_field("/context", "created_after")),
    Probe("POST /context", "filters.created_before", instant, filter_field("/context", "created_before")),
    Probe("GET /memories", "created_after", instant, list_field("created_after")),
    Probe("GET /memories", "created_before", instant, list_field("created_before")),
    Probe("GET /memories", "cursor", instant, list_cursor),
    Probe("GET /users/{user_id}/export", "cursor", instant, export_cursor),
]


@pytest.mark.parametrize("probe", PROBES, ids=[f"{p.where} {p.field}" for p in PROBES])
def test_every_timestamp_field_accepts_what_it_should_and_names_itself_when_it_refuses(probe, api, user_id):
    memory_id = api.ingest(user_id=user_id, content="the memory PATCH probes change").body["memory_id"]

    @given(text=timestamps())
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(text: str) -> None:
        refusal = probe.send(api, user_id, memory_id, text)
        if probe.allowed(text):
            assert refusal is None, (text, refusal)
        else:
            assert refusal is not None, f"{text} was accepted"
            # the field's name, after the parameter's location for a query parameter (query.created_after)
            assert re.search(rf"(^|[ ;.]){re.escape(probe.field)}:", refusal), (text, refusal)

    check()


def test_the_strategy_reaches_the_cases_that_broke():
    """The generator covers the class the fuzzer found (an instant in year 0 once in UTC) and its
    mirror (year 10000), plus offsets no parser takes."""
    assert utc("0001-01-01T00:00:05+04:00") is None and utc("9999-12-31T23:59:59-05:00") is None
    assert utc("2020-01-01T00:00:00+24:00") is None
    assert utc("0001-01-01T00:00:05-04:00") == datetime(1, 1, 1, 4, 0, 5, tzinfo=UTC)
    seen = {"year 0": False, "year 10000": False, "bad offset": False}

    @given(text=timestamps())
    @settings(max_examples=300, derandomize=True, database=None)
    def sample(text: str) -> None:
        if utc(text) is not None:
            return
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            seen["bad offset"] = True
        else:
            seen["year 0" if value.year < 5000 else "year 10000"] = True

    sample()
    assert all(seen.values()), seen
