"""The durable outbox end to end, with the real daemon and real receivers: a notification waits while
its receiver is down and arrives once it is back, survives a SIGKILL (delivered after the restart, once,
with the same id), never holds up the next backup when the receiver hangs, and a 410 Gone disables its
notifier (health says so). `backupctl notify ls|test` and a manual backup's `notify`."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import pytest
from backupd_client.errors import BadUsageError

from tests.servers.receivers import Reply, http_receiver

from .harness import schedule_table, wait_for

FAST = {"recheck_interval": "1s"}
QUICK_RETRIES = {"BACKUPD_REDELIVERY_SCALE": "0.002"}  # retries after 0.01s, 0.6s, 3.6s, 14s, 36s...


def _webhook(name: str, url: str, **fields) -> str:
    keys = {"name": name, "kind": "webhook", "url": url, **fields}
    return "\n[[notifiers]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def _failed_while_the_receiver_is_down(installation, daemon_for, hook):
    """A daemon with one webhook notifier `hook`, whose receiver is down, and a backup that has failed:
    (daemon, the failed job)."""
    inst = installation(demo="small", daemon=FAST, extra=_webhook("hook", hook.url + "/in"))
    hook.stop()
    db = inst.db("demo")
    os.rename(db, db.with_name("demo.db.away"))  # every backup of demo fails: its database is gone
    d = daemon_for(inst, env=QUICK_RETRIES).start()
    job = d.client().backup_create("demo")
    d.wait_job(job["job_id"], lambda j: j["status"] == "failed", 60, "failed")
    return d, job


def test_a_notification_waits_while_the_receiver_is_down_and_arrives_once_it_is_back(installation, daemon_for):
    with http_receiver() as hook:
        d, job = _failed_while_the_receiver_is_down(installation, daemon_for, hook)
        c = d.client()
        wait_for(lambda: len(d.events("notification_failed", notifier="hook")) >= 2, 15)
        [row] = c.notify_list()
        assert row["queue"] == 1 and row["last_result"] == "failed" and "127.0.0.1" in row["last_error"], row
        assert "/in" not in row["last_error"]  # a URL's path may be its secret
        hook.start()
        [got] = hook.wait_for(1, timeout=30)
        assert json.loads(got.body)["id"] == f"{job['job_id']}.1.backup.failed"
        d.wait_event("notification_delivered", timeout=10, notifier="hook")
        time.sleep(1)
        assert len(hook.requests) == 1
        [row] = c.notify_list()
        assert (row["queue"], row["delivered"], row["last_result"]) == (0, 1, "delivered"), row
        text = c.metrics()["text"]
        assert 'backupd_notifications_total{notifier="hook",result="delivered"} 1.0' in text, text
        assert 'backupd_notification_queue{notifier="hook"} 0.0' in text
        d.stop()


def test_a_daemon_killed_before_the_delivery_delivers_after_its_restart_once(installation, daemon_for):
    with http_receiver() as hook:
        d, job = _failed_while_the_receiver_is_down(installation, daemon_for, hook)
        d.wait_event("notification_failed", timeout=15, notifier="hook")
        d.close_clients()
        d.kill()  # SIGKILL: the notification is only in the outbox
        hook.start()
        d.start()
        [got] = hook.wait_for(1, timeout=30)
        time.sleep(2)
        assert len(hook.requests) == 1, [json.loads(r.body)["type"] for r in hook.requests]
        assert got.headers["webhook-id"] == json.loads(got.body)["id"] == f"{job['job_id']}.1.backup.failed"
        assert not d.events("notifications_recovered")  # it was routed before the kill: not routed again
        d.stop()


def test_a_receiver_that_hangs_does_not_hold_up_the_next_backups(installation, daemon_for):
    with http_receiver() as hook:
        hook.reply = Reply(delay_s=30)
        tick = schedule_table("often", "demo", "*/2 * * * * *")
        inst = installation(demo="small", daemon=FAST, schedules=[tick],
                            extra=_webhook("slow", hook.url + "/in", events=["backup.*"], timeout="1s"))
        d = daemon_for(inst).start()
        c = d.client()
        assert wait_for(lambda: len([j for j in c.job_list(source="demo") if j["status"] == "completed"]) >= 4, 30)
        c.schedule_pause("often")
        runs = sorted(j["started_at"] for j in c.job_list(source="demo") if j["status"] == "completed")
        gaps = [(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
                for a, b in zip(runs, runs[1:])]
        assert max(gaps) < 3.5, gaps  # every 2 s, as scheduled, while each delivery hangs for 1 s
        started = time.monotonic()
        c.status()
        assert time.monotonic() - started < 0.5
        failed = d.events("notification_failed", notifier="slow")
        assert failed and all("no answer within 1s" in e["error"] for e in failed), [e["error"] for e in failed]
        d.stop()


def test_410_gone_disables_the_notifier_and_says_so(installation, daemon_for):
    with http_receiver() as hook:
        hook.on("/gone", 410)
        inst = installation(demo="small", daemon=FAST,
                            extra=_webhook("gone", hook.url + "/gone", events=["backup.*"])
                            + _webhook("ops", hook.url + "/ops", events=["notifier.*"]))
        d = daemon_for(inst).start()
        c = d.client()
        job = c.backup_create("demo")
        d.wait_job(job["job_id"], lambda j: j["status"] == "completed", 60, "completed")
        [disabled] = hook.wait_for(1, timeout=15, path="/ops")
        event = json.loads(disabled.body)
        assert event["type"] == "notifier.disabled" and event["error_code"] == "notifier_gone", event
        assert event["details"]["notifier"] == "gone"
        time.sleep(1)
        assert len([r for r in hook.requests if r.path.startswith("/gone")]) == 1  # never tried again
        rows = {r["name"]: r for r in c.notify_list()}
        assert rows["gone"]["state"] == "down" and "410" in rows["gone"]["reason"], rows["gone"]
        health = c.health()
        assert health["status"] == "degraded", health
        assert {"code": "notifier_gone", "notifier": "gone"}.items() <= health["problems"][0].items(), health
        with pytest.raises(BadUsageError, match="disabled"):
            c.notify_test("gone")
        c.config_reload()  # a reload enables it again
        assert {r["name"]: r["state"] for r in c.notify_list()}["gone"] == "enabled"
        d.stop()


def test_backupctl_notify_test_and_ls(installation, daemon_for):
    with http_receiver() as hook:
        hook.on("/broken", 500)
        inst = installation(demo="small", daemon=FAST,
                            extra=_webhook("hook", hook.url + "/in") + _webhook("broken", hook.url + "/broken"))
        d = daemon_for(inst).start()
        r = d.ctl("notify", "test", "hook")
        assert r.returncode == 0 and "delivered" in r.stdout, r.stdout + r.stderr
        [got] = hook.wait_for(1, path="/in")
        assert json.loads(got.body)["type"] == "notifier.test"
        r = d.ctl("notify", "test", "broken")
        assert r.returncode == 1 and "HTTP 500" in r.stderr, r.stdout + r.stderr
        assert len([x for x in hook.requests if x.path.startswith("/broken")]) == 1  # a test is tried once
        r = d.ctl("notify", "test", "nobody")
        assert r.returncode == 1 and "no notifier 'nobody'" in r.stderr, r.stderr
        rows = {row["name"]: row for row in d.ctl_json("notify", "ls")}
        assert rows["hook"]["last_result"] == "delivered" and rows["broken"]["last_result"] == "failed", rows
        table = d.ctl("notify", "ls").stdout
        assert "hook" in table and "broken" in table and "HTTP 500" in table, table
        d.stop()


def test_a_manual_backup_names_its_notifiers(installation, daemon_for):
    with http_receiver() as hook:
        inst = installation(demo="small", daemon=FAST, extra=_webhook("done", hook.url + "/done"))
        d = daemon_for(inst).start()
        c = d.client()
        with pytest.raises(BadUsageError, match="unknown notifier 'nobody'"):
            c.backup_create("demo", notify=["nobody"])
        with pytest.raises(BadUsageError, match="notify_on needs notify"):
            c.backup_create("demo", notify_on=["success"])
        quiet = c.backup_create("demo")
        d.wait_job(quiet["job_id"], lambda j: j["status"] == "completed", 60, "completed")
        loud = d.ctl_json("backup", "--source", "demo", "--notify", "done", "--notify-on", "success", "--wait")
        [got] = hook.wait_for(1, timeout=15)
        body = json.loads(got.body)
        assert body["type"] == "backup.succeeded" and body["job_id"] == loud["job_id"], body
        assert c.job_get(loud["job_id"])["notify"] == {"names": ["done"], "on": ["success"]}
        time.sleep(1)
        assert len(hook.requests) == 1  # not the quiet one
        d.stop()
