"""The wall-clock search behind `core.cron`: the next or previous matching wall time, and time zones.

Wall times are naive datetimes read on a zone's clock; `existing` turns one into an aware moment,
or None when the clock skips it (spring forward). Every step that could run past year 1 or 9999
returns None instead of raising OverflowError.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cron import CronSpec

_UTC = timezone.utc


def next_wall(spec: CronSpec, start: datetime, year_limit: int) -> datetime | None:
    """Smallest naive wall time >= start matching the spec (start whole seconds), or None past year_limit."""
    t: datetime | None = start
    while t is not None:
        if t.year > min(year_limit, 9999):
            return None
        if t.month not in spec.month:
            month = _first_at_least(spec.month, t.month + 1)
            t = datetime(t.year, month, 1) if month else _year_start(t.year + 1)
        elif not spec.matches_date(t.date()):
            t = _day_start(t.date(), +1)
        elif t.hour not in spec.hour:
            hour = _first_at_least(spec.hour, t.hour + 1)
            t = t.replace(hour=hour, minute=0, second=0) if hour is not None else _day_start(t.date(), +1)
        elif t.minute not in spec.minute:
            minute = _first_at_least(spec.minute, t.minute + 1)
            if minute is not None:
                t = t.replace(minute=minute, second=0)
            else:
                t = add_seconds(t.replace(minute=0, second=0), 3600)
        elif t.second not in spec.second:
            second = _first_at_least(spec.second, t.second + 1)
            t = t.replace(second=second) if second is not None else add_seconds(t.replace(second=0), 60)
        else:
            return t
    return None


def previous_wall(spec: CronSpec, start: datetime, year_limit: int) -> datetime | None:
    """Largest naive wall time <= start matching the spec (start whole seconds), or None before year_limit."""
    t: datetime | None = start
    while t is not None:
        if t.year < max(year_limit, 1):
            return None
        if t.month not in spec.month:
            month = _last_at_most(spec.month, t.month - 1)
            if month is None:
                if t.year == 1:
                    return None
                t = datetime(t.year - 1, 12, 31, 23, 59, 59)
            else:
                t = datetime(t.year, month, calendar.monthrange(t.year, month)[1], 23, 59, 59)
        elif not spec.matches_date(t.date()):
            t = _day_end(t.date(), -1)
        elif t.hour not in spec.hour:
            hour = _last_at_most(spec.hour, t.hour - 1)
            t = t.replace(hour=hour, minute=59, second=59) if hour is not None else _day_end(t.date(), -1)
        elif t.minute not in spec.minute:
            minute = _last_at_most(spec.minute, t.minute - 1)
            if minute is not None:
                t = t.replace(minute=minute, second=59)
            else:
                t = add_seconds(t.replace(minute=0, second=0), -1)
        elif t.second not in spec.second:
            second = _last_at_most(spec.second, t.second - 1)
            t = t.replace(second=second) if second is not None else add_seconds(t.replace(second=0), -1)
        else:
            return t
    return None


def add_seconds(t: datetime, seconds: int) -> datetime | None:
    """`t` moved by `seconds`, or None past the ends of the calendar."""
    try:
        return t + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _first_at_least(values: Iterable[int], floor: int) -> int | None:
    return min((value for value in values if value >= floor), default=None)


def _last_at_most(values: Iterable[int], ceiling: int) -> int | None:
    return max((value for value in values if value <= ceiling), default=None)


def _year_start(year: int) -> datetime | None:
    return datetime(year, 1, 1) if year <= 9999 else None


def _day_start(day: date, offset: int) -> datetime | None:
    try:
        return datetime.combine(day + timedelta(days=offset), datetime.min.time())
    except OverflowError:
        return None


def _day_end(day: date, offset: int) -> datetime | None:
    try:
        return datetime.combine(day + timedelta(days=offset), datetime.max.time().replace(microsecond=0))
    except OverflowError:
        return None


# --- time zones -----------------------------------------------------------------------------


def require_aware(dt: datetime, name: str) -> tzinfo:
    """The tzinfo of `dt`; ValueError naming `name` when `dt` is not a timezone-aware datetime."""
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got {dt!r})")
    return dt.tzinfo


def utc_offset(dt: datetime) -> timedelta:
    """The UTC offset of an aware `dt` (ValueError for a naive one)."""
    offset = dt.utcoffset()
    if offset is None:
        raise ValueError(f"expected a timezone-aware datetime (got {dt!r})")
    return offset


def as_utc(dt: datetime) -> datetime:
    """`dt` in UTC: aware datetimes sharing a tzinfo compare by wall clock, ignoring fold; UTC does not."""
    return dt.astimezone(_UTC)


def reading(instant: datetime, tz: tzinfo) -> datetime:
    """The naive wall-clock reading of `instant` in `tz`."""
    try:
        return instant.astimezone(tz).replace(tzinfo=None, fold=0)
    except OverflowError:  # within a day of datetime.min / datetime.max
        return instant.replace(tzinfo=None, fold=0)


def existing(wall: datetime, tz: tzinfo) -> datetime | None:
    """`wall` in `tz` at its first occurrence (fold=0), or None if the wall clock skips it."""
    moment = wall.replace(tzinfo=tz, fold=0)
    try:
        if moment.astimezone(_UTC).astimezone(tz).replace(tzinfo=None) != wall:
            return None
    except OverflowError:  # within a day of datetime.min / datetime.max
        return None
    return moment
