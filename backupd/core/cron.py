"""Cron expressions: parsing and validation, fire times in a time zone, catch-up of missed runs.

The grammar is crontab(5) plus an optional leading seconds field:

    [second] minute hour day month day_of_week

* 5 fields (seconds = 0) or 6 fields; `*/10 * * * * *` is every 10 seconds.
* Or one of the crontab aliases: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`
  (`@midnight`) and `@hourly`, each at the start of its period (`@weekly`: Sunday 00:00).
* Each field is a comma list of `*`, `N`, `N-M`, `*/S`, `N-M/S` or `N/S` (N to the field's maximum).
* month takes names jan..dec, day_of_week names sun..sat; Sunday is 0 or 7. A day_of_week range
  ending on Sunday (`fri-sun`, `5-0`) means up to 7.
* day and day_of_week: when both are restricted (neither begins with `*`) a day matches if EITHER
  matches (`0 0 1 * mon` = the 1st and every Monday); otherwise both must match. This is the
  crontab(5) rule, including its quirk that `*/2` counts as unrestricted.

Times are matched on the wall clock of the tzinfo of the datetime passed in (use zoneinfo or
`datetime.timezone`). Across DST changes: a wall time that does not exist (spring forward) is
skipped, and a wall time that occurs twice (fall back) fires once, at its first occurrence.

`CronSpec.apscheduler_kwargs()` gives the same schedule as keyword arguments of APScheduler 3.x's
`CronTrigger`, with weekdays as names so APScheduler's Monday = 0 numbering never applies. The two
agree everywhere except at DST changes, where APScheduler 3.x fires a nonexistent wall time an
hour late (02:30 on a spring-forward day fires at 03:30) and may fire a repeated wall time twice;
`next_after` follows the rules above (tests/core/test_cron.py pins both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo

from .cron_clock import add_seconds, as_utc, existing, next_wall, previous_wall, reading, require_aware, utc_offset

__all__ = ["CronSpec", "fire_times", "missed_runs", "parse_cron"]

FIELD_NAMES = ("second", "minute", "hour", "day", "month", "day_of_week")
_BOUNDS = {
    "second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "day_of_week": (0, 7),
}  # fmt: skip
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbering: index = number
_NAMES = {
    "month": {name: number for number, name in enumerate(MONTH_NAMES, start=1)},
    "day_of_week": {name: number for number, name in enumerate(WEEKDAY_NAMES)},
}
_APS_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_POSITIONS = ("1st", "2nd", "3rd", "4th", "5th")
_MAX_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_SEARCH_YEARS = 400  # the Gregorian calendar repeats every 400 years; a valid spec fires within one cycle


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the allowed values of each field.

    day_of_week uses cron numbering, 0 = Sunday .. 6 = Saturday (7 is folded into 0). The
    `*_restricted` flags record whether day / day_of_week were written without a leading `*`; they
    select the OR rule. `expression` is the text as written and takes no part in equality, so
    `0 0 * * 0` == `0 0 * * 7`.
    """

    second: frozenset[int]
    minute: frozenset[int]
    hour: frozenset[int]
    day: frozenset[int]
    month: frozenset[int]
    day_of_week: frozenset[int]
    day_restricted: bool = False
    day_of_week_restricted: bool = False
    expression: str = field(default="", compare=False)

    @property
    def day_or_weekday(self) -> bool:
        """True when a day matches if day OR day_of_week matches (both restricted)."""
        return self.day_restricted and self.day_of_week_restricted

    def matches_date(self, day: date) -> bool:
        if day.month not in self.month:
            return False
        in_day = day.day in self.day
        in_weekday = (day.weekday() + 1) % 7 in self.day_of_week
        return (in_day or in_weekday) if self.day_or_weekday else (in_day and in_weekday)

    def matches(self, moment: datetime) -> bool:
        """Whether the wall-clock fields of `moment` (whole seconds only) are a fire time of this spec."""
        return (
            moment.microsecond == 0
            and moment.second in self.second
            and moment.minute in self.minute
            and moment.hour in self.hour
            and self.matches_date(moment.date())
        )

    def next_after(self, dt: datetime) -> datetime:
        """The first fire time strictly after `dt`, in `dt`'s tzinfo (fold=0).

        Raises ValueError for a naive `dt`, or when no fire time exists before year 9999.

        >>> from datetime import timezone
        >>> spec = parse_cron("30 2 * * *")
        >>> spec.next_after(datetime(2024, 3, 30, 12, 0, tzinfo=timezone.utc)).isoformat()
        '2024-03-31T02:30:00+00:00'
        """
        tz = require_aware(dt, "dt")
        limit = as_utc(dt)
        # Search the wall clock from the reading of the instant itself: a nonexistent `dt` (in a
        # DST gap) stands for an instant whose real reading differs.
        cursor = add_seconds(reading(limit, tz).replace(microsecond=0), 1)
        while cursor is not None and (wall := next_wall(self, cursor, dt.year + _SEARCH_YEARS)) is not None:
            moment = existing(wall, tz)
            if moment is not None and as_utc(moment) > limit:
                return moment
            cursor = add_seconds(wall, 1)
        raise ValueError(f"cron {self.expression!r}: no fire time after {dt.isoformat()} before year 9999")

    def previous_at_or_before(self, dt: datetime) -> datetime | None:
        """The last fire time at or before `dt`, in `dt`'s tzinfo; None if there is none after year 1."""
        tz = require_aware(dt, "dt")
        limit = as_utc(dt)
        cursor: datetime | None = reading(limit, tz).replace(microsecond=0)
        local = limit.astimezone(tz)
        if local.fold == 1 and cursor is not None:
            # In the second pass of a repeated hour, the whole first pass (later wall times too)
            # lies before `dt`: search back from the wall time the first-pass offset gives.
            cursor += utc_offset(local.replace(fold=0)) - utc_offset(local)
        while cursor is not None and (wall := previous_wall(self, cursor, dt.year - _SEARCH_YEARS)) is not None:
            moment = existing(wall, tz)
            if moment is not None and as_utc(moment) <= limit:
                return moment
            cursor = add_seconds(wall, -1)
        return None

    def apscheduler_kwargs(self) -> dict[str, str]:
        """Keyword arguments for `apscheduler.triggers.cron.CronTrigger(**kwargs, timezone=tz)` (3.x).

        Weekdays are given by name ("mon,fri"). The OR rule is expressed inside APScheduler's day
        field with weekday positions ("1,1st mon,2nd mon,...,5th mon") and day_of_week "*", since
        APScheduler itself always requires every field to match.

        >>> kwargs = parse_cron("*/20 30 2 * * mon-fri").apscheduler_kwargs()
        >>> kwargs["second"], kwargs["minute"], kwargs["hour"], kwargs["day"], kwargs["day_of_week"]
        ('0,20,40', '30', '2', '*', 'mon,tue,wed,thu,fri')
        """
        weekdays = [_APS_WEEKDAYS[(number - 1) % 7] for number in range(1, 8) if number % 7 in self.day_of_week]
        if self.day_or_weekday:
            days = [str(number) for number in sorted(self.day)]
            days += [f"{position} {weekday}" for weekday in weekdays for position in _POSITIONS]
            day, day_of_week = ",".join(days), "*"
        else:
            day = _listing(self.day, "day")
            day_of_week = "*" if len(weekdays) == 7 else ",".join(weekdays)
        return {
            "second": _listing(self.second, "second"),
            "minute": _listing(self.minute, "minute"),
            "hour": _listing(self.hour, "hour"),
            "day": day,
            "month": _listing(self.month, "month"),
            "day_of_week": day_of_week,
        }


