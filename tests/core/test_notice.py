"""What a notification says: one-line bounded subjects, bodies that keep the facts, ntfy's loudness."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from backupd.core import notice
from backupd.core.events import EVENT_TYPES, PROBLEM_TYPES, Event, EventType

AT = "2026-12-04T03:00:00+00:00"
texts = st.none() | st.text(max_size=300)
events = st.builds(Event, id=st.text(min_size=1, max_size=40), type=st.sampled_from(EVENT_TYPES), at=st.just(AT),
                   source=texts, schedule=texts, job_id=texts, backup_id=texts,
                   destinations=st.lists(st.text(max_size=20), max_size=3).map(tuple), error_code=texts,
                   message=texts, duration_s=st.none() | st.floats(0, 1e7), bytes=st.none() | st.integers(0, 2**62),
                   log_tail=st.lists(st.text(max_size=80), max_size=20).map(tuple),
                   details=st.dictionaries(st.text(max_size=8), st.text(max_size=20) | st.integers(), max_size=3))
hosts = st.text(max_size=80)


def failed(**kw) -> Event:
    return Event(id="j1.1.backup.failed", type=EventType.BACKUP_FAILED, at=AT, **kw)


@given(events, hosts)
@example(failed(source="app\r\nBcc: x@evil", schedule="night\nly"), "db1\n")
def test_the_subject_is_one_bounded_line(event, host):
    line = notice.subject(event, host)
    assert "\r" not in line and "\n" not in line and line == notice.one_line(line)
    assert len(line) <= notice.SUBJECT_MAX
    assert line.startswith("[backupd@")


@given(events, hosts)
def test_the_body_keeps_the_message_and_every_log_tail_line(event, host):
    text = notice.body(event, host)
    if event.message:
        assert event.message in text
    assert all(line in text for line in event.log_tail)
    assert str(event.type) in text and event.id in text


@given(events)
def test_loudness_follows_the_outcome(event):
    p = notice.priority(event)
    assert 1 <= p <= 5
    assert (p >= 4) == (event.type in PROBLEM_TYPES)
    assert (notice.severity(event) == "error") == (event.type in PROBLEM_TYPES)
    tags = notice.tags(event)
    assert tags and all(tag and "," not in tag and tag == notice.one_line(tag) for tag in tags)


def test_every_type_has_a_loudness():
    for t in EVENT_TYPES:
        e = Event(id="x", type=t, at=AT)
        assert notice.outcome(e) in ("failure", "warning", "success", "info")
    assert notice.priority(Event(id="x", type=EventType.NOTIFIER_TEST, at=AT)) == 3
    assert notice.priority(Event(id="x", type=EventType.BACKUP_SUCCEEDED, at=AT)) == 2
    assert notice.severity(Event(id="x", type=EventType.BACKUP_SUCCEEDED_WITH_WARNINGS, at=AT)) == "warning"
    assert notice.severity(Event(id="x", type=EventType.BACKUP_STARTED, at=AT)) == "info"


def test_subject_names_host_source_state_and_schedule():
    nightly = failed(source="app", schedule="nightly")
    assert notice.subject(nightly, "db1") == "[backupd@db1] backup failed: app (nightly)"
    unhealthy = Event(id="d", type=EventType.DESTINATION_UNHEALTHY, at=AT, destinations=("nas",))
    assert notice.subject(unhealthy, "db1") == "[backupd@db1] destination unhealthy: nas"
    warned = Event(id="w", type=EventType.BACKUP_SUCCEEDED_WITH_WARNINGS, at=AT, source="app")
    assert notice.subject(warned, "db1") == "[backupd@db1] backup succeeded with warnings: app"


def test_the_body_lists_the_facts():
    event = failed(source="app", schedule="nightly", job_id="j1", backup_id="b7", destinations=("nas", "s3"),
                   error_code="snapshot_failed", message="disk I/O error", duration_s=83.25, bytes=1610612736,
                   log_tail=("opened snapshot", "error snapshot_failed: disk I/O error"), details={"attempt": 2})
    text = notice.body(event, "db1")
    for line in ("event: backup.failed", f"at: {AT}", "host: db1", "source: app", "schedule: nightly", "job: j1",
                 "backup: b7", "destinations: nas, s3", "error: snapshot_failed", "message: disk I/O error",
                 "duration: 1m23s (83s)", "size: 1.5GiB (1610612736 bytes)", "details.attempt: 2",
                 "event id: j1.1.backup.failed", "log tail:", "  opened snapshot"):
        assert line in text.splitlines(), line
    assert "log tail" not in notice.body(Event(id="ok", type=EventType.BACKUP_SUCCEEDED, at=AT), "db1")
