"""The one event model: its vocabulary, its wire form, filters, and the events a finished job yields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backupd.core.events import (EVENT_TYPES, Event, EventFilter, EventType, check_pattern, destination_event,
                                 job_events, matches, started_event)

ISSUE_TYPES = {f"backup.{s}" for s in ("started", "succeeded", "succeeded_with_warnings", "partial", "failed",
                                       "skipped")} | {
    "validation.passed", "validation.warned", "validation.failed", "restore.succeeded", "restore.failed",
    "prune.failed", "destination.degraded", "destination.unhealthy", "destination.recovered",
    "freshness.violated", "freshness.restored", "alert.raised", "alert.cleared"}
AT = "2026-12-04T03:00:00+00:00"
types = st.sampled_from(EVENT_TYPES)
texts = st.none() | st.text(max_size=12)
events = st.builds(Event, id=st.text(min_size=1, max_size=20), type=types, at=st.just(AT), source=texts,
                   schedule=texts, job_id=texts, backup_id=texts,
                   destinations=st.lists(st.text(max_size=8), max_size=3).map(tuple), error_code=texts,
                   message=texts, duration_s=st.none() | st.floats(0, 1e6), bytes=st.none() | st.integers(0, 2**62),
                   log_tail=st.lists(st.text(max_size=20), max_size=3).map(tuple),
                   details=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def test_the_vocabulary_is_the_issues():
    # and the notifiers' own two: a test event, and a notifier disabled by its receiver (HTTP 410)
    assert {str(t) for t in EventType} == ISSUE_TYPES | {"notifier.test", "notifier.disabled"}
    assert EventType.BACKUP_FAILED.subject == "backup" and EventType.BACKUP_FAILED.state == "failed"


@given(events)
def test_wire_round_trip(event):
    wire = event.to_wire()
    assert Event.from_wire(wire) == event
    assert set(wire) == {"id", "type", "at", "source", "schedule", "job_id", "backup_id", "destinations",
                         "error_code", "message", "duration_s", "bytes", "log_tail", "details"}


@given(types)
def test_patterns(t):
    subject, _, state = t.partition(".")
    assert matches(t, t) and matches("*", t) and matches(f"{subject}.*", t) and matches(f"*.{state}", t)
    assert all(matches(t, other) == (other == t) for other in EVENT_TYPES)
    assert not matches(f"{subject}.", t) and not matches(subject, t)


@given(types, st.lists(st.sampled_from(["backup.*", "*.failed", "restore.succeeded", "alert.*"]), max_size=3),
       st.none() | st.sampled_from(["app", "kb"]), st.sampled_from(["app", "kb", None]))
def test_filter_is_any_pattern_and_the_source(t, patterns, wanted_source, source):
    event = Event(id="e", type=t, at=AT, source=source)
    expected = (not patterns or any(matches(p, t) for p in patterns)) and (wanted_source in (None, source))
    assert EventFilter(tuple(patterns), wanted_source)(event) == expected


def test_a_pattern_that_matches_nothing_is_refused():
    assert check_pattern("*.failed") == "*.failed"
    with pytest.raises(ValueError, match="matches no event type"):
        check_pattern("backup.exploded")


def job(kind="backup", status="completed", result=None, error=None, **more):
    return {"job_id": "j1", "kind": kind, "source": "app", "schedule": "nightly", "status": status, "attempt": 1,
            "started_at": "2026-12-04T03:00:00+00:00", "finished_at": "2026-12-04T03:00:02.5+00:00",
            "progress": {"phase": "copy", "done_bytes": 10}, "reason": None, "result": result, "error": error,
            "args": {"destinations": None}, **more}


BACKUP = {"id": "b1", "destinations": ["local", "usb"], "stored_bytes": 1234}


@pytest.mark.parametrize("status, expected", [
    ("completed", ["backup.succeeded"]), ("completed_with_warnings", ["backup.succeeded_with_warnings"]),
    ("partial", ["backup.partial"]), ("failed", ["backup.failed"]), ("timed_out", ["backup.failed"]),
    ("skipped", ["backup.skipped"]), ("cancelled", [])])
def test_backup_outcomes(status, expected):
    error = {"code": "snapshot_failed", "message": "no such file"} if status in ("failed", "timed_out") else None
    out = job_events(job(status=status, result=BACKUP if status != "failed" else None, error=error), AT)
    assert [e.type for e in out] == expected
    for e in out:
        assert e.id == f"j1.1.{e.type}" and e.source == "app" and e.schedule == "nightly" and e.duration_s == 2.5
    if status == "failed":
        (e,) = out
        assert e.error_code == "snapshot_failed" and e.message == "no such file"
        assert e.log_tail[-1] == "error snapshot_failed: no such file" and "phase=copy" in e.log_tail[0]
    if status == "completed":
        (e,) = out
        assert e.backup_id == "b1" and e.destinations == ("local", "usb") and e.bytes == 1234 and e.log_tail == ()


@pytest.mark.parametrize("verdict, status, expected", [
    ("pass", "completed", "validation.passed"), ("warn", "completed_with_warnings", "validation.warned"),
    ("fail", "failed", "validation.failed")])
def test_a_backup_with_validation_yields_its_verdict_first(verdict, status, expected):
    out = job_events(job(status=status, result={**BACKUP, "validation": {"verdict": verdict}}), AT)
    assert [e.type for e in out][0] == expected and len(out) == 2 and out[0].backup_id == "b1"


def test_other_kinds():
    assert [e.type for e in job_events(job("validate", result={"verdict": "warn"}, args={"backup_id": "b1"}), AT)] \
        == ["validation.warned"]
    assert [e.type for e in job_events(job("validate", "failed", error={"code": "x", "message": "m"}), AT)] \
        == ["validation.failed"]
    assert [e.type for e in job_events(job("restore", result={"backup_id": "b1", "bytes_written": 5}), AT)] \
        == ["restore.succeeded"]
    assert [e.type for e in job_events(job("restore", "failed", error={"code": "x", "message": "m"}), AT)] \
        == ["restore.failed"]
    assert [e.type for e in job_events(job("prune", "partial", error={"code": "partial", "message": "m"}), AT)] \
        == ["prune.failed"]
    assert job_events(job("prune"), AT) == [] and job_events(job("resync", "partial"), AT) == []


def test_started_only_for_a_running_backup():
    assert started_event(job(status="running"), AT).type == "backup.started"
    assert started_event(job("restore", "running"), AT) is None
    assert started_event(job(status="queued"), AT) is None


@pytest.mark.parametrize("before, after, expected", [
    ("unknown", "ok", None), ("ok", "degraded", "destination.degraded"), ("ok", "unhealthy", "destination.unhealthy"),
    ("degraded", "unhealthy", "destination.unhealthy"), ("unhealthy", "ok", "destination.recovered"),
    ("degraded", "ok", "destination.recovered"), ("ok", "ok", None), ("unknown", "unhealthy", "destination.unhealthy")])
def test_destination_transitions(before, after, expected):
    event = destination_event("usb", before, after, id="e1", at=AT, problems=["no space"])
    assert (event.type if event else None) == expected
    if event:
        assert event.destinations == ("usb",) and event.details["was"] == before
