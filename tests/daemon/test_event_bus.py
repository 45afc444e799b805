"""The in-process event bus: bounded per-subscriber queues, drops counted and reported, filters,
the ring of recent events, and the events it derives from job and health changes."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from backupd.core.events import Event, EventFilter, EventType
from backupd.daemon.events import EventBus

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=timezone.utc)


def bus(recent: int = 500) -> EventBus:
    return EventBus(lambda: NOW, recent=recent)


def ev(n: int, t: EventType = EventType.BACKUP_SUCCEEDED, source: str = "app") -> Event:
    return Event(id=f"e{n}", type=t, at=NOW.isoformat(), source=source)


def test_a_full_queue_drops_counts_and_reports_on_the_next_event():
    b = bus()
    sub = b.subscribe(EventFilter(), size=3)
    for n in range(10):
        b.publish(ev(n))
    assert len(sub) == 3 and sub.dropped == 7
    assert sub.take() == (ev(0), 7)  # the drops are reported with the next event taken, once
    assert sub.take() == (ev(1), 0)
    for n in (10, 11, 12):
        b.publish(ev(n))  # queue: e2, e10, e11; e12 is dropped
    assert [sub.take() for _ in range(4)] == [(ev(2), 1), (ev(10), 0), (ev(11), 0), None]
    assert sub.dropped_total == 8


def test_one_stalled_subscriber_loses_only_its_own_events():
    b = bus()
    stalled, reader = b.subscribe(EventFilter(), size=1), b.subscribe(EventFilter(), size=1000)
    for n in range(500):
        b.publish(ev(n))
        assert reader.take() == (ev(n), 0)
    assert stalled.dropped == 499 and reader.dropped_total == 0


def test_publish_never_blocks_on_a_subscriber():
    b = bus()
    for _ in range(20):
        b.subscribe(EventFilter(), size=10)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [b.publish(ev(n)) for n in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 10


def test_filters_and_unsubscribe():
    b = bus()
    failed = b.subscribe(EventFilter(("*.failed",)))
    kb = b.subscribe(EventFilter(("backup.*",), "kb"))
    b.publish(ev(1, EventType.BACKUP_FAILED, "app"))
    b.publish(ev(2, EventType.RESTORE_FAILED, "kb"))
    b.publish(ev(3, EventType.BACKUP_SUCCEEDED, "kb"))
    assert [failed.take()[0].id, failed.take()[0].id, failed.take()] == ["e1", "e2", None]
    assert [kb.take()[0].id, kb.take()] == ["e3", None]
    b.unsubscribe(kb.id)
    b.publish(ev(4, EventType.BACKUP_SUCCEEDED, "kb"))
    assert kb.take() is None and b.subscription(kb.id) is None


def test_recent_ring_is_bounded_and_a_subscription_can_start_with_history():
    b = bus(recent=5)
    for n in range(8):
        b.publish(ev(n, EventType.BACKUP_FAILED if n % 2 else EventType.BACKUP_SUCCEEDED))
    assert [e.id for e in b.recent(EventFilter())] == ["e3", "e4", "e5", "e6", "e7"]
    assert [e.id for e in b.recent(EventFilter(("backup.failed",)))] == ["e3", "e5", "e7"]
    sub = b.subscribe(EventFilter(("backup.failed",)), history=2)
    b.publish(ev(9, EventType.BACKUP_FAILED))
    assert [sub.take()[0].id for _ in range(3)] == ["e5", "e7", "e9"]


def job(status, attempt=1, **more):
    return {"job_id": "j1", "kind": "backup", "source": "app", "schedule": None, "status": status,
            "attempt": attempt, "started_at": NOW.isoformat(), "finished_at": None, "progress": {}, "reason": None,
            "result": None, "error": None, "args": {}, **more}


def test_job_changes_give_one_start_per_attempt_and_the_outcome():
    b = bus()
    sub = b.subscribe(EventFilter())
    b.job_changed(job("queued"))
    b.job_changed(job("running"))
    b.job_changed(job("running", progress={"phase": "copy"}))  # progress: no second start
    b.job_changed(job("waiting", reason="retry 2/3"))
    b.job_changed(job("running", attempt=2))
    b.job_changed(job("failed", attempt=2, error={"code": "snapshot_failed", "message": "gone"}))
    got = []
    while (taken := sub.take()) is not None:
        got.append(taken[0])
    assert [(e.type, e.id) for e in got] == [("backup.started", "j1.1.backup.started"),
                                             ("backup.started", "j1.2.backup.started"),
                                             ("backup.failed", "j1.2.backup.failed")]
    assert got[-1].error_code == "snapshot_failed"


def test_health_changes_become_destination_events():
    b = bus()
    sub = b.subscribe(EventFilter(("destination.*",)))
    b.health_changed("usb", "unknown", "ok", [])
    b.health_changed("usb", "ok", "unhealthy", ["unreachable"])
    b.health_changed("usb", "unhealthy", "ok", [])
    assert [sub.take()[0].type for _ in range(2)] == ["destination.unhealthy", "destination.recovered"]
    assert sub.take() is None


def test_emit_stamps_a_fresh_id_and_time():
    b = bus()
    one, two = b.emit("freshness.violated", source="app"), b.emit(EventType.FRESHNESS_VIOLATED, source="app")
    assert one.id != two.id and one.at == NOW.isoformat() and one.type == EventType.FRESHNESS_VIOLATED


def test_a_job_whose_events_cannot_be_derived_does_not_raise_into_the_supervisor():
    b = bus()
    sub = b.subscribe(EventFilter())
    b.job_changed(job("completed", started_at="not a time", finished_at="nor this"))
    assert sub.take() is None
