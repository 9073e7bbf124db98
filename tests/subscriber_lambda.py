"""A minimal Lambda ``Invoke`` endpoint for the subscriber tests: boto3 talks HTTP to it exactly
as it would to AWS (or to the local runner on :3001), and it calls the real ingest
``handler(event, context)`` in-process. Faults can be injected to simulate an ingest outage."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.apigw import LambdaContext


class LambdaEndpoint:
    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self.handler = handler
        self.fail_next = 0  # invocations to fail before behaving again
        self.fail_type = "ServiceUnavailable"
        self.fail_when: Callable[[dict[str, Any]], str | None] | None = None
        self.calls = 0
        self.failures = 0
        self.events_seen = 0
        self._lock = threading.Lock()
        endpoint = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload, function_error = endpoint._invoke(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Amz-Executed-Version", "$LATEST")
                if function_error:
                    self.send_header("X-Amz-Function-Error", "Unhandled")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _invoke(self, path: str, body: bytes) -> tuple[int, Any, bool]:
        if "/functions/IngestFunction/invocations" not in path:
            return 404, {"Type": "User", "message": "Function not found"}, False
        event = json.loads(body or b"{}")
        with self._lock:
            self.calls += 1
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        reason = self.fail_when(event) if self.fail_when else None
        if failing or reason:
            with self._lock:
                self.failures += 1
            error_type = reason or self.fail_type
            return 200, {"errorType": error_type, "errorMessage": "injected failure"}, True
        try:
            result = self.handler(event, LambdaContext("IngestFunction"))
        except Exception as exc:
            return 200, {"errorType": type(exc).__name__, "errorMessage": str(exc)[:500]}, True
        if isinstance(result, (str, bytes)):
            result = json.loads(result)
        with self._lock:
            self.events_seen += len(event.get("events") or [])
        return 200, result, False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
