"""Manage API keys stored in the database (only their SHA-256 is kept).

    python -m coda_memory.cli.keys create --user alice --name "alice laptop"   # prints the key once
    python -m coda_memory.cli.keys list [--user alice]
    python -m coda_memory.cli.keys revoke <key_id>

Runs as the schema owner (``DATABASE_ADMIN_URL``): the service role cannot read or write
``api_keys``. A key created with ``--user`` may act only for that user; without it the key is a
service key that may act for any user.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

from ..auth import generate_key, hash_key
from ..db import keys
from ..models import check_identifier


def create_key(conn: keys.OwnerConnection, user_id: str | None, name: str = "") -> tuple[str, uuid.UUID]:
    """Store a new key's hash; return (key, key_id). The key itself is never stored."""
    if user_id is not None:
        check_identifier(user_id, "user_id")
    key = generate_key()
    return key, keys.insert(conn, hash_key(key), user_id, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_memory.cli.keys", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_ADMIN_URL"),
                        help="schema owner URL (default: $DATABASE_ADMIN_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--user", help="bind the key to this user_id (omit for a service key)")
    create.add_argument("--name", default="", help="a label for people")
    listing = sub.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--user")
    revoke = sub.add_parser("revoke", help="revoke a key by its key_id")
    revoke.add_argument("key_id", type=uuid.UUID)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set DATABASE_ADMIN_URL or pass --database-url")
    with keys.connect_as_owner(args.database_url) as conn:
        if args.command == "create":
            key, key_id = create_key(conn, args.user, args.name)
            print(f"key_id {key_id}\nkey    {key}\n(store the key now: only its hash is kept)")
        elif args.command == "list":
            for row in keys.list_all(conn, args.user):
                print("\t".join("" if v is None else str(v) for v in row))
        elif not keys.revoke(conn, args.key_id):
            print("no active key with that key_id", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
