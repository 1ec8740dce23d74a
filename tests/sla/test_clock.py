from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sla.clock import Calendar, add_business_minutes, business_minutes_between

UTC = ZoneInfo("UTC")
WARSAW = ZoneInfo("Europe/Warsaw")
OFFICE = Calendar(
    tz="Europe/Warsaw", hours={d: [("09:00", "17:00")] for d in range(5)}, holidays=frozenset({date(2026, 12, 25)})
)


def test_calendar_time_without_a_calendar():
    start = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert add_business_minutes(start, 90, None) == start + timedelta(minutes=90)
    assert business_minutes_between(start, start + timedelta(hours=3), None) == 180


def test_business_hours_roll_over_the_weekend():
    friday_4pm = datetime(2026, 11, 27, 16, 0, tzinfo=WARSAW)  # Friday
    due = add_business_minutes(friday_4pm, 120, OFFICE)
    assert due == datetime(2026, 11, 30, 10, 0, tzinfo=WARSAW)  # 1h Friday + 1h Monday
    assert business_minutes_between(friday_4pm, due, OFFICE) == 120


def test_outside_hours_start_counts_from_opening_and_holidays_are_closed():
    christmas_eve_evening = datetime(2026, 12, 24, 20, 0, tzinfo=WARSAW)  # Thursday; Friday 25th is a holiday
    assert add_business_minutes(christmas_eve_evening, 30, OFFICE) == datetime(2026, 12, 28, 9, 30, tzinfo=WARSAW)


def test_time_zones_are_respected():
    # 08:30 UTC on a Monday in winter is 09:30 in Warsaw: 30 minutes already open
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert business_minutes_between(start, datetime(2026, 11, 30, 8, 30, tzinfo=UTC), OFFICE) == 30
    new_york = Calendar(tz="America/New_York", hours={0: [("09:00", "17:00")]})
    assert business_minutes_between(start, datetime(2026, 11, 30, 15, 0, tzinfo=UTC), new_york) == 60  # 14:00–15:00 UTC


def test_a_calendar_without_hours_is_an_error():
    with pytest.raises(ValueError, match="no open hours"):
        add_business_minutes(datetime(2026, 1, 1, tzinfo=UTC), 10, Calendar(tz="UTC", hours={}))
