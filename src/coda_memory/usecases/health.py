"""``GET /health``: liveness plus the model and database facts an agent may want."""

from __future__ import annotations

from typing import Any

from .. import __version__, runtime
from ..db import health as health_sql
from ..embedder import DIMENSION, MODEL_NAME


def health() -> dict[str, Any]:
    """Liveness plus what the agent may want to know about the model and the database;
    ``"degraded"`` (still 200) when either is unavailable."""
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
            out["database"] = {"status": "ok", **health_sql.facts(cur)}
    except Exception as exc:
        out["status"] = "degraded"
        out["database"] = {"status": "unavailable", "error": type(exc).__name__}
    return out
