"""Deliveries in process, on a real state database and a real HTTP receiver: a start routes the job
outcomes a killed daemon never routed (once, and not those of jobs that ended before), retries are given
up after their (shrunk) 24 h, a routing failure never raises into the job, and the heartbeat pings only
while every source is fresh."""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from standardwebhooks import Webhook

from backupd.config.monitoring import MonitoringConfig
from backupd.config.notifiers import NotifierConfig
from backupd.core.events import Event, EventType
from backupd.daemon.events import EventBus
from backupd.daemon.heartbeat import Heartbeat
from backupd.daemon.outbox import SCALE_ENV, Deliveries, redelivery_scale
from backupd.state.db import StateDB
from backupd.errors import ConfigError
from backupd.state.outbox import OutboxStore
from tests.servers.receivers import Reply, http_receiver

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
        state.enqueue(Event(id="j3.1.backup.failed", type=EventType.BACKUP_FAILED, at=now().isoformat(), job_id="j3"),
                      [], now())
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
        stale, current = {"app": True}, [True]
        evaluated = threading.Event()
        watchdog = SimpleNamespace(evaluated=evaluated, stale_sources=lambda: dict(stale),
                                   checked_recently=lambda: current[0])
        config = SimpleNamespace(monitoring=MonitoringConfig.model_validate(
            {"heartbeat_url": beat.url + "/ping/secret-uuid", "heartbeat_interval": "60s"}))
        heart = Heartbeat(lambda: config, watchdog)  # type: ignore[arg-type]
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
            stale["app"], current[0] = False, False  # fresh, as far as anyone knows: the watchdog fails
            heart.kick()
            time.sleep(0.5)
            assert len(beat.requests) == 1
            current[0] = True
            heart.kick()
            beat.wait_for(2, timeout=5)
        finally:
            heart.stop()


def _started(deliveries: Deliveries):
    deliveries.start()
    return deliveries


def test_a_reload_during_an_attempt_never_sends_the_row_twice(state):
    with http_receiver() as hook:
        hook.reply = Reply(delay_s=1.0)
        config = _config(hook.url, timeout="3s")
        deliveries = _started(Deliveries(lambda: config, state, now, lambda *a, **k: None))
        try:
            deliveries.route(Event(id="e3", type=EventType.BACKUP_FAILED, at=now().isoformat()))
            time.sleep(0.3)  # the attempt is under way
            config.notifiers = [config.notifiers[0].model_copy(update={"timeout_s": 2.0})]
            deliveries.reload()  # a new worker for the new settings, after the old one's attempt
            assert wait_for(lambda: state.figures()["hook"]["delivered"] == 1, 10)
            time.sleep(1.5)
            assert len(hook.requests) == 1 and state.figures()["hook"]["delivered"] == 1
        finally:
            deliveries.stop()


def test_stop_waits_for_the_attempt_under_way(state):
    with http_receiver() as hook:
        hook.reply = Reply(delay_s=1.0)
        deliveries = _started(Deliveries(lambda: _config(hook.url, timeout="5s"), state, now, lambda *a, **k: None))
        deliveries.route(Event(id="e4", type=EventType.BACKUP_FAILED, at=now().isoformat()))
        time.sleep(0.3)
        deliveries.stop()
        assert state.figures()["hook"]["delivered"] == 1 and state.pending("hook") == []


def test_a_row_picked_up_after_the_retry_window_expires_unsent(state):
    with http_receiver() as hook:
        state.enqueue(Event(id="e5", type=EventType.BACKUP_FAILED, at=now().isoformat()), ["hook"],
                      now() - timedelta(hours=25))
        deliveries = _started(Deliveries(lambda: _config(hook.url), state, now, lambda *a, **k: None))
        try:
            assert wait_for(lambda: state.figures().get("hook", {}).get("expired") == 1, 5)
            assert hook.requests == []
        finally:
            deliveries.stop()


def test_after_a_failure_the_rest_of_the_queue_waits_for_its_retry(state):
    with http_receiver() as hook:
        hook.reply = Reply(status=500)
        for n in range(3):
            state.enqueue(Event(id=f"e6-{n}", type=EventType.BACKUP_FAILED, at=now().isoformat()), ["hook"], now())
        deliveries = _started(Deliveries(lambda: _config(hook.url), state, now, lambda *a, **k: None))
        try:
            hook.wait_for(1)
            time.sleep(1)
            assert len(hook.requests) == 1  # not three attempts at a receiver that refuses
        finally:
            deliveries.stop()


def test_a_rewritten_secret_file_takes_effect_at_the_reload(state, tmp_path):
    keys = ["whsec_" + base64.b64encode(b"first-key-first-key-first-key!!").decode(),
            "whsec_" + base64.b64encode(b"second-key-second-key-second-k!").decode()]
    secret = tmp_path / "hook.secret"
    secret.write_text(keys[0] + "\n")
    secret.chmod(0o600)
    with http_receiver() as hook:
        deliveries = _started(Deliveries(lambda: _config(hook.url, secret_file=str(secret)), state, now,
                                         lambda *a, **k: None))
        try:
            deliveries.route(Event(id="e7", type=EventType.BACKUP_FAILED, at=now().isoformat()))
            [first] = hook.wait_for(1)
            secret.write_text(keys[1] + "\n")
            os.utime(secret, ns=(time.time_ns(), time.time_ns() + 10**9))
            deliveries.reload()
            deliveries.route(Event(id="e8", type=EventType.BACKUP_FAILED, at=now().isoformat()))
            second = hook.wait_for(2)[1]
            for request, key in ((first, keys[0]), (second, keys[1])):
                Webhook(key).verify(request.body, {k: request.headers[k] for k in
                                                   ("webhook-id", "webhook-timestamp", "webhook-signature")})
        finally:
            deliveries.stop()


@pytest.mark.parametrize("value", ["fast", "0", "-1", "2"])
def test_a_bad_redelivery_scale_is_a_clear_error(value):
    with pytest.raises(ConfigError, match="BACKUPD_REDELIVERY_SCALE: must be a number in"):
        redelivery_scale({SCALE_ENV: value})
