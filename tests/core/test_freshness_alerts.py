"""Freshness and alert rules (core.freshness, core.alerts): properties over any history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from backupd.core.alerts import ERROR, WARNING, Alert, Run, Thresholds, schedule_alerts, source_alerts, \
    storage_alerts, transitions
from backupd.core.freshness import Restorable, freshness

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
DESTS = st.frozensets(st.sampled_from(["a", "b", "c"]))
BACKUPS = st.lists(st.builds(Restorable, st.integers(0, 10**6).map(lambda s: NOW - timedelta(seconds=s)), DESTS))
RUNS = st.lists(st.builds(Run, st.booleans(), st.none() | st.floats(0, 1e4)), max_size=12)
ALERTS = st.lists(st.builds(Alert, st.sampled_from(["source_stale", "schedule_failing", "run_too_long"]),
                            st.sampled_from(["source", "schedule"]), st.sampled_from(["kb", "db"]),
                            st.text(max_size=5), st.sampled_from([ERROR, WARNING])))


@given(BACKUPS, st.integers(1, 10**6), st.integers(1, 4))
def test_fresh_exactly_when_a_backup_on_enough_destinations_is_young_enough(backups, max_age, min_copies):
    f = freshness(backups, max_age, min_copies, NOW)
    counted = [b for b in backups if len(b.destinations) >= min_copies]
    young = [b for b in counted if (NOW - b.created_at).total_seconds() <= max_age]
    assert f.stale == (not young)
    assert f.newest == (max(b.created_at for b in counted) if counted else None)
    assert (f.age_s is None) == (f.newest is None)
    assert bool(source_alerts("kb", f)) == f.stale


def test_a_backup_on_too_few_destinations_does_not_count():
    recent = Restorable(NOW - timedelta(seconds=10), frozenset({"a"}))
    old = Restorable(NOW - timedelta(hours=30), frozenset({"a", "b"}))
    f = freshness([recent, old], 26 * 3600, 2, NOW)
    assert f.stale and f.newest == old.created_at and f.age_s == 30 * 3600
    [alert] = source_alerts("kb", f)
    assert alert.key == "source_stale:source:kb" and alert.severity == ERROR and "30.0h old" in alert.message
    assert alert.problem() == {"code": "source_stale", "message": alert.message, "source": "kb"}


@given(ALERTS, ALERTS)
def test_transitions_raise_and_clear_each_alert_once(before, after):
    previous = {a.key: a for a in before}
    raised, cleared = transitions(previous, after)
    now = {a.key for a in after}
    assert {a.key for a in raised} == now - previous.keys() and {a.key for a in cleared} == previous.keys() - now
    assert transitions({a.key: a for a in after}, after) == ([], [])  # the same state again: nothing


@given(RUNS, st.floats(0.01, 1), st.integers(1, 6))
def test_failure_rate_over_the_window(runs, rate, window):
    codes = {a.code for a in schedule_alerts("s", runs, Thresholds(failure_rate=rate, window=window))}
    last = runs[:window]
    assert ("schedule_failing" in codes) == bool(last and sum(r.failed for r in last) / len(last) >= rate)
    assert ("schedule_last_run_failed" in codes) == bool(runs and runs[0].failed)


def test_run_too_long_against_the_mean_of_earlier_successes():
    t = Thresholds(duration_factor=3, window=3)
    earlier = [Run(False, 10.0), Run(True, 500.0), Run(False, 20.0)]
    assert [a.code for a in schedule_alerts("s", [Run(False, 46.0), *earlier], t)] == ["run_too_long"]
    assert schedule_alerts("s", [Run(False, 44.0), *earlier], t) == []
    running = schedule_alerts("s", [Run(False, 100.0, running=True), *earlier], t)
    assert [a.code for a in running] == ["run_too_long"] and "is running for" in running[0].message
    assert schedule_alerts("s", [Run(False, 1e6)], t) == []  # no earlier success: no mean to compare with


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.floats(0.01, 1))
def test_storage_usage(used, free, threshold):
    alerts = storage_alerts("nas", used, free, Thresholds(storage_usage=threshold))
    assert bool(alerts) == (used + free > 0 and used / (used + free) >= threshold)
    assert storage_alerts("nas", used, None, Thresholds(storage_usage=threshold)) == []
    assert storage_alerts("nas", used, free, Thresholds()) == []
