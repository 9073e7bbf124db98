"""The transfer CLI's chunking and retries (no server needed)."""

from __future__ import annotations

import pytest


def test_transfer_chunks_respect_both_limits():
    from coda_memory.cli.transfer import chunks

    lines = [b"a" * 10 + b"\n"] * 5 + [b"b" * 50]
    got = list(chunks(iter(lines), max_bytes=30, max_lines=2))
    assert [(first, len(c)) for first, c in got] == [(1, 2), (3, 2), (5, 1), (6, 1)]
    assert got[-1][1] == [b"b" * 50 + b"\n"]


def test_transfer_retries_rate_limits_but_not_quota(monkeypatch):
    from coda_memory.cli import transfer

    answers = [transfer.HttpResponse(429, {"retry-after": "2"}, b'{"error": {"code": "rate_limited"}}'),
               transfer.HttpResponse(503, {}, b"{}"),
               transfer.HttpResponse(200, {}, b'{"created": 1, "duplicate": 0, "rejected": []}')]
    slept = []
    resp = transfer._send(lambda *a: answers.pop(0), "POST", "/x", {}, b"", sleep=slept.append)
    assert resp.status == 200 and slept == [2.0, 1.0]
    quota = transfer.HttpResponse(429, {"retry-after": "3600"}, b'{"error": {"code": "quota_exceeded"}}')
    with pytest.raises(transfer.TransferError, match="429"):
        transfer._send(lambda *a: quota, "POST", "/x", {}, b"", sleep=slept.append)
