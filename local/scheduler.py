"""Fire the template's ``Schedule`` events locally, as EventBridge would.

Expressions are EventBridge's: ``rate(N minute|minutes|hour|hours|day|days)`` (first run one
period after start, like a new rule) and six-field ``cron(min hour day-of-month month
day-of-week year)`` in UTC, with ``*``, ``?``, lists, ranges, steps, month and weekday names
(``1``-``7`` = ``SUN``-``SAT``). ``L``, ``W`` and ``#`` are not supported (no schedule here
uses them); such a schedule is reported and skipped.

The event is the one ``sam local generate-event cloudwatch scheduled-event`` produces.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .template import Schedule

log = logging.getLogger("local.scheduler")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}


class ScheduleError(ValueError):
    pass


def _field(expr: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int] | None:
    """Values matched by one cron field, None for ``*``/``?`` (any)."""
    if expr in ("*", "?"):
        return None
    bare = re.sub("|".join((names or {}).keys()) or "^$", "", expr.upper())
    if any(c in bare for c in "LW#"):
        raise ScheduleError(f"cron field {expr!r}: L, W and # are not supported locally")
    values: set[int] = set()

    def num(token: str) -> int:
        token = token.upper()
        if names and token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleError(f"bad cron value {token!r}")
        return int(token)

    for part in expr.split(","):
        step, has_step = 1, "/" in part
        if has_step:
            part, step_s = part.split("/", 1)
            step = num(step_s)
            if step < 1:
                raise ScheduleError("cron step must be >= 1")
        if part in ("*", ""):
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = num(a), num(b)
        else:
            start = num(part)
            end = hi if has_step else start
        if not (lo <= start <= hi and lo <= end <= hi):
            raise ScheduleError(f"cron value out of range in {expr!r} ({lo}-{hi})")
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True)
class Cron:
    minutes: set[int] | None
    hours: set[int] | None
    days: set[int] | None
    months: set[int] | None
    weekdays: set[int] | None  # 1 = Sunday
    years: set[int] | None

    @classmethod
    def parse(cls, body: str) -> Cron:
        parts = body.split()
        if len(parts) != 6:
            raise ScheduleError(f"cron needs 6 fields (min hour dom month dow year): {body!r}")
        minute, hour, dom, month, dow, year = parts
        if dom != "?" and dow != "?":
            raise ScheduleError("cron: one of day-of-month and day-of-week must be '?'")
        return cls(
            _field(minute, 0, 59), _field(hour, 0, 23), _field(dom, 1, 31),
            _field(month, 1, 12, _MONTHS), _field(dow, 1, 7, _DAYS), _field(year, 1970, 2199),
        )

    def _day_ok(self, d: datetime) -> bool:
        if self.years is not None and d.year not in self.years:
            return False
        if self.months is not None and d.month not in self.months:
            return False
        if self.days is not None and d.day not in self.days:
            return False
        # Python: Monday=0..Sunday=6 -> EventBridge: Sunday=1..Saturday=7
        return self.weekdays is None or (d.weekday() + 1) % 7 + 1 in self.weekdays

    def next_after(self, after: datetime) -> datetime:
        start = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
        hours = sorted(self.hours) if self.hours is not None else list(range(24))
        minutes = sorted(self.minutes) if self.minutes is not None else list(range(60))
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):
            if self._day_ok(day):
                for h in hours:
                    for m in minutes:
                        t = day.replace(hour=h, minute=m)
                        if t >= start:
                            return t
            day += timedelta(days=1)
        raise ScheduleError("cron expression never fires")


def next_fire(expression: str, after: datetime, started: datetime | None = None) -> datetime:
    """The first time strictly after ``after`` that ``expression`` fires (UTC)."""
    expression = expression.strip()
    rate = _RATE.match(expression)
    if rate:
        n, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if n < 1:
            raise ScheduleError("rate must be >= 1")
        period = timedelta(**{f"{unit}s": n})
        base = started or after
        if after < base + period:
            return base + period
        periods = (after - base) // period + 1
        return base + periods * period
    cron = _CRON.match(expression)
    if cron:
        return Cron.parse(cron.group(1)).next_after(after)
    raise ScheduleError(f"not a schedule expression: {expression!r}")


def scheduled_event(rule: str, when: datetime | None = None) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event`` (``sam local generate-event cloudwatch scheduled-event``)."""
    when = when or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{rule}"],
        "detail": {},
    }


class Scheduler:
    """One thread; sleeps until the next schedule is due, then fires it on ``fire``."""

    def __init__(
        self,
        schedules: list[Schedule],
        fire: Callable[[Schedule, dict[str, Any]], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fire = fire
        self._now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = now()
        self.entries: list[tuple[Schedule, datetime]] = []
        for s in schedules:
            if not s.enabled:
                continue
            try:
                self.entries.append((s, next_fire(s.expression, self.started, self.started)))
            except ScheduleError as exc:
                log.warning("schedule %s of %s skipped: %s", s.event_name, s.function, exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set() and self.entries:
            self.entries.sort(key=lambda e: e[1])
            schedule, due = self.entries[0]
            wait = (due - self._now()).total_seconds()
            if wait > 0:
                self._stop.wait(min(wait, 60.0))
                continue
            event = scheduled_event(f"{schedule.function}-{schedule.event_name}", due)
            threading.Thread(target=self._fire, args=(schedule, event), daemon=True,
                             name=f"fire-{schedule.event_name}").start()
            self.entries[0] = (schedule, next_fire(schedule.expression, due, self.started))

    @property
    def calendar(self) -> list[str]:
        return [f"{s.function} ({s.expression}) next {due:%Y-%m-%d %H:%M} UTC"
                for s, due in sorted(self.entries, key=lambda e: e[1])]


__all__ = ["Cron", "ScheduleError", "Scheduler", "next_fire", "scheduled_event"]
