"""SQL behind ``GET /health``: what the database runs (no user data)."""

from __future__ import annotations

from typing import Any

from .pool import DictCursor


def facts(cur: DictCursor) -> dict[str, Any]:
    """Server version, pgvector version and the schema version applied."""
    cur.execute(
        """SELECT current_setting('server_version') AS server_version,
                  (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,
                  (SELECT max(version) FROM schema_migrations) AS schema_version"""
    )
    return dict(cur.fetchone() or {})
