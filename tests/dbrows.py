"""Rows written behind the service's back (as the schema owner), for RLS and SQL-level tests."""

from __future__ import annotations

import uuid

import psycopg

VEC = "[" + ",".join(["0.1"] * 384) + "]"


def insert_memory(conn: psycopg.Connection, user: str, content: str) -> uuid.UUID:
    """A minimal live memory of ``user`` (constant embedding), returning its id."""
    row = conn.execute(
        """INSERT INTO memories (user_id, content, content_type, embedding, source_type, content_hash)
           VALUES (%s, %s, 'fact', %s::vector, 'test', md5(%s)) RETURNING id""",
        (user, content, VEC, content),
    ).fetchone()
    assert row is not None
    return row[0]
