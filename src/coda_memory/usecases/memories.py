"""Reading and deleting memories: one memory (soft or hard), or everything of a user."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .. import runtime
from ..auth import Caller
from ..db import audit, quotas
from ..db import memories as memory_sql
from ..errors import NotFound, ValidationFailed
from ..models import check_identifier


def _memory_uuid(memory_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(memory_id)
    except ValueError:
        raise ValidationFailed("memory id must be a UUID") from None


def get_memory(caller: Caller, memory_id: str, user_id: str | None) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    mid = _memory_uuid(memory_id)
    with runtime.database().user_tx(user_id) as cur:
        row = memory_sql.get_memory(cur, user_id, mid)
    if row is None:
        raise NotFound("memory not found")
    return memory_json(row)


def delete_memory(caller: Caller, memory_id: str, user_id: str | None, hard: bool) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    mid = _memory_uuid(memory_id)
    with runtime.database().user_tx(user_id) as cur:
        if hard:
            found, was_live = memory_sql.hard_delete(cur, user_id, mid)
        else:
            found = was_live = memory_sql.soft_delete(cur, user_id, mid)
        if found:
            quotas.release(cur, user_id, int(was_live))
            audit.write(
                cur, [("erase" if hard else "delete", str(mid), "ok", "{}")],
                user_id=user_id, actor=caller.principal.key_id, ip=caller.ip,
                request_id=caller.request_id,
            )
    if not found:
        raise NotFound("memory not found")
    return {"memory_id": str(mid), "status": "erased" if hard else "deleted"}


def erase_user(caller: Caller, user_id: str) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        erased = memory_sql.erase_user(cur, user_id)
        quotas.clear(cur, user_id)
        audit.write(
            cur, [("erase_user", user_id, "ok", json.dumps({"erased": erased}))],
            user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
        )
    return {"user_id": user_id, "erased": erased, "status": "erased"}


def memory_json(row: dict[str, Any], fields: Sequence[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in fields or row.keys():
        value = row.get(key)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, float):
            value = round(value, 6)
        out[key] = value
    return out
