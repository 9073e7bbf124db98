"""``GET /health``: liveness plus the model and database facts an agent may want."""

from __future__ import annotations

from typing import Any

from . import runtime


def health() -> dict[str, Any]:
    """Liveness plus what the agent may want to know about the model and the database."""
    from . import __version__
    from .embedder import DIMENSION, MODEL_NAME

    out: dict[str, Any] = {"status": "ok", "version": __version__}
    try:
        emb = runtime.embedder()
        out["model"] = {"name": emb.model_name, "quantization": emb.quantization,
                        "dimension": emb.dimension}
    except Exception as exc:
        out["status"] = "degraded"
        out["model"] = {"name": MODEL_NAME, "dimension": DIMENSION, "error": type(exc).__name__}
    try:
        with runtime.database().system_tx() as cur:
            cur.execute(
                """SELECT current_setting('server_version') AS server_version,
                          (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,
                          (SELECT max(version) FROM schema_migrations) AS schema_version"""
            )
            row = cur.fetchone() or {}
        out["database"] = {"status": "ok", **row}
    except Exception as exc:
        out["status"] = "degraded"
        out["database"] = {"status": "unavailable", "error": type(exc).__name__}
    return out
