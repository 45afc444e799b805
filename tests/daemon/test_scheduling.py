"""Schedules in a real daemon: a seconds-level cron firing, pause/resume, a blackout window that holds
then skips a job, load limits that hold a job (through the file load probe), retries with backoff
after an injected failure, and catch-up of a run missed while the daemon was down."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

from tests.destinations.conftest import tmpfs  # noqa: F401 - the fixture a read-only destination needs

from .harness import HEAVY_LOAD, LIGHT_LOAD, schedule_table, wait_for

EVERY_2S = "*/2 * * * * *"
FAST = {"recheck_interval": "1s"}


def test_a_seconds_cron_fires_and_pause_resume(installation, daemon_for):
    inst = installation(demo="small", daemon=FAST, schedules=[schedule_table("tick", "demo", EVERY_2S, tags=["t"])])
    d = daemon_for(inst).start()
    c = d.client()
    fired = d.wait_event("schedule_fired", timeout=15, schedule="tick")
    job = d.wait_job(fired["job_id"], lambda j: j["status"] == "completed", 60, "completed")
    assert job["schedule"] == "tick" and job["kind"] == "backup" and job["result"]["tags"] == ["t"]
    [listed] = c.schedule_list()
    assert listed["name"] == "tick" and listed["origin"] == "config" and not listed["paused"]
    assert datetime.fromisoformat(listed["next_run"]) > datetime.now(timezone.utc) - timedelta(seconds=1)
    wait_for(lambda: c.schedule_stats("tick")[0]["completed"] >= 1, 10)
    [stats] = c.schedule_stats("tick")
    assert stats["runs"] >= 1 and stats["completed"] >= 1 and stats["success_rate"] == 1.0
    assert stats["mean_duration_s"] is not None and stats["next_run"]

    paused = c.schedule_pause("tick")
    assert paused["paused"] is True and paused["next_run"] is None
    wait_for(lambda: not c.job_list(status="running") and not c.job_list(status="queued"), 30)
    count = len(d.events("schedule_fired", schedule="tick"))
    time.sleep(2.5)  # longer than the cron's period: a paused schedule must not fire
    assert len(d.events("schedule_fired", schedule="tick")) == count
    resumed = c.schedule_resume("tick")
    assert resumed["paused"] is False and resumed["next_run"]
    assert wait_for(lambda: len(d.events("schedule_fired", schedule="tick")) > count, 10)
    assert d.events("schedule_paused", schedule="tick") and d.events("schedule_resumed", schedule="tick")
    d.stop()


def _window_around_now() -> dict[str, str]:
    """A blackout window (UTC, every day) that opened an hour ago and closes in an hour."""
    now = datetime.now(timezone.utc)
    return {"start": (now - timedelta(hours=1)).strftime("%H:%M"), "end": (now + timedelta(hours=1)).strftime("%H:%M")}


def test_a_blackout_holds_the_job_then_skips_it_at_max_hold(installation, daemon_for):
    window = _window_around_now()
    inst = installation(demo="small", daemon={**FAST, "max_hold": "3s"},
                        schedules=[schedule_table("quiet", "demo", EVERY_2S, conditions={"blackout": [window]})])
    d = daemon_for(inst).start()
    c = d.client()
    fired = d.wait_event("schedule_fired", timeout=15, schedule="quiet")
    job_id = fired["job_id"]
    held = d.wait_event("job_held", timeout=10, job_id=job_id)
    assert held["reason"].startswith(f"in blackout window every day {window['start']}-"), held
    waiting = c.job_get(job_id)
    assert waiting["status"] == "waiting" and "blackout window" in waiting["reason"], waiting
    assert c.status()["jobs"]["waiting"] == 1

    skipped = d.wait_event("job_skipped", timeout=15, job_id=job_id)
    assert "max_hold 3s" in skipped["reason"] and "blackout window" in skipped["reason"], skipped
    job = c.job_get(job_id)
    assert job["status"] == "skipped" and job["reason"] == skipped["reason"] and job["started_at"] is None
    held_for = datetime.fromisoformat(skipped["timestamp"]) - datetime.fromisoformat(held["timestamp"])
    assert held_for >= timedelta(seconds=2.5), held_for  # held first, skipped at the limit
    assert not d.events("job_started")
    [stats] = c.schedule_stats("quiet")
    assert stats["skipped"] >= 1 and stats["completed"] == 0 and stats["failed"] == 0
    d.stop()


def test_load_limits_hold_a_job_until_the_load_drops(installation, daemon_for):
    inst = installation(demo="small", other="small", daemon=FAST,
                        schedules=[schedule_table("busy", "demo", EVERY_2S, conditions={"max_cpu_percent": 50})])
    inst.set_load(HEAVY_LOAD)
    d = daemon_for(inst).start()
    c = d.client()
    fired = d.wait_event("schedule_fired", timeout=15, schedule="busy")
    job_id = fired["job_id"]
    held = d.wait_event("job_held", timeout=10, job_id=job_id)
    assert held["reason"] == "cpu 99% > max_cpu_percent 50", held
    job = c.job_get(job_id)
    assert job["status"] == "waiting" and job["reason"] == held["reason"]

    # A manual backup has no schedule conditions: only the daemon-wide limits (concurrency) apply.
    manual = c.backup_create("other")
    assert c.job_wait(manual["job_id"], timeout_s=60)["status"] == "completed"
    d.wait_event("schedule_fire_coalesced", timeout=10, schedule="busy")  # the next fire joins the held job
    assert c.job_get(job_id)["status"] == "waiting"  # after more than one re-check: still held
    assert len(d.events("schedule_fired", schedule="busy")) == 1

    inst.set_load(LIGHT_LOAD)
    done = c.job_wait(job_id, timeout_s=60)
    assert done["status"] == "completed", done
    assert d.events("job_started", job_id=job_id)
    assert not d.events("running_despite_load")
    d.stop()


def test_a_failed_job_is_retried_with_backoff(installation, daemon_for):
    retry = {"max_attempts": 3, "base_delay": "1s", "max_delay": "2s"}
    inst = installation(demo="small", daemon=FAST, schedules=[schedule_table("flaky", "demo", EVERY_2S, retry=retry)])
    db = inst.db("demo")
    away = db.with_name("demo.db.away")
    os.rename(db, away)  # the injected failure: the source database is gone, the snapshot fails
    d = daemon_for(inst).start()
    c = d.client()
    scheduled = d.wait_event("job_retry_scheduled", timeout=20)
    job_id = scheduled["job_id"]
    assert scheduled["attempt"] == 2 and scheduled["error"]["code"] == "snapshot_failed"
    assert 0.5 <= scheduled["delay_s"] <= 1.5, scheduled  # base_delay 1s, jitter 0.2
    job = c.job_get(job_id)
    assert job["status"] in ("waiting", "running") and job["max_attempts"] == 3
    if job["status"] == "waiting":
        assert job["reason"].startswith("retry 2/3 in "), job
    os.rename(away, db)

    done = c.job_wait(job_id, timeout_s=60)
    assert done["status"] == "completed" and done["attempt"] in (2, 3) and done["error"] is None, done
    assert done["schedule"] == "flaky"
    starts = d.events("job_started", job_id=job_id)
    assert [e["attempt"] for e in starts] == list(range(1, done["attempt"] + 1))
    assert not d.events("job_failed", job_id=job_id)
    d.stop()


def test_a_destination_that_turned_read_only_is_not_retried(installation, daemon_for, tmpfs):
    """destination_read_only (like destination_full and destination_permission_denied) says the job
    would fail again in a second: it fails at once, with the cause, instead of burning its retries."""
    retry = {"max_attempts": 3, "base_delay": "1s", "max_delay": "2s"}
    inst = installation(demo="small", daemon=FAST, schedules=[schedule_table("ro", "demo", EVERY_2S, retry=retry)])
    tmpfs("size=16m", at=inst.dest)
    tmpfs.remount(inst.dest, "ro")
    d = daemon_for(inst).start()
    failed = d.wait_event("job_failed", timeout=30)
    assert failed["attempt"] == 1 and failed["error"]["code"] == "destination_read_only", failed
    assert "read-only file system" in failed["error"]["message"], failed
    assert not d.events("job_retry_scheduled", job_id=failed["job_id"])
    d.stop()


def test_manual_backups_fail_at_once_unless_daemon_retry_is_set(installation, daemon_for):
    inst = installation(demo="small", daemon=FAST)
    db = inst.db("demo")
    away = db.with_name("demo.db.away")
    os.rename(db, away)
    d = daemon_for(inst).start()
    c = d.client()
    once = c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)
    assert once["status"] == "failed" and once["attempt"] == 1 and once["max_attempts"] == 1
    d.stop()

    inst.daemon = {**FAST, "retry": {"max_attempts": 3, "base_delay": "1s", "max_delay": "2s"}}
    inst.write_config()
    d.start()
    c = d.client()
    job_id = c.backup_create("demo")["job_id"]
    scheduled = d.wait_event("job_retry_scheduled", timeout=20, job_id=job_id)
    assert scheduled["attempt"] == 2 and scheduled["error"]["code"] == "snapshot_failed"
    os.rename(away, db)
    done = c.job_wait(job_id, timeout_s=60)
    assert done["status"] == "completed" and done["attempt"] in (2, 3), done


def test_a_run_missed_while_down_is_caught_up_once(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    # A runtime schedule firing once a minute, at a second a few seconds from now. The daemon stops
    # before that and restarts after it: that run was missed and is caught up once, at start.
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=5)
    with d.client() as c:
        added = c.schedule_add("minutely", "demo", f"{due.second} * * * * *")
    assert datetime.fromisoformat(added["next_run"]) == due
    d.stop()
    assert not d.events("schedule_fired"), "the daemon stopped too late: the run happened, nothing was missed"
    wait_for(lambda: datetime.now(timezone.utc) > due + timedelta(seconds=0.5), 30, interval=0.1)

    d.start()
    caught = d.wait_event("schedule_caught_up", timeout=10, schedule="minutely")
    assert datetime.fromisoformat(caught["missed_at"]) == due
    c = d.client()
    job = c.job_wait(caught["job_id"], timeout_s=60)
    assert job["status"] == "completed" and job["schedule"] == "minutely"
    assert len(d.events("schedule_caught_up")) == 1
    assert [j["job_id"] for j in c.job_list(source="demo")] == [caught["job_id"]]
    assert [s["name"] for s in c.schedule_list()] == ["minutely"]  # the runtime schedule survived the restart
    d.stop()


def test_manual_jobs_pass_the_daemon_gate_and_high_priority_bypasses_load(installation, daemon_for):
    inst = installation(demo="small", other="small",
                        daemon={**FAST, "conditions": {"max_cpu_percent": 50}})
    inst.set_load(HEAVY_LOAD)
    d = daemon_for(inst).start()
    c = d.client()
    normal = c.backup_create("demo")
    held = d.wait_event("job_held", timeout=10, job_id=normal["job_id"])
    assert held["reason"] == "cpu 99% > max_cpu_percent 50", held
    urgent = c.backup_create("other", priority="high")
    assert c.job_wait(urgent["job_id"], timeout_s=60)["status"] == "completed"
    despite = d.wait_event("running_despite_load", timeout=10, job_id=urgent["job_id"])
    assert "priority high" in despite["reason"]
    assert c.job_get(normal["job_id"])["status"] == "waiting"
    inst.set_load(LIGHT_LOAD)
    assert c.job_wait(normal["job_id"], timeout_s=60)["status"] == "completed"
    d.stop()


def test_max_staleness_lets_a_stale_source_through_the_load_limits(installation, daemon_for):
    guarded = schedule_table("guarded", "demo", EVERY_2S, max_staleness="1h", conditions={"max_cpu_percent": 50})
    inst = installation(demo="small", daemon=FAST, schedules=[guarded])
    inst.set_load(HEAVY_LOAD)
    d = daemon_for(inst).start()
    c = d.client()
    first = d.wait_event("schedule_fired", timeout=15, schedule="guarded")["job_id"]
    assert c.job_wait(first, timeout_s=60)["status"] == "completed"  # no good backup yet: it may not wait
    assert "no good backup yet" in d.wait_event("running_despite_load", job_id=first)["reason"]
    # now the source has a fresh backup: the next run waits for the load like any other
    nxt = wait_for(lambda: [e["job_id"] for e in d.events("schedule_fired", schedule="guarded") if e["job_id"] != first], 15)
    assert nxt, "the schedule did not fire again"
    held = d.wait_event("job_held", timeout=10, job_id=nxt[0])
    assert held["reason"] == "cpu 99% > max_cpu_percent 50"
    assert not d.events("running_despite_load", job_id=nxt[0])


def test_a_prune_schedule_applies_retention(installation, daemon_for):
    inst = installation(demo="small", daemon=FAST, extra="\n[retention]\nkeep_last = 1\n")
    d = daemon_for(inst).start()
    ids = [d.ctl_json("backup", "--source", "demo", "--strategy", "full", "--wait")["id"] for _ in range(3)]
    assert len(d.ctl_json("ls")) == 1  # retention also runs after each backup
    (inst.dest / "demo" / f".{ids[0]}.bkpd.0000.backupd-tmp").write_bytes(b"left by a crash")
    added = d.ctl_json("schedule", "add", "tidy", "--job", "prune", "--source", "demo", "--cron", EVERY_2S)
    assert added["job"] == "prune"
    fired = d.wait_event("schedule_fired", timeout=15, schedule="tidy")
    c = d.client()
    done = c.job_wait(fired["job_id"], timeout_s=60)
    assert done["kind"] == "prune" and done["status"] == "completed", done
    assert [b["id"] for b in d.ctl_json("ls")] == [ids[-1]]
    assert inst.leftovers() == ([], [])
    refused = d.ctl("schedule", "add", "bad", "--job", "prune", "--source", "demo", "--cron", "0 * * * *",
                    "--strategy", "full")
    assert refused.returncode == 2 and "strategy: not used by a prune schedule" in refused.stderr
