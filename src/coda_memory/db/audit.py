"""SQL on ``memory_audit_log``: who did what to which user's memories."""

from __future__ import annotations

from collections.abc import Sequence

from .pool import DictCursor


def write(
    cur: DictCursor,
    entries: Sequence[tuple[str, str | None, str, str]],
    *,
    user_id: str,
    actor: str,
    ip: str | None,
    request_id: str | None,
) -> None:
    """Append audit rows ``(action, resource, result, details-json)`` for ``user_id``."""
    cur.executemany(
        """INSERT INTO memory_audit_log (user_id, actor, action, resource, ip, result, request_id, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)""",
        [(user_id, actor, a, res, ip, result, request_id, details) for a, res, result, details in entries],
    )


def write_denied(
    cur: DictCursor, *, user_id: str | None, actor: str, action: str, resource: str | None,
    ip: str | None, result: str, request_id: str | None,
) -> None:
    """Audit a request that never reached a user's scope (via the SECURITY DEFINER function)."""
    cur.execute(
        "SELECT write_audit(%s, %s, %s, %s, %s, %s, %s, '{}'::jsonb)",
        (user_id, actor, action, resource, ip, result, request_id),
    )