def parse_cron(expression: str) -> CronSpec:
    """Parse a 5- or 6-field cron expression; ValueError names the field and the problem.

    >>> sorted(parse_cron("0 0 * * sun,7").day_of_week)
    [0]
    >>> parse_cron("61 * * * *")
    Traceback (most recent call last):
    ...
    ValueError: minute: 61 is out of range 0-59
    """
    if not isinstance(expression, str):
        raise ValueError(f"expected a cron expression string, got {type(expression).__name__}")
    written = expression
    if expression.strip().startswith("@"):
        alias = expression.strip().lower()
        if alias not in ALIASES:
            raise ValueError(f"unknown alias {expression.strip()[:20]!r} (known: {', '.join(ALIASES)};"
                             " @reboot is not a schedule: the daemon catches up missed runs at start)")
        expression = ALIASES[alias]
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(f"expected 5 or 6 fields, got {len(parts)}")
    if len(parts) == 5:
        parts = ["0", *parts]
    values = {name: _parse_field(name, text) for name, text in zip(FIELD_NAMES, parts)}
    values["day_of_week"] = frozenset(number % 7 for number in values["day_of_week"])
    spec = CronSpec(
        **values,
        day_restricted=not parts[3].startswith("*"),
        day_of_week_restricted=not parts[5].startswith("*"),
        expression=" ".join(written.split()),
    )
    if not spec.day_or_weekday and not any(
        day <= _MAX_MONTH_DAYS[month - 1] for month in spec.month for day in spec.day
    ):
        months = ",".join(MONTH_NAMES[month - 1] for month in sorted(spec.month))
        days = ",".join(str(day) for day in sorted(spec.day))
        raise ValueError(f"day: {days} never occurs in month {months}; the schedule would never run")
    return spec


