"""The outbox tables: a notification stays queued until delivered or given up, across a reopen of the
state database (a restart), once per (event, notifier); figures count every attempt by result."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backupd.core.events import Event, EventType
from backupd.state.db import StateDB
from backupd.state.outbox import RESULTS, OutboxStore

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=timezone.utc)


def _event(n: int = 1, kind: EventType = EventType.BACKUP_FAILED) -> Event:
    return Event(id=f"j{n}.1.{kind}", type=kind, at=T0.isoformat(), source="app", job_id=f"j{n}",
                 error_code="snapshot_failed",
                 log_tail=("line one", "line two"), details={"attempt": 1})


@pytest.fixture
def store(tmp_path):
    db = StateDB(tmp_path / "state.db")
    yield OutboxStore(db)
    db.close()


def test_an_event_is_queued_once_per_notifier_and_survives_a_reopen(tmp_path):
    db = StateDB(tmp_path / "state.db")
    store = OutboxStore(db)
    assert store.enqueue(_event(), ["ops", "mail"], T0) == 2
    assert store.enqueue(_event(), ["ops", "mail"], T0 + timedelta(seconds=5)) == 0  # routed again: no duplicate
    db.close()
    again = OutboxStore(StateDB(tmp_path / "state.db"))
    [item] = again.pending("ops")
    assert item.event == _event() and item.attempts == 0 and item.next_at == item.enqueued_at == T0
    assert [p.notifier for p in again.pending("mail")] == ["mail"]
    assert again.unrouted([_event().id, "j9.1.backup.failed"]) == {"j9.1.backup.failed"}


def test_a_job_event_for_no_notifier_is_still_recorded_as_routed_and_only_a_job_event(store):
    assert store.enqueue(_event(2), [], T0) == 0
    assert store.unrouted([_event(2).id]) == set()
    assert store.pending("ops") == []
    alert = Event(id="e20261204T030000000000-1a2b3c4d", type=EventType.ALERT_RAISED, at=T0.isoformat())
    store.enqueue(alert, ["ops"], T0)
    assert store.unrouted([alert.id]) == {alert.id} and len(store.pending("ops")) == 1


def test_retry_moves_the_due_time_and_delivery_removes_it_counting_both(store):
    store.enqueue(_event(), ["ops"], T0)
    [item] = store.pending("ops")
    store.retry(item, "connection refused by 127.0.0.1:1", T0 + timedelta(seconds=5), T0)
    [item] = store.pending("ops")
    assert item.attempts == 1 and item.next_at == T0 + timedelta(seconds=5)
    assert item.last_error == "connection refused by 127.0.0.1:1"
    store.delivered(item, T0 + timedelta(seconds=6))
    assert store.pending("ops") == []
    fig = store.figures()["ops"]
    assert (fig["queue"], fig["delivered"], fig["failed"], fig["expired"]) == (0, 1, 1, 0)
    assert fig["last_result"] == "delivered" and fig["last_event_id"] == _event().id and fig["last_error"] is None


def test_give_up_removes_it_as_expired_or_failed(store):
    store.enqueue(_event(1), ["ops"], T0)
    store.enqueue(_event(2, EventType.NOTIFIER_TEST), ["ops"], T0)
    first, second = store.pending("ops")
    store.give_up(first, "HTTP 500 from hooks.example", T0)
    store.give_up(second, "timed out after 10s", T0, result="failed")
    fig = store.figures()["ops"]
    assert (fig["queue"], fig["expired"], fig["failed"], fig["last_result"]) == (0, 1, 1, "failed")
    with pytest.raises(AssertionError):
        store.give_up(first, "x", T0, result="delivered; DROP TABLE outbox")


def test_pending_is_soonest_due_first(store):
    for n in (1, 2, 3):
        store.enqueue(_event(n), ["ops"], T0 + timedelta(seconds=n))
    first = store.pending("ops")[0]
    store.retry(first, "down", T0 + timedelta(hours=1), T0)
    assert [p.event.id for p in store.pending("ops")] == [_event(2).id, _event(3).id, _event(1).id]
    assert len(store.pending("ops", limit=1)) == 1


def test_the_queues_of_notifiers_no_longer_configured_are_dropped(store):
    store.enqueue(_event(1), ["ops", "old"], T0)
    store.enqueue(_event(2), ["old"], T0)
    assert store.drop_except(["ops"]) == {"old": 2}
    assert store.pending("old") == [] and len(store.pending("ops")) == 1
    assert store.drop_except([]) == {"ops": 1}


def test_figures_cover_queued_notifiers_without_history(store):
    store.enqueue(_event(), ["new"], T0)
    assert store.figures() == {"new": {"queue": 1, **{r: 0 for r in RESULTS}, "last_result": None, "last_at": None,
                                       "last_event_id": None, "last_error": None}}


def test_routing_is_forgotten_after_a_while_but_not_its_start(store):
    since = store.routed_since()
    store.enqueue(_event(1), [], T0)
    store.forget_routed(T0 + timedelta(days=8))
    assert store.unrouted([_event(1).id]) == {_event(1).id}
    assert store.routed_since() == since
