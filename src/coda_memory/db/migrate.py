"""The schema: a baseline, numbered migrations, and SQL functions kept one per file.

Run as the schema owner (not the service role)::

    python -m coda_memory.db.migrate postgresql://postgres@/coda_memory?host=/path

* ``baseline.sql`` is the schema as of :data:`BASELINE_VERSION`. A new database starts there
  (recorded as that version); a database that applied the old numbered migrations up to it
  goes on from where it is.
* ``migrations/NNNN_name.sql``: schema changes after the baseline, applied in order, each once,
  recorded with its checksum in ``schema_migrations``. They are append-only: a changed file
  that was already applied is an error.
* ``functions/*.sql``: the current definition of each SQL function (``CREATE OR REPLACE``),
  applied after the migrations whenever the file's checksum differs from the one recorded in
  ``schema_functions`` -- Flyway's repeatable migrations. Editing a function means editing its
  one file; no table is touched by re-applying it.

Running twice changes nothing. Concurrent runners serialise on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

HERE = Path(__file__).parent
MIGRATIONS_DIR = HERE / "migrations"
FUNCTIONS_DIR = HERE / "functions"
BASELINE = HERE / "baseline.sql"
BASELINE_VERSION = 8
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
    """A migration file is malformed, was edited after being applied, or the database is older
    than the baseline."""


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All numbered migrations in ``directory``, ordered by version (numbers must be unique and
    come after the baseline)."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}")
        if version <= BASELINE_VERSION:
            raise MigrationError(f"migration {path.name} is not after the baseline ({BASELINE_VERSION})")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def functions(directory: Path = FUNCTIONS_DIR) -> list[Migration]:
    """The function files, by name (version 0: they have no order of their own)."""
    return [Migration(0, path.stem, path.read_text()) for path in sorted(directory.glob("*.sql"))]


def apply_migrations(
    url: str, directory: Path = MIGRATIONS_DIR, functions_dir: Path = FUNCTIONS_DIR
) -> list[int]:
    """Bring the database up to date; return the migration versions applied by this call (the
    baseline counts as :data:`BASELINE_VERSION`)."""
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
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_functions (
                       name text PRIMARY KEY,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done: dict[int, str] = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            if not done:
                baseline = Migration(BASELINE_VERSION, "baseline", BASELINE.read_text())
                _apply(conn, baseline)
                done[baseline.version] = baseline.checksum
                applied_now.append(baseline.version)
            elif max(done) < BASELINE_VERSION:
                raise MigrationError(
                    f"the database is at schema version {max(done)}, older than the baseline "
                    f"{BASELINE_VERSION}: upgrade it with an earlier release first"
                )
            for migration in discover(directory):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was changed after "
                            "it was applied; add a new migration instead"
                        )
                    continue
                _apply(conn, migration)
                applied_now.append(migration.version)
            _apply_functions(conn, functions_dir)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    with conn.transaction():
        conn.execute(migration.sql.encode())
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )


def _apply_functions(conn: psycopg.Connection, directory: Path) -> list[str]:
    """(Re-)apply the function files whose checksum changed; all in one transaction, with
    body checks deferred so files may call functions defined in files after them."""
    recorded: dict[str, str] = dict(conn.execute("SELECT name, checksum FROM schema_functions").fetchall())
    changed = [f for f in functions(directory) if recorded.get(f.name) != f.checksum]
    if changed:
        with conn.transaction():
            conn.execute("SET LOCAL check_function_bodies = off")
            for function in changed:
                conn.execute(function.sql.encode())
                conn.execute(
                    """INSERT INTO schema_functions (name, checksum) VALUES (%s, %s)
                       ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()""",
                    (function.name, function.checksum),
                )
    return [f.name for f in changed]


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