def fire_times(spec: CronSpec, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time t with start < t <= end, ascending, in `start`'s tzinfo."""
    require_aware(end, "end")
    times: list[datetime] = []
    last = as_utc(end)
    moment = start
    while True:
        moment = spec.next_after(moment)
        if as_utc(moment) > last:
            return times
        times.append(moment)


def missed_runs(
    spec: CronSpec, last_fire: datetime, now: datetime, grace_s: float, tz: tzinfo | None = None
) -> datetime | None:
    """The one run to catch up at start: the latest fire time t with last_fire < t <= now and
    now - t <= grace_s, or None. Earlier missed runs are coalesced into it (never more than one).

    Wall-clock fields are read in `tz`, by default `last_fire`'s tzinfo (pass the schedule's zone).
    The result is in that zone.
    """
    zone = tz or require_aware(last_fire, "last_fire")
    require_aware(now, "now")
    candidate = spec.previous_at_or_before(now.astimezone(zone))
    if candidate is None:
        return None
    t = as_utc(candidate)
    if t <= as_utc(last_fire) or (as_utc(now) - t).total_seconds() > grace_s:
        return None
    return candidate


# --- parsing --------------------------------------------------------------------------------


def _parse_field(name: str, text: str) -> frozenset[int]:
    low, high = _BOUNDS[name]
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{name}: empty item in list {text!r}")
        base, slash, step_text = item.partition("/")
        if slash:
            step = _number(name, step_text, what="step")
            if step < 1:
                raise ValueError(f"{name}: step {step} in {item!r} must be at least 1")
        else:
            step = 1
        if base == "*":
            first, last = low, high if name != "day_of_week" else 6
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _value(name, first_text), _value(name, last_text)
            if name == "day_of_week" and last == 0 and first > 0:
                last = 7  # fri-sun
            if first > last:
                raise ValueError(f"{name}: range {base!r} runs backwards ({first} > {last})")
        else:
            first = _value(name, base)
            last = (high if name != "day_of_week" else 6) if slash else first
            if slash and first > last:
                last = first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(name: str, text: str) -> int:
    low, high = _BOUNDS[name]
    names = _NAMES.get(name, {})
    if text.lower() in names:
        return names[text.lower()]
    number = _number(name, text, what="value")
    if not low <= number <= high:
        raise ValueError(f"{name}: {number} is out of range {low}-{high}")
    return number


def _number(name: str, text: str, *, what: str) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    names = _NAMES.get(name)
    if names and what == "value":
        first, last = next(iter(names)), list(names)[-1]
        raise ValueError(f"{name}: {text!r} is not a number or a name ({first}..{last})")
    raise ValueError(f"{name}: {text!r} is not a {'number' if what == 'value' else 'step number'}")


def _listing(values: frozenset[int], name: str) -> str:
    low, high = _BOUNDS[name]
    if values == frozenset(range(low, high + 1)):
        return "*"
    return ",".join(str(value) for value in sorted(values))
