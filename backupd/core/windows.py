"""Weekly time windows (blackout and maintenance) in a time zone, and where `now` stands relative to them.

A `Window` opens on each of its days at `start` and closes at `end` on the wall clock of the zone.
`end` earlier than `start` crosses midnight: the part after midnight belongs to the next day (a
`fri 22:00-06:00` window runs from Friday 22:00 to Saturday 06:00). `end == start` is a whole
24 hours, so `00:00-00:00` is the whole day; `24:00` may be written as an end for midnight.

Across DST changes each opening and closing is the first instant at which the wall clock shows
at least that time on that date: a time the clock skips (spring forward) becomes the instant the
clock jumps, and a time the clock shows twice (fall back) is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

__all__ = ["Window", "WindowState", "parse_days", "parse_time_of_day", "parse_window", "window_state"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = Python weekday(), 0 = Monday
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBERS = {name: index for names in (DAY_NAMES, _FULL_NAMES) for index, name in enumerate(names)}
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_ONE_SECOND = timedelta(seconds=1)
_ALL_DAYS = frozenset(range(7))
_WINDOW_KEYS = ("days", "start", "end")


@dataclass(frozen=True)
class Window:
    """Open from `start` to `end` (wall clock) starting on each of `days` (0 = Monday .. 6 = Sunday)."""

    days: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        if not self.days or not self.days <= _ALL_DAYS:
            raise ValueError(f"days must be a non-empty set of 0 (Monday) .. 6 (Sunday), got {sorted(self.days)}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is not None or value.second or value.microsecond:
                raise ValueError(f"{name} must be a naive time of whole minutes, got {value!r}")

    def __str__(self) -> str:
        """e.g. 'mon-fri 09:00-17:00', 'sat,sun 22:00-06:00', 'every day 00:00-24:00' (midnight ends as 24:00)."""
        end = "24:00" if self.end == time(0, 0) else f"{self.end:%H:%M}"
        return f"{_describe_days(self.days)} {self.start:%H:%M}-{end}"

    def occurrence(self, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
        """The instants [open, close) of the opening that starts on local date `day` (not checked against days)."""
        close_day = day if self.end > self.start else day + timedelta(days=1)
        return _resolve(day, self.start, tz), _resolve(close_day, self.end, tz)


@dataclass(frozen=True)
class WindowState:
    """Where an instant stands relative to a set of windows.

    inside: some window is open. window: the first open one (config order) when inside, else the one
    that opens next. ends_at: when inside, the instant no window is open any more (windows that
    overlap or touch are merged); None when the windows cover the whole week. next_start: when
    outside, the instant the next window opens; None when there are no windows.
    """

    inside: bool
    window: Window | None
    ends_at: datetime | None
    next_start: datetime | None


def parse_time_of_day(text: object, *, allow_24: bool = False) -> time:
    """'HH:MM' (00:00..23:59; '24:00' too when allow_24, meaning midnight at the end of a day)."""
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is not None:
        hour, minute = int(match.group(1)), int(match.group(2))
        if allow_24 and (hour, minute) == (24, 0):
            return time(0, 0)
        if hour <= 23 and minute <= 59:
            return time(hour, minute)
    return_hint = " or 24:00" if allow_24 else ""
    raise ValueError(f"{text!r} is not a time HH:MM (00:00..23:59{return_hint})")


def parse_days(items: object) -> frozenset[int]:
    """Day names ('mon', 'monday'), ranges ('mon-fri', 'fri-mon' wraps round the week) or '*' -> 0..6.

    >>> sorted(parse_days(["mon-wed", "sun"])), sorted(parse_days(["sat-mon"]))
    ([0, 1, 2, 6], [0, 5, 6])
    """
    if isinstance(items, str) or not isinstance(items, (list, tuple)):
        raise ValueError(f'expected an array of days such as ["mon-fri"] or ["*"] (got {items!r})')
    if not items:
        raise ValueError("must name at least one day (use [\"*\"] for every day)")
    days: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a day name (mon..sun), a range such as mon-fri, or *")
        text = item.strip().lower()
        if text == "*":
            days.update(_ALL_DAYS)
            continue
        first, dash, last = text.partition("-")
        if first not in _DAY_NUMBERS or (dash and last not in _DAY_NUMBERS):
            raise ValueError(f"{item!r} is not a day name (mon..sun), a range such as mon-fri, or *")
        start = _DAY_NUMBERS[first]
        stop = _DAY_NUMBERS[last] if dash else start
        days.update((start + offset) % 7 for offset in range((stop - start) % 7 + 1))
    return frozenset(days)


def parse_window(mapping: Mapping[str, object]) -> Window:
    """A window from its config form `{days = ["mon-fri"], start = "09:00", end = "17:00"}`.

    days defaults to every day. ValueError messages begin with the offending key.
    """
    if not isinstance(mapping, Mapping):
        example = '{days = ["mon-fri"], start = "09:00", end = "17:00"}'
        raise ValueError(f"expected a table such as {example} (got {mapping!r})")
    unknown = sorted(str(key) for key in mapping if key not in _WINDOW_KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (expected days, start, end)")
    for key in ("start", "end"):
        if key not in mapping:
            raise ValueError(f"{key}: required key missing")
    try:
        days = parse_days(mapping.get("days", ["*"]))
    except ValueError as exc:
        raise ValueError(f"days: {exc}") from None
    try:
        start = parse_time_of_day(mapping["start"])
    except ValueError as exc:
        raise ValueError(f"start: {exc}") from None
    try:
        end = parse_time_of_day(mapping["end"], allow_24=True)
    except ValueError as exc:
        raise ValueError(f"end: {exc}") from None
    return Window(days, start, end)


def window_state(now: datetime, windows: Iterable[Window], tz: tzinfo | str) -> WindowState:
    """Where `now` (aware) stands relative to `windows`, read on the wall clock of `tz`.

    >>> w = Window(frozenset({0, 1, 2, 3, 4}), time(9), time(17))
    >>> s = window_state(datetime(2024, 3, 4, 12, tzinfo=timezone.utc), [w], "UTC")
    >>> s.inside, s.ends_at.isoformat()
    (True, '2024-03-04T17:00:00+00:00')
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime (got {now!r})")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    windows = tuple(windows)
    if not windows:
        return WindowState(False, None, None, None)
    instant = now.astimezone(_UTC)
    today = now.astimezone(zone).date()
    # Openings that start from two days back to two weeks ahead: enough to find the current one,
    # the next one, and a merged run of a week (which means the windows never close).
    openings = []
    for offset in range(-2, 16):
        day = today + timedelta(days=offset)
        for window in windows:
            if day.weekday() in window.days:
                opened, closed = (moment.astimezone(_UTC) for moment in window.occurrence(day, zone))
                if opened < closed:  # empty when both ends fall in the same DST gap
                    openings.append((window, opened, closed))
    current = [(window, closed) for window, opened, closed in openings if opened <= instant < closed]
    if current:
        first = next(window for window in windows if any(window is w for w, _ in current))
        end = max(closed for _, closed in current)
        horizon = instant + timedelta(days=7, hours=1)
        while end <= horizon:
            later = max((closed for _, opened, closed in openings if opened <= end < closed), default=None)
            if later is None:
                return WindowState(True, first, end.astimezone(zone), None)
            end = later
        return WindowState(True, first, None, None)
    upcoming = [(opened, index) for index, (_, opened, _) in enumerate(openings) if opened > instant]
    if not upcoming:
        return WindowState(False, None, None, None)
    opened, index = min(upcoming)
    return WindowState(False, openings[index][0], None, opened.astimezone(zone))


