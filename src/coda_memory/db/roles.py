"""Login roles: the service role's password, set by the deploy-time provisioning (never typed
by a person, never sent to the server in clear text)."""

from __future__ import annotations

import psycopg
from psycopg import sql


def set_role_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Give ``role`` LOGIN with ``password``. The SCRAM-SHA-256 verifier is computed here by
    libpq and only the verifier travels: the password cannot appear in the server's statement
    log or in ``pg_stat_statements``. DDL takes no bind parameters, hence the quoted literal."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode())))
