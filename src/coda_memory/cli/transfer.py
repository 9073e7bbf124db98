"""Move a user's memories in and out through the API, page by page, with a progress bar::

    MEMORY_API_URL=http://127.0.0.1:3000 MEMORY_API_KEY=... \\
        python -m coda_memory.cli.transfer export --user alice alice.ndjson [--embeddings]
    python -m coda_memory.cli.transfer import --user bob alice.ndjson

``export`` follows ``X-Next-Cursor`` until the last page and writes NDJSON (``-`` = stdout).
``import`` sends the file in chunks under the API's body limit (1 MB by default, at most
``MEMORY_MAX_IMPORT_LINES`` = 500 lines per request), retries on 429/503 after ``Retry-After``,
and reports the totals; rejected lines are reported with their line number in the file.
Importing the same file again creates nothing (ids, event ids and contents are deduplicated).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

#: A chunk stays below the API's default 1 MB body limit with room to spare.
DEFAULT_CHUNK_BYTES = 900_000
DEFAULT_CHUNK_LINES = 500
_RETRIES = 5


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Transport(Protocol):
    def __call__(self, method: str, path: str, query: dict[str, str], body: bytes | None) -> HttpResponse: ...


def http_transport(base_url: str, api_key: str, timeout_s: float = 60.0) -> Transport:
    """Requests to the API at ``base_url`` with ``X-API-Key``."""

    def call(method: str, path: str, query: dict[str, str], body: bytes | None) -> HttpResponse:
        url = base_url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        if not url.startswith(("http://", "https://")):
            raise SystemExit("MEMORY_API_URL must be an http(s) URL")
        req = urllib.request.Request(url, data=body, method=method,  # noqa: S310 - scheme checked above
                                     headers={"X-API-Key": api_key, "Content-Type": "application/x-ndjson"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
                return HttpResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    return call


class TransferError(RuntimeError):
    pass


def _send(transport: Transport, method: str, path: str, query: dict[str, str], body: bytes | None,
          sleep: Callable[[float], None] = time.sleep) -> HttpResponse:
    """One request, retried after Retry-After on 429 (rate limit, not quota) and 503."""
    for attempt in range(_RETRIES + 1):
        resp = transport(method, path, query, body)
        retryable = resp.status == 503 or (resp.status == 429 and _error_code(resp) == "rate_limited")
        if not retryable or attempt == _RETRIES:
            break
        sleep(min(60.0, float(resp.headers.get("retry-after", "1") or 1)))
    if resp.status >= 400:
        raise TransferError(f"{method} {path} answered {resp.status}: {resp.body[:500].decode(errors='replace')}")
    return resp


def _error_code(resp: HttpResponse) -> str | None:
    try:
        return str(json.loads(resp.body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


class Progress:
    """A one-line progress bar on a terminal (plain lines otherwise)."""

    def __init__(self, label: str, total: int | None, out: IO[str] = sys.stderr) -> None:
        self.label, self.total, self.out = label, total, out
        self.done = 0
        self.started = time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        rate = done / max(1e-6, time.monotonic() - self.started)
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {frac:6.1%} {note} ({rate:,.0f}/s)"
        else:
            text = f"{self.label} {done:,} {note} ({rate:,.0f}/s)"
        if self.out.isatty():
            self.out.write("\r" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.out.isatty():
            self.out.write("\n")


@dataclass
class ImportTotals:
    created: int = 0
    duplicate: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "duplicate": self.duplicate, "rejected": self.rejected}


def export_user(transport: Transport, user: str, out: IO[bytes], *, embeddings: bool = False,
                progress: Progress | None = None) -> int:
    """Write every page of the user's export to ``out``; returns the number of memories."""
    path = f"/users/{urllib.parse.quote(user, safe='')}/export"
    cursor: str | None = None
    count = pages = 0
    while True:
        query = {"embeddings": "true"} if embeddings else {}
        if cursor:
            query["cursor"] = cursor
        resp = _send(transport, "GET", path, query, None)
        out.write(resp.body)
        count += resp.body.count(b"\n")
        pages += 1
        if progress:
            progress.update(count, f"memories, {pages} pages")
        cursor = resp.headers.get("x-next-cursor")
        if not cursor:
            return count


def chunks(lines: Iterator[bytes], max_bytes: int, max_lines: int) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the chunk's first line in the file, its lines), within both limits."""
    chunk: list[bytes] = []
    size = 0
    first = 1
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            line += b"\n"
        if chunk and (size + len(line) > max_bytes or len(chunk) >= max_lines):
            yield first, chunk
            chunk, size = [], 0
        if not chunk:
            first = number
        chunk.append(line)
        size += len(line)
    if chunk:
        yield first, chunk


def import_user(transport: Transport, user: str, source: IO[bytes], *,
                max_bytes: int = DEFAULT_CHUNK_BYTES, max_lines: int = DEFAULT_CHUNK_LINES,
                progress: Progress | None = None) -> ImportTotals:
    """Send ``source`` (NDJSON) in chunks; totals over all chunks, file line numbers."""
    path = f"/users/{urllib.parse.quote(user, safe='')}/import"
    totals = ImportTotals()
    sent = 0
    for first, chunk in chunks(iter(source), max_bytes, max_lines):
        if not any(line.strip() for line in chunk):
            continue
        body = b"".join(chunk)
        resp = _send(transport, "POST", path, {}, body)
        result = json.loads(resp.body)
        totals.created += int(result["created"])
        totals.duplicate += int(result["duplicate"])
        totals.rejected += [dict(r, line=r["line"] + first - 1) for r in result["rejected"]]
        sent += len(body)
        if progress:
            progress.update(sent, f"created {totals.created}, duplicate {totals.duplicate}, "
                                  f"rejected {len(totals.rejected)}")
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_memory.cli.transfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("export", "import"))
    parser.add_argument("file", help="NDJSON file ('-' = stdout/stdin)")
    parser.add_argument("--user", required=True)
    parser.add_argument("--embeddings", action="store_true", help="export: include the embeddings")
    parser.add_argument("--url", default=os.environ.get("MEMORY_API_URL"), help="API URL (MEMORY_API_URL)")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES)
    parser.add_argument("--chunk-lines", type=int, default=DEFAULT_CHUNK_LINES)
    args = parser.parse_args(argv)
    key = os.environ.get("MEMORY_API_KEY")
    if not args.url or not key:
        parser.error("set MEMORY_API_URL (or --url) and MEMORY_API_KEY")
    transport = http_transport(args.url, key)
    try:
        if args.command == "export":
            progress = Progress("export", None)
            target = sys.stdout.buffer if args.file == "-" else open(args.file, "wb")
            with target:
                n = export_user(transport, args.user, target, embeddings=args.embeddings, progress=progress)
            progress.close()
            print(f"exported {n} memories of {args.user}", file=sys.stderr)
            return 0
        size = None if args.file == "-" else os.path.getsize(args.file)
        progress = Progress("import", size)
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
        with source:
            totals = import_user(transport, args.user, source, max_bytes=args.chunk_bytes,
                                 max_lines=args.chunk_lines, progress=progress)
        progress.close()
        print(json.dumps(totals.as_dict()))
        return 1 if totals.rejected else 0
    except TransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
