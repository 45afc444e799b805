"""Notifications end to end: the real daemon, a real SMTP server (STARTTLS and AUTH) and real HTTP
receivers. A scheduled backup that fails is mailed and POSTed once each, signed so a receiver can
verify it; success reaches only the notifiers that ask for it; the heartbeat stops while a source is
stale and resumes when it is fresh again."""

from __future__ import annotations

import base64
import json
import os
import socket
import time

from standardwebhooks import Webhook

from tests.servers.receivers import http_receiver, smtp_receiver

from .harness import schedule_table, wait_for

FAST = {"recheck_interval": "1s"}
QUICK_CHECKS = "\n[alerts]\ncheck_interval = 0.2\n"
SECRET = "whsec_" + base64.b64encode(b"backupd-notification-test-key!!").decode()


def _secret_file(inst) -> str:
    path = inst.root / "webhook.secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o600)
    return str(path)


def _email(smtp, **fields) -> str:
    keys = {"name": "mail", "kind": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
            "security": "starttls", "username": "backupd", "password_env": "BACKUPD_TEST_SMTP_PASSWORD",
            "from": "backupd@db1.example", "to": ["ops@example.com"], "ca_file": str(smtp.cert), **fields}
    return "\n[[notifiers]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def _webhook(name: str, url: str, **fields) -> str:
    keys = {"name": name, "kind": "webhook", "url": url, **fields}
    return "\n[[notifiers]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def test_a_failing_scheduled_backup_is_mailed_and_posted_once_and_the_post_verifies(installation, daemon_for,
                                                                                   tmp_path):
    with smtp_receiver(tmp_path, security="starttls", username="backupd", password="s3cret") as smtp, \
            http_receiver() as hook:
        tick = schedule_table("nightly", "demo", "*/2 * * * * *", retry={"max_attempts": 1})
        inst = installation(demo="small", daemon=FAST, schedules=[tick])
        inst.extra = _email(smtp) + _webhook("hook", hook.url + "/in", secret_file=_secret_file(inst))
        inst.write_config()
        db = inst.db("demo")
        os.rename(db, db.with_name("demo.db.away"))  # every run fails: the source database is gone
        d = daemon_for(inst, env={"BACKUPD_TEST_SMTP_PASSWORD": "s3cret"}).start()
        c = d.client()
        [first] = hook.wait_for(1, timeout=30)
        c.schedule_pause("nightly")
        time.sleep(3)  # anything else queued for the first failure would have arrived by now

        body = json.loads(first.body)
        assert body["type"] == "backup.failed" and body["source"] == "demo" and body["schedule"] == "nightly", body
        assert body["error_code"] and body["log_tail"], body
        assert first.headers["webhook-id"] == body["id"] == f"{body['job_id']}.1.backup.failed"
        Webhook(SECRET).verify(first.body, {k: first.headers[k] for k in
                                            ("webhook-id", "webhook-timestamp", "webhook-signature")})
        bodies = [json.loads(r.body) for r in hook.requests]
        assert len({b["id"] for b in bodies}) == len(bodies), "an event was delivered twice"
        posted = [b for b in bodies if b["type"] == "backup.failed"]

        smtp.wait_for(1)
        mails = [m for m in smtp.messages if "backup failed" in m["Subject"]]  # not the alert it raised
        assert smtp.box.envelopes[0] == ("backupd@db1.example", ["ops@example.com"], True)
        subject = mails[0]["Subject"]
        assert "demo" in subject and "fail" in subject.lower() and socket.gethostname() in subject, subject
        text = mails[0].get_content()
        assert body["error_code"] in text and body["job_id"] in text, text
        assert all(line in text for line in body["log_tail"]), text
        # one mail and one POST per failed run, never a repeat
        runs = [j for j in c.job_list(source="demo") if j.get("schedule") == "nightly" and j["status"] == "failed"]
        assert len(mails) == len(runs) == len(posted), (len(mails), len(runs), len(posted))
        d.stop()


def test_success_reaches_only_the_notifiers_that_ask_for_it(installation, daemon_for):
    with http_receiver() as hook:
        tick = schedule_table("often", "demo", "*/3 * * * * *", notify=["done"], notify_on=["success"])
        inst = installation(demo="small", daemon=FAST, schedules=[tick])
        inst.extra = (_webhook("failures", hook.url + "/failures") + _webhook("done", hook.url + "/done")
                      + _webhook("all", hook.url + "/all", events=["backup.*"]))
        inst.write_config()
        d = daemon_for(inst).start()
        c = d.client()
        [done] = hook.wait_for(1, timeout=30, path="/done")
        c.schedule_pause("often")
        assert json.loads(done.body)["type"] == "backup.succeeded" and json.loads(done.body)["schedule"] == "often"
        time.sleep(3)  # the runs under way end, and their notifications arrive
        runs = [j for j in c.job_list(source="demo") if j.get("schedule") == "often"]
        assert runs and all(j["status"] == "completed" for j in runs), runs
        types = [json.loads(r.body)["type"] for r in hook.requests if r.path.startswith("/all")]
        assert types == ["backup.started", "backup.succeeded"] * len(runs), types
        assert len([r for r in hook.requests if r.path.startswith("/done")]) == len(runs)
        assert [r for r in hook.requests if r.path.startswith("/failures")] == []
        d.stop()


def test_the_heartbeat_stops_while_a_source_is_stale_and_resumes_when_it_is_fresh(installation, daemon_for):
    with http_receiver() as beat:
        inst = installation(demo="small", daemon=FAST, source_fields={"demo": {"max_age": "4s"}},
                            extra=QUICK_CHECKS + f'\n[monitoring]\nheartbeat_url = "{beat.url}/ping/uuid"\n'
                                                 'heartbeat_interval = "60s"\n')
        d = daemon_for(inst).start()
        c = d.client()
        d.wait_event("freshness_violated", timeout=15, source="demo")  # no backup yet: stale, so no heartbeat
        time.sleep(2)
        assert beat.requests == []
        health = c.health()
        assert health["status"] == "unhealthy" and any(p.get("source") == "demo" for p in health["problems"])

        job = c.backup_create("demo")
        d.wait_job(job["job_id"], lambda j: j["status"] == "completed", 60, "completed")
        d.wait_event("freshness_restored", timeout=15, source="demo")
        [ping] = beat.wait_for(1, timeout=10)  # right after freshness.restored, not a full interval later
        assert ping.path == "/ping/uuid"
        logged = [e for e in d.events() if "heartbeat" in e.get("event", "")]
        assert logged and all("/ping/uuid" not in json.dumps(e) for e in logged), logged  # the path is secret
        assert wait_for(lambda: d.events("freshness_violated", source="demo")[1:], 20)  # the backup ages out
        sent = len(beat.requests)
        time.sleep(2)
        assert len(beat.requests) == sent, "a heartbeat was sent while the source was stale"
        d.stop()