def _resolve(day: date, at: time, tz: tzinfo) -> datetime:
    """The first instant whose wall clock in `tz` shows at least `at` on `day`."""
    wall = datetime.combine(day, at)
    moment = wall.replace(tzinfo=tz, fold=0)
    if moment.astimezone(_UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return moment
    # `wall` falls in a gap: find the whole second at which the clock jumps over it, between the
    # reading with the offset after the change (before the jump) and the one before it (after).
    readings = sorted((m - _EPOCH) // _ONE_SECOND for m in (wall.replace(tzinfo=tz, fold=1), moment))
    low, high = readings[0], readings[1] + 1
    while high - low > 1:  # invariant: the clock shows less than `wall` at low, at least `wall` at high
        middle = (low + high) // 2
        if _wall_at(middle, tz) >= wall:
            high = middle
        else:
            low = middle
    return (_EPOCH + high * _ONE_SECOND).astimezone(tz)


def _wall_at(timestamp: int, tz: tzinfo) -> datetime:
    return (_EPOCH + timestamp * _ONE_SECOND).astimezone(tz).replace(tzinfo=None)


def _describe_days(days: frozenset[int]) -> str:
    if days == _ALL_DAYS:
        return "every day"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:  # sat-mon wraps round the week
        runs[0] = runs.pop() + runs[0]
    parts = [
        DAY_NAMES[run[0]] if len(run) == 1 else
        f"{DAY_NAMES[run[0]]},{DAY_NAMES[run[1]]}" if len(run) == 2 else
        f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"
        for run in runs
    ]  # fmt: skip
    return ",".join(parts)
