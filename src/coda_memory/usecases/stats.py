"""``GET /users/{user_id}/stats`` and ``GET /stats``: what a user's memory holds (states, types,
sources, tags, memories created per day, how often they are recalled, quota use, what the next
archival would take), or the same over every user with the number of users and the busiest
ones (service key only)."""

from __future__ import annotations

from typing import Any

from .. import runtime
from ..auth import Caller
from ..config import Settings, get_settings
from ..db import stats as stats_sql
from ..errors import Forbidden
from ..models import check_identifier


def _knobs(s: Settings) -> dict[str, Any]:
    # the archival run's own settings, so archival_due is what the next run would archive
    return {"archive_after_days": s.archive_after_days, "archive_max_access": s.archive_max_access_count,
            "keep_importance": getattr(s, "archive_keep_importance", None)}


def user_stats(caller: Caller, user_id: str) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    settings = get_settings()
    with runtime.database().user_tx(user_id) as cur:
        out = stats_sql.memory_stats(cur, all_users=False, **_knobs(settings))
    if out.get("quota") is None:  # no write yet: the defaults apply
        out["quota"] = {"memory_count": 0, "max_memories": settings.default_max_memories,
                        "daily_ingestions": 0, "max_daily_ingestions": settings.default_max_daily_ingestions}
    return {"user_id": user_id, **out}


def all_stats(caller: Caller) -> dict[str, Any]:
    if caller.principal.user_id is not None:
        raise Forbidden("only the service key may read the statistics of all users")
    with runtime.database().system_tx() as cur:
        return stats_sql.memory_stats(cur, all_users=True, **_knobs(get_settings()))
