"""Freshness and alerts on the real daemon: a stale source, a failing schedule, each announced once,
cleared once, named by `health`, and not announced again after a restart."""

from __future__ import annotations

import os
import time

from .harness import schedule_table, wait_for

FAST = {"recheck_interval": "1s"}
QUICK_CHECKS = '\n[alerts]\ncheck_interval = 0.2\nfailure_rate = 0.5\nwindow = 2\n'
EVERY_2S = "*/2 * * * * *"


def _problems(c, **subject):
    return [p for p in c.health()["problems"] if all(p.get(k) == v for k, v in subject.items())]


def test_a_source_older_than_max_age_is_stale_once_until_a_new_backup(installation, daemon_for):
    inst = installation(demo="small", daemon=FAST, source_fields={"demo": {"max_age": "3s"}}, extra=QUICK_CHECKS)
    d = daemon_for(inst).start()
    c = d.client()
    violated = d.wait_event("freshness_violated", timeout=10, source="demo")
    assert violated["code"] == "source_stale" and "no restorable backup" in violated["message"], violated
    health = c.health()
    assert health["status"] == "unhealthy", health
    [stale] = _problems(c, source="demo")
    assert stale["code"] == "source_stale" and stale["message"] == violated["message"]
    time.sleep(1.5)  # several watchdog rounds: still stale, not announced again
    assert len(d.events("freshness_violated")) == 1
    [streamed] = list(c.events(types=["freshness.*"], follow=False, history=10))  # on the event bus too, once
    assert (streamed["type"], streamed["source"], streamed["error_code"]) == ("freshness.violated", "demo",
                                                                            "source_stale"), streamed
    assert 'backupd_source_stale{source="demo"} 1.0' in c.metrics()["text"]

    job = c.backup_create("demo")
    d.wait_job(job["job_id"], lambda j: j["status"] == "completed", 60, "completed")
    d.wait_event("freshness_restored", timeout=10, source="demo")
    healthy = wait_for(lambda: (h := c.health())["status"] == "ok" and h, 15)
    assert healthy and healthy["problems"] == [], c.health()
    assert 'backupd_source_stale{source="demo"} 0.0' in c.metrics()["text"]

    again = wait_for(lambda: d.events("freshness_violated", source="demo")[1:], 15)  # the backup ages past 3s
    assert again and "old (max_age 3s)" in again[0]["message"], again
    assert len(d.events("freshness_restored")) == 1
    d.stop()

    d.start()  # the active set was persisted: nothing is announced again, health still names the source
    c = d.client()
    assert wait_for(lambda: _problems(c, source="demo"), 10), c.health()
    time.sleep(1.0)
    assert d.events("freshness_violated") == [] and d.events("freshness_restored") == []
    assert c.health()["status"] == "unhealthy"
    d.stop()


def test_a_failing_schedule_makes_health_unhealthy_and_its_alerts_are_raised_and_cleared_once(installation,
                                                                                                daemon_for):
    tick = schedule_table("tick", "demo", EVERY_2S, retry={"max_attempts": 1})
    inst = installation(demo="small", daemon=FAST, schedules=[tick], extra=QUICK_CHECKS)
    db = inst.db("demo")
    away = db.with_name("demo.db.away")
    os.rename(db, away)  # every run fails: the source database is gone
    d = daemon_for(inst).start()
    c = d.client()
    d.wait_event("alert_raised", timeout=20, schedule="tick", code="schedule_last_run_failed")
    wait_for(lambda: _problems(c, schedule="tick", code="schedule_last_run_failed"), 5)
    assert c.health()["status"] == "unhealthy"
    cli = d.ctl("health")
    assert cli.returncode == 1 and "schedule tick: its last run failed [schedule_last_run_failed]" in cli.stdout
    d.wait_event("alert_raised", timeout=20, schedule="tick", code="schedule_failing")

    os.rename(away, db)  # runs succeed again
    d.wait_event("alert_cleared", timeout=30, schedule="tick", code="schedule_last_run_failed")
    d.wait_event("alert_cleared", timeout=30, schedule="tick", code="schedule_failing")  # 0 of the last 2 failed
    c.schedule_pause("tick")
    assert wait_for(lambda: c.health()["status"] == "ok", 15), c.health()
    for event in ("alert_raised", "alert_cleared"):
        for code in ("schedule_last_run_failed", "schedule_failing"):
            assert len(d.events(event, schedule="tick", code=code)) == 1, (event, code, d.log_tail())
    d.stop()


def test_a_nearly_full_destination_degrades_health_once_and_clears_when_the_threshold_moves(installation,
                                                                                            daemon_for):
    tight = '\n[alerts]\ncheck_interval = 0.2\nstorage_usage = 1e-9\n'
    inst = installation(demo="small", daemon=FAST, extra=tight)
    d = daemon_for(inst).start()
    c = d.client()
    job = c.backup_create("demo")
    d.wait_job(job["job_id"], lambda j: j["status"] == "completed", 60, "completed")
    raised = d.wait_event("alert_raised", timeout=15, destination="local", code="storage_nearly_full")
    assert raised["details"]["severity"] == "warning" and "of the space there" in raised["message"], raised
    assert wait_for(lambda: c.health()["status"] == "degraded", 5), c.health()
    d.stop()

    d.start()  # kept while the destination is not probed yet, and after: not raised again
    c = d.client()
    assert wait_for(lambda: [h for h in c.destination_health() if h["checked_at"]], 15)
    time.sleep(1.0)
    assert d.events("alert_raised") == [] and d.events("alert_cleared") == []
    assert _problems(c, destination="local", code="storage_nearly_full")

    inst.extra = '\n[alerts]\ncheck_interval = 0.2\nstorage_usage = 1\n'
    inst.write_config()
    c.config_reload()
    d.wait_event("alert_cleared", timeout=10, destination="local", code="storage_nearly_full")
    assert wait_for(lambda: c.health()["status"] == "ok", 5), c.health()
    d.stop()
