"""core.units: durations and sizes from config text, and back to short human forms."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backupd.core.units import format_duration, format_size, parse_duration, parse_instant, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400),
        ("1d 2h 3m 4s", 93784), ("1.5h", 5400), ("250ms", 0.25), ("0s", 0), ("2H", 7200), (" 5m ", 300),
        (90, 90), (0, 0), (1.5, 1.5),
    ],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("90", "'90' is not a duration such as \"90s\", \"15m\", \"2h\", \"1d\" or \"1h30m\", or a number of seconds; add a unit (s, m, h, d)"),
        ("", "'' is not a duration"),
        ("1x", "'1x' is not a duration"),
        ("m", "'m' is not a duration"),
        ("-5s", "'-5s' is not a duration"),
        ("30m1h", "'30m1h' is not a duration such as \"90s\", \"15m\", \"2h\", \"1d\" or \"1h30m\", or a number of seconds: units must appear once each, largest first"),
        ("1h1h", "units must appear once each"),
        (-1, "-1 is not a duration"),
        (float("inf"), "inf is not a duration"),
        (float("nan"), "nan is not a duration"),
        (True, "True is not a duration"),
        (None, "None is not a duration"),
        ("5300w", "'5300w' is longer than the longest duration allowed, 100 years"),
        (10**12, "1000000000000 is longer than the longest duration allowed, 100 years"),
    ],
)  # fmt: skip
def test_parse_duration_rejects(value, message):
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 2**20), ("1GiB", 2**30), ("100MB", 10**8), ("1.5KiB", 1536), ("10 kb", 10_000),
        ("4096", 4096), ("7B", 7), ("1.01KiB", 1034), ("2tib", 2 * 2**40), (0, 0), (123, 123),
    ],
)  # fmt: skip
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12XB", "'12XB' has an unknown unit 'XB'; expected B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"),
        ("MiB", "'MiB' is not a size"),
        ("-1MiB", "'-1MiB' is not a size"),
        (-1, "-1 is not a size"),
        (1.5, "1.5 is not a size"),
        (True, "True is not a size"),
    ],
)
def test_parse_size_rejects(value, message):
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.4, "0s"), (59.6, "1m"), (90, "1m30s"), (3600, "1h"), (97200, "27h"), (93600, "26h"), (3725, "1h2m5s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0B"), (1023, "1023B"), (1024, "1KiB"), (268435456, "256MiB"), (1610612736, "1.5GiB")]
)
def test_format_size(size, text):
    assert format_size(size) == text


@given(seconds=st.integers(0, 10**7))
def test_formatted_durations_parse_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@given(size=st.integers(0, 2**50))
def test_formatted_sizes_parse_back_within_rounding(size):
    text = format_size(size)
    assert abs(parse_size(text) - size) <= size * 0.005


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW), (" now ", NOW), ("-2h", NOW - timedelta(hours=2)), ("-1d 12h", NOW - timedelta(hours=36)),
    ("-90m", NOW - timedelta(minutes=90)), ("2026-11-26T14:30:00Z", datetime(2026, 11, 26, 14, 30, tzinfo=timezone.utc)),
])  # fmt: skip
def test_instants_may_be_relative_to_the_callers_clock(text, expected):
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("-2x", "is not a time before now"), ("yesterday", "or -DURATION such as -2h"),
])  # fmt: skip
def test_bad_relative_instants_say_what_works(text, message):
    with pytest.raises(ValueError, match=message):
        parse_instant(text, NOW)


def test_without_a_clock_only_absolute_instants_parse():
    with pytest.raises(ValueError, match="is not an ISO 8601 time"):
        parse_instant("now")


@given(st.integers(min_value=0, max_value=10**7))
def test_minus_n_seconds_is_n_seconds_before_now(n):
    assert parse_instant(f"-{n}s", NOW) == NOW - timedelta(seconds=n)
