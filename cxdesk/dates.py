from datetime import datetime

from django.utils.dateparse import parse_datetime as _parse


def parse_datetime(value: str) -> datetime | None:
    """ISO 8601 → datetime, or None for anything that is not one (never raises)."""
    try:
        return _parse(value or "")
    except (ValueError, TypeError):
        return None
