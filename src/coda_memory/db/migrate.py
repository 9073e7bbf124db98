"""Numbered SQL migrations, applied in order and recorded in ``schema_migrations``.

Run as the schema owner (not the service role)::

    python -m coda_memory.db.migrate postgresql://postgres@/coda_memory?host=/path

Running twice changes nothing; a changed, already applied file is an error (migrations are
append-only). Concurrent runners serialise on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
FUNCTIONS_DIR = Path(__file__).with_name("functions")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x636F6461  # "coda"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """A migration file is malformed or was edited after being applied."""


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations in ``directory``, ordered by version (numbers must be unique)."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def apply_migrations(url: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done: dict[int, str] = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for migration in discover(directory):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was changed after "
                            "it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
            if directory == MIGRATIONS_DIR:  # a partial set (tests) predates the functions
                apply_functions(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def apply_functions(conn: psycopg.Connection, directory: Path = FUNCTIONS_DIR) -> None:
    """(Re-)create the SQL functions of ``functions/*.sql`` (idempotent: CREATE OR REPLACE), in
    one transaction, after the numbered migrations."""
    with conn.transaction():
        for path in sorted(directory.glob("*.sql")):
            conn.execute(path.read_text().encode())


def main(argv: list[str]) -> int:
    import os

    url = argv[1] if len(argv) > 1 else os.environ.get("DATABASE_ADMIN_URL")
    if not url:
        print("usage: python -m coda_memory.db.migrate <admin database url>", file=sys.stderr)
        return 2
    applied = apply_migrations(url)
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
