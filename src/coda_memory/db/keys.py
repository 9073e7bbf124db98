"""SQL on ``api_keys``. The service role can only resolve a key hash (through the SECURITY
DEFINER function ``resolve_api_key``); creating, listing and revoking keys runs as the schema
owner (``python -m coda_memory.cli.keys``)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from .pool import DictCursor

#: A connection as the schema owner (the only role that may write ``api_keys``).
OwnerConnection = psycopg.Connection[Any]


def connect_as_owner(url: str) -> OwnerConnection:
    """An autocommit connection to the schema owner's URL (``DATABASE_ADMIN_URL``); a context manager."""
    return psycopg.connect(url, autocommit=True)


def resolve(cur: DictCursor, key_hash: str) -> tuple[str, str | None] | None:
    """``(key_id, user_id)`` of an active stored key with this SHA-256 hex digest, else None."""
    cur.execute("SELECT key_id, user_id FROM resolve_api_key(%s)", (key_hash,))
    row = cur.fetchone()
    return (str(row["key_id"]), row["user_id"]) if row else None


def insert(conn: psycopg.Connection[Any], key_hash: str, user_id: str | None, name: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, %s) RETURNING key_id",
        (key_hash, user_id, name),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def revoke(conn: psycopg.Connection[Any], key_id: uuid.UUID) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL", (key_id,)
    )
    return cur.rowcount == 1


def list_all(conn: psycopg.Connection[Any], user_id: str | None = None) -> list[tuple[Any, ...]]:
    """Keys (never the keys themselves): key_id, user ('*' for service keys), name, dates."""
    return conn.execute(
        """SELECT key_id, coalesce(user_id, '*'), name, created_at, revoked_at FROM api_keys
           WHERE %(u)s::text IS NULL OR user_id = %(u)s ORDER BY created_at""",
        {"u": user_id},
    ).fetchall()
