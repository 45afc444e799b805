"""core.windows: parsing window tables, and where an instant stands relative to windows (DST included)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupd.core.windows import Window, WindowState, parse_days, parse_time_of_day, parse_window, window_state

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = frozenset(range(5))
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def at(*args, tz=UTC, fold=0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# --- parsing --------------------------------------------------------------------------------


def test_parse_window_from_config_shape():
    assert parse_window({"days": ["mon-fri"], "start": "09:00", "end": "17:00"}) == Window(WEEKDAYS, time(9), time(17))
    assert parse_window({"start": "22:00", "end": "06:00"}) == Window(frozenset(range(7)), time(22), time(6))
    assert parse_window({"days": ["*"], "start": "0:00", "end": "24:00"}).end == time(0)


@pytest.mark.parametrize(
    ("days", "numbers"),
    [
        (["mon"], {0}), (["sun"], {6}), (["Monday", "SAT"], {0, 5}), (["*"], set(range(7))), (["mon-fri"], set(range(5))),
        (["sat-mon"], {5, 6, 0}), (["fri-fri"], {4}), (["tue", "mon-wed"], {0, 1, 2}),
    ],
)  # fmt: skip
def test_parse_days(days, numbers):
    assert parse_days(days) == numbers


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"days": ["funday"], "start": "09:00", "end": "17:00"}, "days: 'funday' is not a day name (mon..sun), a range such as mon-fri, or *"),
        ({"days": "mon", "start": "09:00", "end": "17:00"}, "days: expected an array of days such as [\"mon-fri\"] or [\"*\"] (got 'mon')"),
        ({"days": [], "start": "09:00", "end": "17:00"}, "days: must name at least one day (use [\"*\"] for every day)"),
        ({"days": ["mon-"], "start": "09:00", "end": "17:00"}, "days: 'mon-' is not a day name"),
        ({"start": "25:00", "end": "17:00"}, "start: '25:00' is not a time HH:MM (00:00..23:59)"),
        ({"start": "9", "end": "17:00"}, "start: '9' is not a time HH:MM"),
        ({"start": "24:00", "end": "17:00"}, "start: '24:00' is not a time HH:MM (00:00..23:59)"),
        ({"start": "09:00", "end": "17:60"}, "end: '17:60' is not a time HH:MM (00:00..23:59 or 24:00)"),
        ({"start": "09:00"}, "end: required key missing"),
        ({"start": "09:00", "end": "10:00", "day": ["mon"]}, "day: unknown key (expected days, start, end)"),
        ("09:00-17:00", "expected a table such as"),
    ],
)  # fmt: skip
def test_parse_window_errors_begin_with_the_key(mapping, message):
    with pytest.raises(ValueError) as caught:
        parse_window(mapping)
    assert str(caught.value).startswith(message)


def test_window_describes_itself():
    assert str(Window(WEEKDAYS, time(9), time(17))) == "mon-fri 09:00-17:00"
    assert str(Window(frozenset({5, 6}), time(22), time(6))) == "sat,sun 22:00-06:00"
    assert str(Window(frozenset({5, 6, 0}), time(0), time(0))) == "sat-mon 00:00-24:00"
    assert str(Window(frozenset(range(7)), time(1), time(5))) == "every day 01:00-05:00"
    assert str(Window(frozenset({0, 2, 4}), time(1), time(5))) == "mon,wed,fri 01:00-05:00"


def test_window_rejects_bad_values():
    with pytest.raises(ValueError, match="days must be a non-empty set"):
        Window(frozenset(), time(1), time(2))
    with pytest.raises(ValueError, match="days must be a non-empty set"):
        Window(frozenset({7}), time(1), time(2))
    assert parse_time_of_day("07:05") == time(7, 5)


# --- window_state ---------------------------------------------------------------------------

OFFICE = Window(WEEKDAYS, time(9), time(17))
NIGHT = Window(frozenset({4}), time(22), time(6))  # Friday 22:00 to Saturday 06:00


def test_inside_and_outside_a_daytime_window():
    monday_noon = at(2024, 3, 4, 12)
    assert window_state(monday_noon, [OFFICE], "UTC") == WindowState(True, OFFICE, at(2024, 3, 4, 17), None)
    friday_evening = at(2024, 3, 8, 17)  # the end is exclusive
    assert window_state(friday_evening, [OFFICE], UTC) == WindowState(False, OFFICE, None, at(2024, 3, 11, 9))


def test_a_window_crossing_midnight_belongs_to_its_start_day():
    assert window_state(at(2024, 3, 9, 5, 59), [NIGHT], UTC) == WindowState(True, NIGHT, at(2024, 3, 9, 6), None)
    assert window_state(at(2024, 3, 8, 21), [NIGHT], UTC).next_start == at(2024, 3, 8, 22)
    # Thursday 05:00 is not inside: the window starts on Fridays only.
    assert window_state(at(2024, 3, 7, 5), [NIGHT], UTC).inside is False


def test_touching_and_overlapping_windows_merge():
    evening = Window(frozenset({4}), time(17), time(22))
    state = window_state(at(2024, 3, 8, 12), [OFFICE, evening, NIGHT], UTC)
    assert state == WindowState(True, OFFICE, at(2024, 3, 9, 6), None)


def test_windows_covering_the_whole_week_never_end():
    whole = [Window(frozenset(range(7)), time(0), time(0))]
    assert window_state(at(2024, 3, 8, 12), whole, UTC) == WindowState(True, whole[0], None, None)
    halves = [Window(frozenset(range(7)), time(0), time(12)), Window(frozenset(range(7)), time(12), time(0))]
    assert window_state(at(2024, 3, 8, 12), halves, UTC).ends_at is None


def test_no_windows():
    assert window_state(at(2024, 3, 8, 12), [], UTC) == WindowState(False, None, None, None)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        window_state(datetime(2024, 3, 8), [OFFICE], UTC)


def test_windows_are_read_in_their_zone():
    state = window_state(at(2024, 3, 4, 8, 30), [OFFICE], "Europe/Berlin")  # 09:30 in Berlin
    assert state.inside and state.ends_at == at(2024, 3, 4, 17, tz=BERLIN) and utc(state.ends_at) == at(2024, 3, 4, 16)


def test_dst_spring_forward():
    # 2024-03-31: the Berlin clock jumps from 02:00 to 03:00.
    night = Window(frozenset(range(7)), time(1), time(2, 30))
    state = window_state(at(2024, 3, 31, 1, 30, tz=BERLIN), [night], BERLIN)
    assert state.ends_at == at(2024, 3, 31, 3, 0, tz=BERLIN)  # 02:30 never shows: it ends at the jump
    early = Window(frozenset(range(7)), time(2, 30), time(4))
    state = window_state(at(2024, 3, 31, 1, 0, tz=BERLIN), [early], BERLIN)
    assert state.next_start == at(2024, 3, 31, 3, 0, tz=BERLIN) and utc(state.next_start) == at(2024, 3, 31, 1, 0)
    assert window_state(at(2024, 3, 31, 3, 30, tz=BERLIN), [early], BERLIN).inside


def test_dst_fall_back_uses_the_first_occurrence():
    # 2024-10-27: the Berlin clock goes back from 03:00 CEST to 02:00 CET.
    window = Window(frozenset(range(7)), time(1), time(2, 30))
    state = window_state(at(2024, 10, 27, 1, 30, tz=BERLIN), [window], BERLIN)
    assert utc(state.ends_at) == at(2024, 10, 27, 0, 30)  # 02:30 CEST
    second_pass = at(2024, 10, 27, 2, 10, tz=BERLIN, fold=1)  # 02:10 CET: after the window closed
    assert window_state(second_pass, [window], BERLIN).inside is False


# --- property: against a direct reading of the rules, in UTC ---------------------------------


def _inside(moment: datetime, windows: list[Window]) -> bool:
    """The rule as written: on a listed day from start; a crossing (or 24 h) window runs into the next day."""
    day, clock = moment.weekday(), moment.time()
    for w in windows:
        yesterday = (day - 1) % 7
        if w.end > w.start:
            if day in w.days and w.start <= clock < w.end:
                return True
        elif (day in w.days and clock >= w.start) or (yesterday in w.days and clock < w.end):
            return True
    return False


def _boundaries(moment: datetime, windows: list[Window]) -> list[datetime]:
    points = {
        datetime.combine(moment.date() + timedelta(days=offset), clock, tzinfo=UTC)
        for offset in range(0, 10)
        for w in windows
        for clock in (w.start, w.end)
    }
    return sorted(point for point in points if point > moment)


windows_strategy = st.lists(
    st.builds(
        Window,
        st.frozensets(st.integers(0, 6), min_size=1),
        st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
        st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
    ),
    min_size=1,
    max_size=3,
)


@PROPERTY
@given(
    windows=windows_strategy,
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
)
def test_window_state_follows_the_rules(windows, moment):
    state = window_state(moment, windows, UTC)
    assert state.inside == _inside(moment, windows)
    changes = [point for point in _boundaries(moment, windows) if _inside(point, windows) != state.inside]
    if state.inside:
        assert state.next_start is None
        assert state.ends_at == (changes[0] if changes else None)
        assert state.window in windows and _inside(moment, [state.window])
    else:
        assert state.ends_at is None and state.next_start == changes[0]
        assert _inside(state.next_start, [state.window])


@PROPERTY
@given(
    windows=windows_strategy,
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(BERLIN)),
)
def test_window_state_boundaries_are_consistent_in_a_dst_zone(windows, moment):
    state = window_state(moment, windows, BERLIN)
    if state.inside:
        if state.ends_at is not None:
            assert utc(state.ends_at) > utc(moment)
            assert not window_state(state.ends_at, windows, BERLIN).inside
            assert window_state(utc(state.ends_at) - timedelta(seconds=1), windows, BERLIN).inside
    else:
        assert utc(state.next_start) > utc(moment)
        assert window_state(state.next_start, windows, BERLIN).inside
        assert not window_state(utc(state.next_start) - timedelta(seconds=1), windows, BERLIN).inside


def test_occurrence_of_a_crossing_window():
    assert NIGHT.occurrence(date(2024, 3, 8), UTC) == (at(2024, 3, 8, 22), at(2024, 3, 9, 6))
