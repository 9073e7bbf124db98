"""Rows written behind the service's back (as the schema owner), for RLS and SQL-level tests:
the one raw ``INSERT INTO memories`` helper, test user names and scratch databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

VEC = "[" + ",".join(["0.1"] * 384) + "]"


def new_user(prefix: str = "user") -> str:
    """A user id no other test uses (tests share one database)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def vector_text(vec: str | Sequence[float]) -> str:
    """pgvector's text form of ``vec`` (a string is taken as already in that form)."""
    return vec if isinstance(vec, str) else "[" + ",".join(f"{x:.4f}" for x in vec) + "]"


def insert_memory(conn: psycopg.Connection, user: str, content: str, *, embedding: str | Sequence[float] = VEC,
                  content_hash: str | None = None, **columns: Any) -> uuid.UUID:
    """A memory of ``user`` written straight into the table, returning its id.

    Defaults: content type ``fact``, source ``test``, a constant embedding and the content's md5
    as its hash; any other column of ``memories`` is given by keyword (``created_at=...``,
    ``deleted=True``, ``access_count=3``...)."""
    values: dict[str, Any] = {"user_id": user, "content": content, "content_type": "fact", "source_type": "test",
                              "content_hash": content_hash, **columns}
    names = [*values, "embedding"]
    marks = [sql.SQL("md5(%s)") if k == "content_hash" and content_hash is None else sql.SQL("%s") for k in values]
    params = [content if k == "content_hash" and content_hash is None else v for k, v in values.items()]
    query = sql.SQL("INSERT INTO memories ({}) VALUES ({}, %s::vector) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(marks))
    row = conn.execute(query, [*params, vector_text(embedding)]).fetchone()
    assert row is not None
    return row[0]


@contextmanager
def scratch_database(postgres: Any) -> Iterator[str]:
    """An empty database of its own on the test server (for migration tests), dropped afterwards."""
    database = f"coda_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        yield psycopg.conninfo.make_conninfo(postgres.admin_url, dbname=database)
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
