"""Business-time arithmetic. Pure functions; `now` is always passed in (a controllable
clock), never read from the system here.

A calendar is `hours`: weekday (0 = Monday) → list of ("HH:MM", "HH:MM") open intervals in
the calendar's time zone, plus `holidays`: ISO dates that are closed all day. None means
calendar (24/7) time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Calendar:
    tz: str = "UTC"
    hours: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_model(cls, obj) -> Calendar:
        return cls(
            tz=obj.timezone,
            hours={int(k): [tuple(x) for x in v] for k, v in (obj.hours or {}).items()},
            holidays=frozenset(date.fromisoformat(d) for d in obj.holidays or []),
        )

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.holidays:
            return []
        zone = ZoneInfo(self.tz)
        out = []
        for start, end in self.hours.get(day.weekday(), []):
            s = datetime.combine(day, time.fromisoformat(start), zone)
            e = (
                datetime.combine(day, time.fromisoformat(end), zone)
                if end != "24:00"
                else datetime.combine(day + timedelta(days=1), time(0), zone)
            )
            out.append((s, e))
        return out


MAX_DAYS = 3660  # a calendar with no open hours at all must not loop forever


def add_business_minutes(start: datetime, minutes: float, calendar: Calendar | None) -> datetime:
    """The instant `minutes` of open time after `start`."""
    if calendar is None:
        return start + timedelta(minutes=minutes)
    remaining = timedelta(minutes=minutes)
    local_day = start.astimezone(ZoneInfo(calendar.tz)).date()
    for offset in range(MAX_DAYS):
        for s, e in calendar._intervals(local_day + timedelta(days=offset)):
            if e <= start:
                continue
            s = max(s, start)
            if e - s >= remaining:
                return s + remaining
            remaining -= e - s
    raise ValueError("the calendar has no open hours")


def business_minutes_between(a: datetime, b: datetime, calendar: Calendar | None) -> float:
    """Open minutes between a and b (0 if b <= a)."""
    if b <= a:
        return 0.0
    if calendar is None:
        return (b - a).total_seconds() / 60
    total = timedelta()
    zone = ZoneInfo(calendar.tz)
    day = a.astimezone(zone).date()
    last = b.astimezone(zone).date()
    while day <= last:
        for s, e in calendar._intervals(day):
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 60
