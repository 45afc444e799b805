"""core.cron: parsing with precise errors, fire times (also across DST), catch-up, and APScheduler agreement."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backupd.core.cron import MONTH_NAMES, WEEKDAY_NAMES, CronSpec, fire_times, missed_runs, parse_cron

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [UTC, BERLIN]
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def at(*args, tz=UTC, fold=0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# --- parsing --------------------------------------------------------------------------------


def test_five_fields_fire_on_second_zero():
    spec = parse_cron("30 2 * * *")
    assert (spec.second, spec.minute, spec.hour) == ({0}, {30}, {2})
    assert spec.day == frozenset(range(1, 32)) and spec.month == frozenset(range(1, 13))
    assert spec.day_of_week == frozenset(range(7))
    assert spec.expression == "30 2 * * *"


def test_six_fields_lead_with_seconds():
    spec = parse_cron("*/10 * * * * *")
    assert spec.second == {0, 10, 20, 30, 40, 50}
    assert spec.minute == frozenset(range(60))
    assert spec.next_after(at(2024, 1, 1, 0, 0, 5)) == at(2024, 1, 1, 0, 0, 10)


@pytest.mark.parametrize(
    ("field", "text", "values"),
    [
        ("minute", "0,15,30-32", {0, 15, 30, 31, 32}),
        ("minute", "10-20/5", {10, 15, 20}),
        ("minute", "50/4", {50, 54, 58}),
        ("hour", "*/6", {0, 6, 12, 18}),
        ("day", "*/10", {1, 11, 21, 31}),
        ("month", "jan,MAR-may", {1, 3, 4, 5}),
        ("month", "*/4", {1, 5, 9}),
        ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
        ("day_of_week", "fri-sun", {5, 6, 0}),
        ("day_of_week", "5-7", {5, 6, 0}),
        ("day_of_week", "sat-0", {6, 0}),
        ("day_of_week", "*/2", {0, 2, 4, 6}),
        ("day_of_week", "7", {0}),
    ],
)
def test_field_syntax(field, text, values):
    expression = {"minute": f"{text} * * * *", "hour": f"0 {text} * * *", "day": f"0 0 {text} * *",
                  "month": f"0 0 * {text} *", "day_of_week": f"0 0 * * {text}"}[field]  # fmt: skip
    assert getattr(parse_cron(expression), field) == values


def test_sunday_is_zero_or_seven_or_its_name():
    assert parse_cron("0 0 * * 0") == parse_cron("0 0 * * 7") == parse_cron("0 0 * * sun") == parse_cron("0 0 * * SUN")
    assert parse_cron("0 0 * * 0-6") == parse_cron("0 0 * * 1-7")


@given(text=st.sampled_from(["0", "7", "sun", "0,7", "sun,7"]), start=st.datetimes(timezones=st.just(UTC)))
def test_sunday_fires_on_sunday(text, start):
    fire = parse_cron(f"0 12 * * {text}").next_after(start)
    assert fire.weekday() == 6 and fire.hour == 12


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * * * * *", "expected 5 or 6 fields, got 7"),
        ("* * * *", "expected 5 or 6 fields, got 4"),
        ("", "expected 5 or 6 fields, got 0"),
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("60 * * * * *", "second: 60 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 0 0 * *", "day: 0 is out of range 1-31"),
        ("0 0 32 * *", "day: 32 is out of range 1-31"),
        ("0 0 * 13 *", "month: 13 is out of range 1-12"),
        ("0 0 * * 8", "day_of_week: 8 is out of range 0-7"),
        ("0 0 * foo *", "month: 'foo' is not a number or a name (jan..dec)"),
        ("0 0 * * funday", "day_of_week: 'funday' is not a number or a name (sun..sat)"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("*/0 * * * *", "minute: step 0 in '*/0' must be at least 1"),
        ("*/x * * * *", "minute: 'x' is not a step number"),
        ("1,,2 * * * *", "minute: empty item in list '1,,2'"),
        ("0 22-2 * * *", "hour: range '22-2' runs backwards (22 > 2)"),
        ("0 0 * dec-jan *", "month: range 'dec-jan' runs backwards (12 > 1)"),
        ("0 0 30 2 *", "day: 30 never occurs in month feb; the schedule would never run"),
        ("0 0 31 apr,jun *", "day: 31 never occurs in month apr,jun; the schedule would never run"),
        ("? * * * *", "minute: '?' is not a number"),
        ("-1 * * * *", "minute: '' is not a number"),
    ],
)
def test_parse_errors_name_the_field_and_problem(expression, message):
    with pytest.raises(ValueError) as caught:
        parse_cron(expression)
    assert str(caught.value) == message


def test_february_29th_and_impossible_dates_with_weekday_or():
    # Feb 29 exists (every 4 years); 30 Feb with a weekday fires on that weekday (OR rule).
    assert parse_cron("0 0 29 2 *").next_after(at(2025, 1, 1)) == at(2028, 2, 29)
    assert parse_cron("0 0 30 2 mon").next_after(at(2025, 1, 1)) == at(2025, 2, 3)


# --- day and weekday: the crontab(5) OR rule -----------------------------------------------


def test_restricted_day_and_weekday_match_either():
    spec = parse_cron("0 0 13 * fri")
    fires = fire_times(spec, at(2024, 9, 1), at(2024, 9, 30))
    assert [f.day for f in fires] == [6, 13, 20, 27]  # every Friday, and the 13th (a Friday too)
    fires = fire_times(spec, at(2024, 10, 1), at(2024, 10, 31))
    assert [f.day for f in fires] == [4, 11, 13, 18, 25]


def test_a_starred_field_means_both_must_match():
    assert [f.day for f in fire_times(parse_cron("0 0 * * fri"), at(2024, 9, 1), at(2024, 9, 30))] == [6, 13, 20, 27]
    assert [f.day for f in fire_times(parse_cron("0 0 13 * *"), at(2024, 9, 1), at(2024, 10, 31))] == [13, 13]
    # crontab(5): "*/2" begins with '*', so it does not count as restricted: odd days AND Fridays.
    odd_fridays = fire_times(parse_cron("0 0 */2 * fri"), at(2024, 9, 1), at(2024, 9, 30))
    assert [f.day for f in odd_fridays] == [13, 27]


# --- next_after -----------------------------------------------------------------------------


def test_next_after_is_strictly_after():
    spec = parse_cron("30 2 * * *")
    assert spec.next_after(at(2024, 1, 1, 2, 30)) == at(2024, 1, 2, 2, 30)
    assert spec.next_after(at(2024, 1, 1, 2, 29, 59, 999999)) == at(2024, 1, 1, 2, 30)
    assert spec.next_after(at(2024, 12, 31, 3)) == at(2025, 1, 1, 2, 30)


def test_next_after_keeps_the_zone_of_its_argument():
    fire = parse_cron("0 9 * * mon-fri").next_after(at(2024, 3, 1, 12, tz=BERLIN))
    assert fire == at(2024, 3, 4, 9, tz=BERLIN) and fire.tzinfo is BERLIN


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_cron("* * * * *").next_after(datetime(2024, 1, 1))


def test_dst_spring_forward_skips_the_missing_wall_time():
    # 2024-03-31 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    spec = parse_cron("30 2 * * *")
    assert spec.next_after(at(2024, 3, 30, 12, tz=BERLIN)) == at(2024, 4, 1, 2, 30, tz=BERLIN)
    every_ten = parse_cron("*/10 * * * * *")
    assert every_ten.next_after(at(2024, 3, 31, 1, 59, 55, tz=BERLIN)) == at(2024, 3, 31, 3, 0, 0, tz=BERLIN)


def test_dst_fall_back_fires_a_repeated_wall_time_once():
    # 2024-10-27 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:00-02:59 happen twice.
    spec = parse_cron("30 2 * * *")
    first = spec.next_after(at(2024, 10, 26, 12, tz=BERLIN))
    assert first == at(2024, 10, 27, 2, 30, tz=BERLIN) and utc(first) == at(2024, 10, 27, 0, 30)
    assert spec.next_after(first) == at(2024, 10, 28, 2, 30, tz=BERLIN)
    every_20 = parse_cron("*/20 * * * *")
    fires = fire_times(every_20, at(2024, 10, 27, 1, 50, tz=BERLIN), at(2024, 10, 27, 3, 30, tz=BERLIN))
    assert [utc(f).strftime("%H:%M") for f in fires] == [
        "00:00", "00:20", "00:40",  # 02:00, 02:20, 02:40 CEST
        "02:00", "02:20",  # 03:00, 03:20 CET; the second 02:xx pass (CET) fires nothing
    ]  # fmt: skip
    # From inside the second pass, the next fire is after it.
    assert every_20.next_after(at(2024, 10, 27, 2, 30, tz=BERLIN, fold=1)) == at(2024, 10, 27, 3, 0, tz=BERLIN)


def test_times_given_inside_dst_changes_are_read_as_the_instants_they_denote():
    # Found by hypothesis. 02:00 fold=1 on a spring-forward day does not exist; zoneinfo reads it with
    # the later offset, i.e. the instant 00:00 UTC = 01:00 CET: the next minute is 01:01 CET.
    every_minute = parse_cron("* * * * *")
    assert every_minute.next_after(at(2032, 3, 28, 2, 0, tz=BERLIN, fold=1)) == at(2032, 3, 28, 1, 1, tz=BERLIN)
    # In the second pass of a repeated hour, the whole first pass is in the past.
    second_pass = at(2024, 10, 27, 2, 0, tz=BERLIN, fold=1)  # 01:00 UTC
    before = every_minute.previous_at_or_before(second_pass)
    assert before == at(2024, 10, 27, 2, 59, tz=BERLIN) and utc(before) == at(2024, 10, 27, 0, 59)
    assert every_minute.next_after(second_pass) == at(2024, 10, 27, 3, 0, tz=BERLIN)


def test_apscheduler_3_differs_only_at_dst_changes():
    """Pins why the agreement property skips DST edges: there APScheduler 3.x is the one that is wrong."""
    spec = parse_cron("30 2 * * *")
    trigger = CronTrigger(**spec.apscheduler_kwargs(), timezone=BERLIN)
    # Spring forward: APScheduler returns the nonexistent 02:30 (= 03:30 CEST); we skip the day.
    theirs = trigger.get_next_fire_time(None, at(2024, 3, 30, 12, tz=BERLIN))
    assert utc(theirs) == at(2024, 3, 31, 1, 30)
    assert spec.next_after(at(2024, 3, 30, 12, tz=BERLIN)) == at(2024, 4, 1, 2, 30, tz=BERLIN)
    # Fall back: fed its previous fire time, APScheduler fires 02:30 twice (CEST, then CET).
    first = trigger.get_next_fire_time(None, at(2024, 10, 26, 12, tz=BERLIN))
    second = trigger.get_next_fire_time(first, utc(first) + timedelta(seconds=1))
    assert [utc(first), utc(second)] == [at(2024, 10, 27, 0, 30), at(2024, 10, 27, 1, 30)]
    assert utc(spec.next_after(first)) == at(2024, 10, 28, 1, 30)
    # Found by hypothesis: from inside the second pass APScheduler fires the repeated minutes again.
    every_minute = parse_cron("* * * * *")
    trigger = CronTrigger(**every_minute.apscheduler_kwargs(), timezone=BERLIN)
    second_pass = at(2024, 10, 27, 2, 0, tz=BERLIN, fold=1)
    assert utc(trigger.get_next_fire_time(None, utc(second_pass) + timedelta(microseconds=1))) == at(2024, 10, 27, 1, 1)
    assert utc(every_minute.next_after(second_pass)) == at(2024, 10, 27, 2, 0)  # 03:00 CET


# --- properties -----------------------------------------------------------------------------


def _items(low: int, high: int, names: tuple[str, ...] = (), name_base: int = 0):
    number = st.integers(low, high)
    pair = st.tuples(number, number).map(sorted)
    options = [
        st.just("*"),
        st.integers(1, high - low + 1).map(lambda step: f"*/{step}"),
        number.map(str),
        pair.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(pair, st.integers(1, 12)).map(lambda p: f"{p[0][0]}-{p[0][1]}/{p[1]}"),
    ]
    if names:
        options.append(st.sampled_from(names))
    return st.lists(st.one_of(options), min_size=1, max_size=3).map(",".join)


@st.composite
def cron_expressions(draw) -> str:
    fields = [
        draw(_items(0, 59)),
        draw(_items(0, 23)),
        draw(_items(1, 31)),
        draw(_items(1, 12, MONTH_NAMES)),
        draw(_items(0, 7, WEEKDAY_NAMES)),
    ]
    if draw(st.booleans()):
        fields.insert(0, draw(_items(0, 59)))
    expression = " ".join(fields)
    try:
        parse_cron(expression)
    except ValueError:  # e.g. "0 0 31 feb *": never fires
        expression = " ".join(["0", "0", "*", *fields[-2:]])
    return expression


def aware(tz) -> st.SearchStrategy[datetime]:
    return st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(tz))


@PROPERTY
@given(expression=cron_expressions(), tz=st.sampled_from(ZONES), data=st.data())
def test_fire_times_increase_match_the_fields_and_exist(expression, tz, data):
    spec = parse_cron(expression)
    moment = data.draw(aware(tz))
    for _ in range(4):
        fire = spec.next_after(moment)
        assert utc(fire) > utc(moment)
        assert fire.tzinfo is tz and fire.fold == 0 and spec.matches(fire)
        assert utc(fire).astimezone(tz).replace(tzinfo=None) == fire.replace(tzinfo=None)  # a real wall time
        moment = fire


def _oracle_next(spec: CronSpec, start: datetime, horizon: timedelta) -> datetime | None:
    """First fire time after `start` by brute force over UTC minutes: wall fields match, first occurrence.

    (Both zones' offsets are whole minutes, so local minutes start on UTC minutes.)
    """
    tz = start.tzinfo
    minute = utc(start).replace(second=0, microsecond=0, fold=0)
    while minute <= utc(start) + horizon:
        local = minute.astimezone(tz)
        wall_matches = local.minute in spec.minute and local.hour in spec.hour and spec.matches_date(local.date())
        if local.fold == 0 and wall_matches:
            for second in sorted(spec.second):
                if minute + timedelta(seconds=second) > utc(start):
                    return (minute + timedelta(seconds=second)).astimezone(tz)
        minute += timedelta(minutes=1)
    return None


@PROPERTY
@given(expression=cron_expressions(), tz=st.sampled_from(ZONES), data=st.data())
@example(expression="*/20 * * * *", tz=BERLIN, data=None)  # the fall-back hour
def test_next_after_skips_no_fire_time(expression, tz, data):
    spec = parse_cron(expression)
    start = data.draw(aware(tz)) if data is not None else at(2024, 10, 27, 1, 50, tz=BERLIN)
    horizon = timedelta(hours=26)
    expected = _oracle_next(spec, start, horizon)
    fire = spec.next_after(start)
    if expected is None:
        assert utc(fire) > utc(start) + horizon - timedelta(minutes=1)
    else:
        assert fire == expected and utc(fire) == utc(expected)


@PROPERTY
@given(expression=cron_expressions(), tz=st.sampled_from(ZONES), data=st.data())
def test_agrees_with_apscheduler_cron_trigger(expression, tz, data):
    """Same fire time as APScheduler 3.x's CronTrigger fed `apscheduler_kwargs()`.

    In Europe/Berlin the comparison is skipped at DST edges: when the UTC offset differs between
    the start and either answer, or one of them is a repeated (or skipped) wall time. There
    APScheduler 3.x fires nonexistent wall times and repeated ones twice
    (test_apscheduler_3_differs_only_at_dst_changes), which next_after deliberately does not.
    """
    spec = parse_cron(expression)
    start = data.draw(aware(tz))
    trigger = CronTrigger(**spec.apscheduler_kwargs(), timezone=tz)
    theirs = trigger.get_next_fire_time(None, (utc(start) + timedelta(microseconds=1)).astimezone(tz))
    ours = spec.next_after(start)
    moments = (start, ours, theirs)
    if len({m.utcoffset() for m in moments}) > 1 or any(_at_dst_edge(m) for m in moments):
        return
    assert utc(ours) == utc(theirs), (spec.apscheduler_kwargs(), start)


def _at_dst_edge(moment: datetime) -> bool:
    """A wall time that happens twice, or not at all, in its zone."""
    return moment.replace(fold=0).utcoffset() != moment.replace(fold=1).utcoffset()


def test_apscheduler_kwargs_use_weekday_names():
    assert parse_cron("0 3 * * 0").apscheduler_kwargs()["day_of_week"] == "sun"
    assert parse_cron("0 3 * * 1-5").apscheduler_kwargs()["day_of_week"] == "mon,tue,wed,thu,fri"
    assert parse_cron("0 3 * * *").apscheduler_kwargs() == {
        "second": "0", "minute": "0", "hour": "3", "day": "*", "month": "*", "day_of_week": "*",
    }  # fmt: skip
    either = parse_cron("0 3 1,15 * mon").apscheduler_kwargs()
    assert either["day"] == "1,15,1st mon,2nd mon,3rd mon,4th mon,5th mon" and either["day_of_week"] == "*"
    trigger = CronTrigger(**parse_cron("0 3 * * 0").apscheduler_kwargs(), timezone=UTC)
    assert trigger.get_next_fire_time(None, at(2024, 3, 4)) == at(2024, 3, 10, 3)  # a Sunday


@PROPERTY
@given(expression=cron_expressions(), tz=st.sampled_from(ZONES), data=st.data())
def test_previous_and_next_bracket_any_instant(expression, tz, data):
    spec = parse_cron(expression)
    moment = data.draw(aware(tz))
    before, after = spec.previous_at_or_before(moment), spec.next_after(moment)
    assert before is not None and spec.matches(before)
    assert utc(before) <= utc(moment) < utc(after)
    assert spec.next_after(before) == after


# --- catch-up -------------------------------------------------------------------------------


def test_missed_runs_coalesces_to_the_latest_within_grace():
    hourly = parse_cron("0 * * * *")
    last, now = at(2024, 1, 1, 3), at(2024, 1, 1, 7, 20)
    assert missed_runs(hourly, last, now, grace_s=3600) == at(2024, 1, 1, 7)
    assert missed_runs(hourly, last, now, grace_s=1199) is None  # 07:00 is 20 minutes ago
    assert missed_runs(hourly, last, now, grace_s=1200) == at(2024, 1, 1, 7)
    assert missed_runs(hourly, at(2024, 1, 1, 7), now, grace_s=3600) is None  # 07:00 already ran
    assert missed_runs(hourly, last, at(2024, 1, 1, 7), grace_s=0) == at(2024, 1, 1, 7)  # due right now


def test_missed_runs_reads_fields_in_the_given_zone():
    nightly = parse_cron("30 2 * * *")
    now = at(2024, 3, 5, 1, 45)  # 02:45 in Berlin
    assert missed_runs(nightly, at(2024, 3, 4, 1, 30), now, 3600) is None  # in UTC, 02:30 is later today
    assert missed_runs(nightly, at(2024, 3, 4, 1, 30), now, 3600, tz=BERLIN) == at(2024, 3, 5, 2, 30, tz=BERLIN)
    assert missed_runs(nightly, at(2024, 3, 4, 2, 30, tz=BERLIN), now, 3600) == at(2024, 3, 5, 2, 30, tz=BERLIN)


@PROPERTY
@given(
    expression=cron_expressions(),
    data=st.data(),
    down=st.integers(0, 3 * 86400),
    grace=st.integers(0, 2 * 86400),
)
def test_missed_run_is_the_last_due_fire_within_grace(expression, data, down, grace):
    spec = parse_cron(expression)
    last = data.draw(aware(BERLIN))
    now = (utc(last) + timedelta(seconds=down)).astimezone(UTC)
    caught = missed_runs(spec, last, now, grace)
    if caught is None:
        previous = spec.previous_at_or_before(now.astimezone(BERLIN))
        assert previous is None or utc(previous) <= utc(last) or (now - utc(previous)).total_seconds() > grace
    else:
        assert utc(last) < utc(caught) <= now and (now - utc(caught)).total_seconds() <= grace
        assert spec.matches(caught) and utc(spec.next_after(caught)) > now


def test_fire_times_between():
    spec = parse_cron("*/30 * * * * *")
    fires = fire_times(spec, at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 2, 0))
    assert [f.strftime("%M:%S") for f in fires] == ["00:30", "01:00", "01:30", "02:00"]


@pytest.mark.parametrize(("alias", "expansion"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"), ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"), (" @Daily ", "0 0 * * *"),
])  # fmt: skip
def test_crontab_aliases_are_their_expansions(alias, expansion):
    spec = parse_cron(alias)
    assert spec == parse_cron(expansion) and spec.expression == alias.strip()
    start = datetime(2026, 12, 4, 22, 30, tzinfo=timezone.utc)
    end = start + timedelta(days=400)
    assert fire_times(spec, start, end) == fire_times(parse_cron(expansion), start, end)


@pytest.mark.parametrize("alias", ["@reboot", "@every5m", "@"])
def test_unknown_aliases_are_refused_naming_the_known_ones(alias):
    with pytest.raises(ValueError, match=r"unknown alias .* \(known: @yearly, @annually, @monthly"):
        parse_cron(alias)
