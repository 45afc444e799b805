"""core.gate: the pure dispatch decision, rule by rule, and its safety properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupd.core.gate import Conditions, Dispatch, Hold, JobRequest, Load, Running, Skip, decide
from backupd.core.windows import Window, window_state

UTC = timezone.utc
EVERY_DAY = frozenset(range(7))
OFFICE = Window(frozenset(range(5)), time(9), time(17))  # mon-fri
NIGHTS = Window(EVERY_DAY, time(1), time(5))
MONDAY_NOON = datetime(2024, 3, 4, 12, tzinfo=UTC)
MONDAY_8PM = datetime(2024, 3, 4, 20, tzinfo=UTC)
IDLE = Running(0, frozenset())
CALM = Load(cpu_percent=5, load_per_core=0.1, free_memory=8 * 2**30)
BUSY = Load(cpu_percent=93, load_per_core=2.1, free_memory=100 * 2**20)
LIMITS = Conditions(max_cpu_percent=80, max_load_per_core=1.5, min_free_memory=256 * 2**20)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def request(**kwargs) -> JobRequest:
    return JobRequest(**{"source": "kb", **kwargs})


def test_all_conditions_met():
    assert decide(request(), IDLE, CALM, MONDAY_NOON, 2) == Dispatch("conditions met")
    assert decide(request(conditions=LIMITS), IDLE, CALM, MONDAY_NOON, 2) == Dispatch("conditions met")


# --- blackout ------------------------------------------------------------------------------


def test_blackout_holds_until_it_ends():
    decision = decide(request(conditions=Conditions(blackout=(OFFICE,))), IDLE, CALM, MONDAY_NOON, 2)
    assert decision == Hold(
        "in blackout window mon-fri 09:00-17:00 (UTC) until 2024-03-04T17:00:00+00:00",
        datetime(2024, 3, 4, 17, tzinfo=UTC),
    )
    assert decide(request(conditions=Conditions(blackout=(OFFICE,))), IDLE, CALM, MONDAY_8PM, 2) == Dispatch(
        "conditions met"
    )


def test_blackout_is_read_in_the_schedule_timezone():
    conditions = Conditions(blackout=(OFFICE,), timezone="America/New_York")
    decision = decide(request(conditions=conditions), IDLE, CALM, MONDAY_8PM, 2)  # 15:00 in New York
    assert isinstance(decision, Hold) and decision.until == datetime(2024, 3, 4, 22, tzinfo=UTC)
    assert "(America/New_York) until 2024-03-04T17:00:00-05:00" in decision.reason


def test_blackout_is_never_bypassed():
    stale_and_urgent = request(
        conditions=Conditions(blackout=(OFFICE,)), priority="high", max_staleness_s=3600, last_good_backup_at=None
    )
    assert isinstance(decide(stale_and_urgent, IDLE, CALM, MONDAY_NOON, 2), Hold)


def test_blackout_longer_than_the_hold_limit_holds_then_skips_at_the_limit():
    conditions = Conditions(blackout=(OFFICE,))
    reason = "in blackout window mon-fri 09:00-17:00 (UTC) until 2024-03-04T17:00:00+00:00"
    first = decide(request(conditions=conditions), IDLE, CALM, MONDAY_NOON, 2, max_hold_s=3600)
    assert first == Hold(reason, datetime(2024, 3, 4, 17, tzinfo=UTC))  # held (and seen waiting) first
    held = request(conditions=conditions, held_since=MONDAY_NOON)
    assert isinstance(decide(held, IDLE, CALM, MONDAY_NOON + timedelta(minutes=59), 2, max_hold_s=3600), Hold)
    assert decide(held, IDLE, CALM, MONDAY_NOON + timedelta(hours=1), 2, max_hold_s=3600) == Skip(
        f"held 1h, reached max_hold 1h: {reason}"
    )


def test_a_blackout_covering_the_week_skips():
    conditions = Conditions(blackout=(Window(EVERY_DAY, time(0), time(0)),))
    assert decide(request(conditions=conditions), IDLE, CALM, MONDAY_NOON, 2) == Skip(
        "blackout window every day 00:00-24:00 (UTC): blackout windows cover the whole week"
    )


# --- one job per source ----------------------------------------------------------------------


def test_one_job_per_source_is_never_bypassed():
    running = Running(1, frozenset({"kb"}))
    decision = decide(request(priority="high", max_staleness_s=1), running, CALM, MONDAY_NOON, 5)
    assert decision == Hold("source 'kb' already has a job running (one job per source)", None)
    assert decide(request(source="crm"), running, CALM, MONDAY_NOON, 5) == Dispatch("conditions met")


# --- maintenance windows ---------------------------------------------------------------------


def test_outside_maintenance_holds_until_the_next_one_opens():
    conditions = Conditions(maintenance=(NIGHTS,))
    decision = decide(request(conditions=conditions), IDLE, CALM, MONDAY_8PM, 2)
    assert decision == Hold(
        "outside maintenance windows (UTC); next opens 2024-03-05T01:00:00+00:00 (every day 01:00-05:00)",
        datetime(2024, 3, 5, 1, tzinfo=UTC),
    )
    inside = datetime(2024, 3, 5, 2, tzinfo=UTC)
    assert decide(request(conditions=conditions), IDLE, CALM, inside, 2) == Dispatch("conditions met")


def test_held_job_is_skipped_when_its_maintenance_window_closes():
    conditions = Conditions(maintenance=(NIGHTS,), max_cpu_percent=80)
    held = request(conditions=conditions, held_since=datetime(2024, 3, 5, 2, tzinfo=UTC))
    assert isinstance(decide(held, IDLE, BUSY, datetime(2024, 3, 5, 4, 59, tzinfo=UTC), 2), Hold)
    after = decide(held, IDLE, BUSY, datetime(2024, 3, 5, 5, 0, tzinfo=UTC), 2)
    assert after == Skip(
        "maintenance window every day 01:00-05:00 (UTC) closed before the job could start"
        " (held since 2024-03-05T02:00:00+00:00)"
    )


def test_a_job_waiting_for_its_first_window_is_not_skipped_before_the_window():
    conditions = Conditions(maintenance=(NIGHTS,))
    held = request(conditions=conditions, held_since=MONDAY_8PM)
    assert isinstance(decide(held, IDLE, CALM, datetime(2024, 3, 4, 23, tzinfo=UTC), 2, max_hold_s=None), Hold)
    # Held through the whole window (say the source stayed busy), it is skipped once the window closes.
    busy = Running(1, frozenset({"kb"}))
    assert isinstance(decide(held, busy, CALM, datetime(2024, 3, 5, 3, tzinfo=UTC), 2, max_hold_s=None), Hold)
    assert isinstance(decide(held, IDLE, CALM, datetime(2024, 3, 5, 6, tzinfo=UTC), 2, max_hold_s=None), Skip)


def test_next_maintenance_window_beyond_the_hold_limit_holds_then_skips_at_the_limit():
    weekly = Window(frozenset({6}), time(1), time(5))
    conditions = Conditions(maintenance=(weekly,))
    reason = "outside maintenance windows (UTC); next opens 2024-03-10T01:00:00+00:00 (sun 01:00-05:00)"
    decision = decide(request(conditions=conditions), IDLE, CALM, MONDAY_NOON, 2)
    assert decision == Hold(reason, datetime(2024, 3, 10, 1, tzinfo=UTC))
    held = request(conditions=conditions, held_since=MONDAY_NOON)
    skipped = decide(held, IDLE, CALM, MONDAY_NOON + timedelta(hours=6), 2)
    assert skipped == Skip(f"held 6h, reached max_hold 6h: {reason}")


# --- concurrency -------------------------------------------------------------------------------


def test_global_and_schedule_concurrency_limits_hold():
    two = Running(2, frozenset({"a", "b"}))
    assert decide(request(), two, CALM, MONDAY_NOON, 2) == Hold("2 jobs running, max_concurrent_jobs 2 (daemon)", None)
    one = Running(1, frozenset({"a"}))
    conditions = Conditions(max_concurrent_jobs=1)
    assert decide(request(conditions=conditions), one, CALM, MONDAY_NOON, 4) == Hold(
        "1 job running, max_concurrent_jobs 1 (schedule)", None
    )
    assert isinstance(decide(request(priority="high"), two, CALM, MONDAY_NOON, 2), Hold)


# --- load --------------------------------------------------------------------------------------


def test_load_limits_hold_and_name_every_value():
    decision = decide(request(conditions=LIMITS), IDLE, BUSY, MONDAY_NOON, 2)
    assert decision == Hold(
        "cpu 93% > max_cpu_percent 80; load per core 2.10 > max_load_per_core 1.5;"
        " free memory 100MiB < min_free_memory 256MiB",
        None,
    )


def test_unmeasured_load_checks_nothing():
    assert decide(request(conditions=LIMITS), IDLE, None, MONDAY_NOON, 2) == Dispatch("conditions met")
    partial = Load(cpu_percent=None, load_per_core=None, free_memory=100 * 2**20)
    assert decide(request(conditions=LIMITS), IDLE, partial, MONDAY_NOON, 2) == Hold(
        "free memory 100MiB < min_free_memory 256MiB", None
    )


def test_high_priority_runs_despite_load():
    decision = decide(request(conditions=LIMITS, priority="high"), IDLE, BUSY, MONDAY_NOON, 2)
    assert isinstance(decision, Dispatch) and decision.note.startswith(
        "running despite load (priority high): cpu 93% > max_cpu_percent 80"
    )


def test_stale_source_runs_despite_load_and_says_so():
    stale = request(
        conditions=Conditions(max_cpu_percent=80),
        max_staleness_s=26 * 3600,
        last_good_backup_at=MONDAY_NOON - timedelta(hours=27),
    )
    assert decide(stale, IDLE, BUSY, MONDAY_NOON, 2) == Dispatch(
        "running despite load: last good backup is 27h old (max_staleness 26h): cpu 93% > max_cpu_percent 80"
    )
    never = replace(stale, last_good_backup_at=None)
    assert decide(never, IDLE, BUSY, MONDAY_NOON, 2) == Dispatch(
        "running despite load: no good backup yet (max_staleness 26h): cpu 93% > max_cpu_percent 80"
    )
    fresh = replace(stale, last_good_backup_at=MONDAY_NOON - timedelta(hours=25))
    assert decide(fresh, IDLE, BUSY, MONDAY_NOON, 2) == Hold("cpu 93% > max_cpu_percent 80", None)


# --- hold limits ---------------------------------------------------------------------------------


def test_a_hold_turns_into_a_skip_after_max_hold():
    held = request(conditions=LIMITS, held_since=MONDAY_NOON - timedelta(hours=6))
    assert decide(held, IDLE, BUSY, MONDAY_NOON - timedelta(seconds=1), 2) == Hold(
        "cpu 93% > max_cpu_percent 80; load per core 2.10 > max_load_per_core 1.5;"
        " free memory 100MiB < min_free_memory 256MiB",
        None,
    )
    decision = decide(held, IDLE, BUSY, MONDAY_NOON, 2)
    assert isinstance(decision, Skip) and decision.reason.startswith("held 6h, reached max_hold 6h: cpu 93%")
    assert decide(held, IDLE, CALM, MONDAY_NOON + timedelta(hours=1), 2) == Dispatch("conditions met")


def test_a_hold_turns_into_a_skip_at_the_deadline():
    held = request(held_since=MONDAY_NOON - timedelta(minutes=5))
    busy = Running(1, frozenset({"kb"}))
    deadline = MONDAY_NOON
    assert isinstance(decide(held, busy, CALM, MONDAY_NOON - timedelta(seconds=1), 2, deadline=deadline), Hold)
    decision = decide(held, busy, CALM, MONDAY_NOON, 2, deadline=deadline)
    assert decision == Skip(
        "held 5m, reached deadline 2024-03-04T12:00:00+00:00:"
        " source 'kb' already has a job running (one job per source)"
    )


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(request(), IDLE, CALM, datetime(2024, 3, 4), 2)


# --- properties ----------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
windows = st.builds(
    Window,
    st.frozensets(st.integers(0, 6), min_size=1),
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 30])),
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 30])),
)
optional = lambda strategy: st.none() | strategy  # noqa: E731
conditions = st.builds(
    Conditions,
    blackout=st.lists(windows, max_size=2).map(tuple),
    maintenance=st.lists(windows, max_size=2).map(tuple),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    max_cpu_percent=optional(st.floats(1, 100)),
    max_load_per_core=optional(st.floats(0.1, 4)),
    min_free_memory=optional(st.integers(0, 2**34)),
    max_concurrent_jobs=optional(st.integers(1, 4)),
)
loads = optional(
    st.builds(Load, optional(st.floats(0, 100)), optional(st.floats(0, 8)), optional(st.integers(0, 2**34)))
)
sources = st.sampled_from(["kb", "crm", "wiki"])
runnings = st.builds(Running, st.integers(0, 5), st.frozensets(sources, max_size=3))


@st.composite
def requests(draw) -> JobRequest:
    now = draw(moments)
    return JobRequest(
        source=draw(sources),
        priority=draw(st.sampled_from(["normal", "high"])),
        conditions=draw(conditions),
        max_staleness_s=draw(optional(st.floats(60, 7 * 86400))),
        last_good_backup_at=draw(optional(st.builds(lambda s: now - timedelta(seconds=s), st.integers(0, 10**6)))),
        held_since=draw(optional(st.builds(lambda s: now - timedelta(seconds=s), st.integers(0, 10**5)))),
    ), now


@PROPERTY
@given(case=requests(), running=runnings, load=loads, global_max=st.integers(1, 4))
def test_safety_properties(case, running, load, global_max):
    req, now = case
    decision = decide(req, running, load, now, global_max)
    assert decision == decide(req, running, load, now, global_max)  # deterministic
    if window_state(now, req.conditions.blackout, req.conditions.timezone).inside:
        assert not isinstance(decision, Dispatch)
    if req.source in running.sources:
        assert not isinstance(decision, Dispatch)
    if running.total >= global_max:
        assert not isinstance(decision, Dispatch)
    if isinstance(decision, Hold):
        assert decision.reason and (decision.until is None or decision.until > now)
    if isinstance(decision, Skip):
        assert decision.reason


@PROPERTY
@given(case=requests(), running=runnings, load=loads, global_max=st.integers(1, 4))
def test_high_priority_is_never_held_by_load_alone(case, running, load, global_max):
    req, now = case
    urgent = replace(req, priority="high")
    unloaded = decide(urgent, running, None, now, global_max)
    loaded = decide(urgent, running, load, now, global_max)
    assert type(loaded) is type(unloaded)
    if not isinstance(loaded, Dispatch):
        assert loaded == unloaded
