"""Console function: GET /console and GET /console/{proxy+} serve the web console's static
assets (built by ``make console`` into ``functions/console/static``). No API key: a browser
cannot send one when it navigates; every data call the console makes carries the key the user
signed in with. Nothing here reads the database or a secret.

Every answer carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script, no framing), ``X-Content-Type-Options: nosniff`` and no referrer, so a
memory's text that reaches the page can only ever be text.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path
from typing import Any

#: Where the built assets are: beside this file (the deployed package and ``make console``).
ASSETS = Path(os.environ.get("CONSOLE_ASSETS_DIR") or Path(__file__).resolve().parent / "static")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_TEXT = {".html", ".js", ".css", ".svg", ".json", ".txt", ".map"}


def _answer(status: int, body: bytes, content_type: str, cache: str) -> dict[str, Any]:
    text = content_type.startswith(("text/", "application/javascript", "application/json", "image/svg"))
    return {
        "statusCode": status,
        "headers": {**SECURITY_HEADERS, "Content-Type": content_type, "Cache-Control": cache},
        "body": body.decode() if text else base64.b64encode(body).decode(),
        "isBase64Encoded": not text,
    }


def resolve(path: str, root: Path | None = None) -> Path | None:
    """The file under ``root`` that a request for ``path`` (relative to /console/) names, or None
    (missing, or outside ``root``). The console's own routes live in the URL fragment, so any
    path that is not a file is the page itself only when it has no extension."""
    root = root or ASSETS
    relative = path.strip("/")
    if not relative:
        relative = "index.html"
    candidate = (root / relative).resolve()
    try:
        candidate.relative_to(root.resolve())
    except ValueError:
        return None
    if candidate.is_file():
        return candidate
    if "." not in relative.rsplit("/", 1)[-1]:
        index = root / "index.html"
        return index if index.is_file() else None
    return None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    if (event.get("httpMethod") or "GET").upper() not in ("GET", "HEAD"):
        return _answer(405, b"method not allowed\n", "text/plain; charset=utf-8", "no-store")
    proxy = (event.get("pathParameters") or {}).get("proxy") or ""
    found = resolve(proxy)
    if found is None:
        if not (ASSETS / "index.html").is_file():
            return _answer(503, b"the console is not built: run make console\n", "text/plain; charset=utf-8",
                           "no-store")
        return _answer(404, b"not found\n", "text/plain; charset=utf-8", "no-store")
    content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    if found.suffix in _TEXT and "charset" not in content_type:
        content_type += "; charset=utf-8"
    # file names under assets/ carry a content hash: cache them for good; the page, never
    cache = "public, max-age=31536000, immutable" if "/assets/" in found.as_posix() else "no-store"
    return _answer(200, found.read_bytes(), content_type, cache)
