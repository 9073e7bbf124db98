"""Login roles: the service role's password, set by the deploy-time provisioning (never typed
by a person, never sent to the server in clear text)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo


def owner_url(*, host: str, port: int, dbname: str, user: str, password: str, sslmode: str) -> str:
    """Connection string of ``user`` (libpq quoting, any host form)."""
    return make_conninfo(host=host, port=port, dbname=dbname, user=user, password=password, sslmode=sslmode)


def grant_login(url: str, role: str, password: str) -> int:
    """As the owner at ``url``: give ``role`` LOGIN with ``password`` (see set_role_password) and
    return the schema version the database is at (0 before any migration)."""
    with psycopg.connect(url, autocommit=True) as conn:
        set_role_password(conn, role, password)
        row: Any = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def set_role_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Give ``role`` LOGIN with ``password``. The SCRAM-SHA-256 verifier is computed here by
    libpq and only the verifier travels: the password cannot appear in the server's statement
    log or in ``pg_stat_statements``. DDL takes no bind parameters, hence the quoted literal."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode())))
