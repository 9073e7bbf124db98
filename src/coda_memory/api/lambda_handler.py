"""The Lambda entry point for a function's app: API Gateway REST events go through mangum;
direct invokes (``{"kind": ...}``, e.g. from the subscriber) go to a plain function."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

from .. import snapstart
from ..observability import logger, traced

LambdaHandler = Callable[[dict[str, Any], Any], Any]


def _ensure_event_loop() -> None:
    # mangum calls asyncio.get_event_loop(), which fails in non-main threads (local runner).
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def make_handler(
    app: FastAPI, direct: dict[str, Callable[[dict[str, Any]], Any]] | None = None
) -> LambdaHandler:
    # NDJSON (the export) is text: sent as is, not base64 (API Gateway would pass base64 through
    # to the client unless the API declared binary media types)
    asgi = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "application/x-ndjson"])
    direct = direct or {}
    snapstart.register()  # no-op unless the Lambda runtime provides snapshot_restore_py

    @traced
    def handler(event: dict[str, Any], context: Any) -> Any:
        _ensure_event_loop()
        if isinstance(event, dict) and "httpMethod" not in event and "kind" in event:
            kind = event.get("kind")
            if kind not in direct:
                raise ValueError(f"unknown direct invoke kind: {kind!r}")
            logger.info("direct invoke", extra={"kind": kind})
            return direct[str(kind)](event)
        return asgi(event, context)

    return handler
