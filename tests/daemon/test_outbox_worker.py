"""Deliveries in process, on a real state database and a real HTTP receiver: a start routes the job
outcomes a killed daemon never routed (once, and not those of jobs that ended before), retries are given
up after their (shrunk) 24 h, a routing failure never raises into the job, and the heartbeat pings only
while every source is fresh."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backupd.config.monitoring import MonitoringConfig
from backupd.config.notifiers import NotifierConfig
from backupd.core.events import Event, EventType
from backupd.daemon.events import EventBus
from backupd.daemon.heartbeat import Heartbeat
from backupd.daemon.outbox import SCALE_ENV, Deliveries
from backupd.state.db import StateDB
from backupd.state.outbox import OutboxStore
from tests.servers.receivers import http_receiver

from .harness import wait_for


def now() -> datetime:
    return datetime.now(timezone.utc)


def _config(url: str, **fields) -> SimpleNamespace:
    hook = NotifierConfig.model_validate({"name": "hook", "kind": "webhook", "url": url, **fields})
    return SimpleNamespace(notifiers=[hook])


def _job(n: int, finished: datetime, status: str = "failed") -> dict:
    return {"job_id": f"j{n}", "kind": "backup", "source": "app", "status": status, "attempt": 1,
            "started_at": (finished - timedelta(seconds=3)).isoformat(), "finished_at": finished.isoformat(),
            "error": {"code": "snapshot_failed", "message": "cannot read app.db"}, "args": {}, "result": None}


@pytest.fixture
def state(tmp_path):
    db = StateDB(tmp_path / "state.db")
    yield OutboxStore(db)
    db.close()


def test_a_start_routes_the_outcomes_a_killed_daemon_never_routed_once(state):
    with http_receiver() as hook:
        deliveries = Deliveries(lambda: _config(hook.url), state, now, lambda *a, **k: None)
        since = datetime.fromisoformat(state.routed_since())
        before = _job(1, since - timedelta(seconds=1))  # ended before routing was recorded: history
        missed = _job(2, now())
        routed = _job(3, now())
        state.enqueue(Event(id="j3.1.backup.failed", type=EventType.BACKUP_FAILED, at=now().isoformat()), [], now())
        running = {**_job(4, now()), "status": "running", "finished_at": None}
        assert deliveries.recover([before, missed, routed, running]) == 1
        assert deliveries.recover([before, missed, routed, running]) == 0  # a second start: nothing new
        deliveries.start()
        try:
            [got] = hook.wait_for(1)
            assert got.headers["webhook-id"] == "j2.1.backup.failed"
        finally:
            deliveries.stop()


def test_a_job_that_names_the_notifier_gets_its_outcome_on_recovery(state):
    with http_receiver() as hook:
        deliveries = Deliveries(lambda: _config(hook.url, events=["alert.*"]), state, now, lambda *a, **k: None)
        done = {**_job(5, now(), "completed"), "result": {"id": "b5", "destinations": ["local"]},
                "notify": {"names": ["hook"], "on": ["success"]}, "error": None}
        assert deliveries.recover([done]) == 1
        assert [p.event.type for p in state.pending("hook")] == [EventType.BACKUP_SUCCEEDED]


def test_undelivered_notifications_expire_after_the_retry_window(state, monkeypatch):
    monkeypatch.setenv(SCALE_ENV, "0.00001")  # 24 h become 0.86 s
    with http_receiver() as hook:
        hook.stop()
        deliveries = Deliveries(lambda: _config(hook.url), state, now, lambda *a, **k: None)
        deliveries.start()
        try:
            deliveries.route(Event(id="e1", type=EventType.BACKUP_FAILED, at=now().isoformat(), source="app"))
            assert wait_for(lambda: state.figures().get("hook", {}).get("expired") == 1, 10)
            fig = state.figures()["hook"]
            assert fig["queue"] == 0 and fig["failed"] >= 3 and fig["last_result"] == "expired", fig
        finally:
            deliveries.stop()


def test_routing_never_raises_into_the_job(state, tmp_path):
    with http_receiver() as hook:
        deliveries = Deliveries(lambda: _config(hook.url), state, now, lambda *a, **k: None)
        bus = EventBus(now)
        bus.add_sink(deliveries.route)
        state._db.close()  # the state database is gone: routing fails, and says so in the log only
        bus.publish(Event(id="e2", type=EventType.BACKUP_FAILED, at=now().isoformat()))


def test_the_heartbeat_pings_only_while_every_source_is_fresh():
    with http_receiver() as beat:
        stale = {"app": True}
        evaluated = threading.Event()
        config = SimpleNamespace(monitoring=MonitoringConfig.model_validate(
            {"heartbeat_url": beat.url + "/ping/secret-uuid", "heartbeat_interval": "60s"}))
        heart = Heartbeat(lambda: config, lambda: dict(stale), evaluated)
        heart.start()
        try:
            time.sleep(0.5)
            assert beat.requests == []  # the watchdog has not evaluated yet: no ping that says all is well
            evaluated.set()
            time.sleep(0.5)
            assert beat.requests == []  # stale
            stale["app"] = False
            heart.kick()  # as freshness.restored does
            [ping] = beat.wait_for(1, timeout=5)
            assert ping.path == "/ping/secret-uuid"
            stale["app"] = True
            heart.kick()
            time.sleep(0.5)
            assert len(beat.requests) == 1
        finally:
            heart.stop()
