"""Unit converters for config values: durations ("1h30m") and sizes ("512MiB"), and their inverse for messages.

Each parser raises `ValueError` whose message quotes the bad value and says what was expected, so
the config layer can report it as `path: message` unchanged.

>>> parse_duration("1h30m"), parse_duration(90), parse_size("512MiB"), parse_size("100MB")
(5400.0, 90.0, 536870912, 100000000)
>>> format_duration(97200), format_size(268435456)
('27h', '256MiB')
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction

MAX_DURATION_S = 100 * 365 * 86400
DURATION_UNITS: dict[str, int | Fraction] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": Fraction(1, 1000)}
_DURATION_ORDER = list(DURATION_UNITS)  # largest first; a duration names its units in this order
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|[wdhms])", re.IGNORECASE)

SIZE_UNITS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_DURATION_HELP = 'a duration such as "90s", "15m", "2h", "1d" or "1h30m", or a number of seconds'
_SIZE_HELP = 'a size such as "512MiB", "1GiB", "100MB" or a number of bytes'


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a non-negative number of seconds, or units w, d, h, m, s, ms largest first.

    >>> parse_duration("2h"), parse_duration("1d 12h"), parse_duration("1.5m"), parse_duration("250ms")
    (7200.0, 129600.0, 90.0, 0.25)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not {_DURATION_HELP}")
    if not isinstance(value, str):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not {_DURATION_HELP}")
        return _at_most_max(value, value)
    text, position, total, seen = value.strip(), 0, Fraction(0), -1
    if not text:
        raise ValueError(f"{value!r} is not {_DURATION_HELP}")
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            hint = "; add a unit (s, m, h, d)" if re.fullmatch(r"\d+(\.\d+)?", text) else ""
            raise ValueError(f"{value!r} is not {_DURATION_HELP}{hint}")
        number, unit = match.group(1), match.group(2).lower()
        rank = _DURATION_ORDER.index(unit)
        if rank <= seen:
            raise ValueError(f"{value!r} is not {_DURATION_HELP}: units must appear once each, largest first")
        seen, position = rank, match.end()
        total += Fraction(number) * DURATION_UNITS[unit]
    return _at_most_max(value, total)


def _at_most_max(value: object, seconds: float | Fraction) -> float:
    # Longer durations are typos, and would overflow datetime arithmetic downstream.
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than the longest duration allowed, 100 years")
    return float(seconds)


def parse_size(value: str | int) -> int:
    """Bytes in `value`: a non-negative integer, or a number with B, kB/MB/GB/TB (powers of 1000) or
    KiB/MiB/GiB/TiB (powers of 1024); units are case-insensitive, a bare number is bytes, and a
    fraction rounds to the nearest byte.

    >>> parse_size("1GiB"), parse_size("1.5KiB"), parse_size("10 kb"), parse_size(4096)
    (1073741824, 1536, 10000, 4096)
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not {_SIZE_HELP}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is not {_SIZE_HELP}")
        return value
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not {_SIZE_HELP}")
    number, unit = match.group(1), match.group(2).lower() or "b"
    if unit not in SIZE_UNITS:
        expected = "B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"
        raise ValueError(f"{value!r} has an unknown unit {match.group(2)!r}; expected {expected}")
    return round(Fraction(number) * SIZE_UNITS[unit])  # "1.01KiB" -> 1034: fractions round to the nearest byte


def format_duration(seconds: float) -> str:
    """A short human form, hours at most, rounded to the second: 97200 -> '27h', 5400 -> '1h30m'.

    >>> format_duration(0), format_duration(59.6), format_duration(3725)
    ('0s', '1m', '1h2m5s')
    """
    remaining = round(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_size(size: int) -> str:
    """A short human form in binary units: 268435456 -> '256MiB', 1610612736 -> '1.5GiB'.

    >>> format_size(0), format_size(1000), format_size(1536), format_size(1610612736)
    ('0B', '1000B', '1.5KiB', '1.5GiB')
    """
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = SIZE_UNITS[unit.lower()]
        if abs(size) >= scale:
            return f"{size / scale:.2f}".rstrip("0").rstrip(".") + unit
    return f"{size}B"


def parse_instant(value: str, now: datetime | None = None) -> datetime:
    """ISO 8601 with `Z` or an offset, fractional seconds allowed: '2026-11-26T14:30:00.5Z' -> aware
    datetime; with `now` (the caller's clock) also `now` and `-DURATION` ('-2h', '-1d 12h') before it.

    >>> t = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    >>> parse_instant("-2h", t).isoformat(), parse_instant("now", t) == t
    ('2026-12-04T10:00:00+00:00', True)
    """
    text = value.strip() if isinstance(value, str) else value
    if now is not None and isinstance(text, str) and (text == "now" or text.startswith("-")):
        if text == "now":
            return now
        try:
            return now - timedelta(seconds=parse_duration(text[1:]))
        except ValueError:
            raise ValueError(f"{value!r} is not a time before now (examples: -2h, -1d 12h, -90m)") from None
    try:
        at = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        relative = ", now, or -DURATION such as -2h" if now is not None else ""
        raise ValueError(f"{value!r} is not an ISO 8601 time (example: 2026-11-26T14:30:00Z{relative})") from None
    if at.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone; add Z or an offset such as +01:00")
    return at
