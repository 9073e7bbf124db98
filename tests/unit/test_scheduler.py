"""EventBridge schedule expressions of the local scheduler (pure: no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.scheduler import Cron, ScheduleError, Scheduler, next_fire
from local.template import Schedule


def test_cron_and_rate_expressions():
    t = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # a Wednesday
    assert next_fire("cron(0 0 * * ? *)", t) == datetime(2026, 3, 5, 0, 0, tzinfo=UTC)
    assert next_fire("cron(15 3 * * ? *)", t) == datetime(2026, 3, 5, 3, 15, tzinfo=UTC)
    assert next_fire("cron(0/20 * * * ? *)", t) == datetime(2026, 3, 4, 10, 40, tzinfo=UTC)
    assert next_fire("cron(0 9 ? * MON-FRI *)", t) == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    assert next_fire("cron(0 9 ? * 1 *)", t) == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # 1 = Sunday
    assert next_fire("cron(0 12 1 JAN,JUL ? *)", t) == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert next_fire("rate(5 minutes)", t, t) == t + timedelta(minutes=5)
    assert next_fire("rate(1 day)", t + timedelta(days=3, seconds=1), t) == t + timedelta(days=4)
    for bad in ("cron(0 0 * * * *)", "cron(0 0 L * ? *)", "cron(61 0 * * ? *)", "rate(0 days)", "every day"):
        with pytest.raises(ScheduleError):
            next_fire(bad, t)
    assert Cron.parse("0 0 * * ? 2030").next_after(t).year == 2030


def test_disabled_and_unsupported_schedules_are_skipped():
    s = [Schedule("A", "a", "rate(1 day)", enabled=False), Schedule("B", "b", "cron(0 0 L * ? *)", True)]
    assert Scheduler(s, lambda *_: None).entries == []
