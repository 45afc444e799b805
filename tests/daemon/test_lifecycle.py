"""The daemon's lifecycle: cancel and SIGTERM during a backup (no partial artifact), SIGHUP with a broken
config (the old one keeps running), and what survives a restart (job history, runtime schedules,
paused flags)."""

from __future__ import annotations

import os
import signal

import pytest
from backupd_client.errors import ShuttingDownError

from backupd.daemon.worker import WORKER_NICE

from .harness import schedule_table, wait_for

SLOW = 19  # zstd level: the 32 MiB source takes ~10 s to back up, so there is time to interrupt it


def _start_slow_backup(d, inst, source: str = "big") -> dict:
    """Queue a backup of `source` and wait until it is writing its artifact (a temp file exists)."""
    c = d.client()
    job = c.backup_create(source)
    d.wait_job(job["job_id"], lambda j: j["status"] == "running" and (j["progress"] or {}).get("done_bytes", 0) > 0,
               60, "running with progress")
    assert wait_for(lambda: inst.leftovers()[0], 30), "no temp artifact appeared while the backup ran"
    return job


def test_cancel_a_running_backup_leaves_no_partial_artifact(installation, daemon_for):
    inst = installation(big="big", compression_level=SLOW)
    d = daemon_for(inst).start()
    job = _start_slow_backup(d, inst)
    # The job runs in its own process, every thread of it niced below the daemon (the control socket
    # stays responsive on a busy machine; see bench/bench_control.py).
    threads = d.job_threads()
    expected = min(19, os.getpriority(os.PRIO_PROCESS, d.proc.pid) + WORKER_NICE)
    assert len(threads) >= 2 and set(threads.values()) == {expected}, threads
    cancel = d.ctl_json("cancel", job["job_id"])
    assert cancel["job_id"] == job["job_id"] and cancel["status"] in ("running", "cancelled")
    done = d.client().job_wait(job["job_id"], timeout_s=60)
    assert done["status"] == "cancelled" and done["error"]["code"] == "cancelled", done
    assert done["result"] is None and done["finished_at"]
    assert inst.leftovers() == ([], []) and inst.manifests() == []
    assert d.events("job_cancelled", job_id=job["job_id"])
    assert d.ctl_json("ls") == []
    # The source is free again; a cancel of a finished job changes nothing.
    assert d.ctl_json("cancel", job["job_id"])["status"] == "cancelled"
    c = d.client()
    assert c.status()["jobs"] == {"queued": 0, "waiting": 0, "running": 0}
    d.stop()


def test_sigterm_during_a_backup_cancels_it_cleanly_and_exits_0(installation, daemon_for):
    inst = installation(big="big", compression_level=SLOW, daemon={"shutdown_timeout": "1s"})
    d = daemon_for(inst).start()
    job = _start_slow_backup(d, inst)
    d.close_clients()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(60) == 0, d.log_tail()
    names = [e["event"] for e in d.events()]
    for name in ("shutdown_requested", "daemon_stopping", "job_cancelled_at_shutdown", "job_cancelled", "daemon_stopped"):
        assert name in names, (name, names)
    assert names.index("job_cancelled") < names.index("daemon_stopped")
    assert inst.leftovers() == ([], []) and inst.manifests() == []
    assert not inst.socket.exists()

    d.start()  # the cancelled job is in the history; nothing was left for the next start to clean up
    c = d.client()
    old = c.job_get(job["job_id"])
    assert old["status"] == "cancelled" and old["error"]["code"] == "cancelled", old
    assert not d.events("jobs_interrupted")
    d.stop()


def test_sigterm_drains_a_running_backup_within_shutdown_timeout(installation, daemon_for):
    inst = installation(big="big", demo="small", compression_level=15)  # ~3 s, well within the default 60 s
    d = daemon_for(inst).start()
    c = d.client()
    job = c.backup_create("big")
    d.wait_job(job["job_id"], lambda j: j["status"] == "running", 30, "running")
    d.signal(signal.SIGTERM)
    d.wait_event("daemon_stopping", timeout=10)
    # Draining: the socket still answers, says so, and takes no new work.
    assert c.status()["state"] == "stopping"
    with pytest.raises(ShuttingDownError):
        c.backup_create("demo")
    assert {"code": "daemon_stopping", "message": "the daemon is stopping"} in c.health()["problems"]
    d.close_clients()
    assert d.wait_exit(60) == 0, d.log_tail()
    assert d.events("job_completed", job_id=job["job_id"]) and not d.events("job_cancelled_at_shutdown")
    assert inst.leftovers() == ([], []) and len(inst.manifests()) == 1


def test_after_a_crash_the_interrupted_job_is_marked_and_nothing_is_left(installation, daemon_for):
    inst = installation(big="big", compression_level=SLOW)
    d = daemon_for(inst).start()
    job = _start_slow_backup(d, inst)
    d.close_clients()
    d.kill()  # SIGKILL: no drain, no cleanup by the daemon
    d.start()
    interrupted = d.wait_event("jobs_interrupted", timeout=10)
    assert interrupted["job_ids"] == [job["job_id"]]
    c = d.client()
    old = c.job_get(job["job_id"])
    assert old["status"] == "failed" and old["error"]["code"] == "interrupted", old
    # The worker went down with its daemon (its pipe broke): the source is free and nothing half-written stays.
    inst.compression_level = 3
    inst.write_config()
    c.config_reload()
    again = c.job_wait(c.backup_create("big")["job_id"], timeout_s=120)
    assert again["status"] == "completed", again
    assert inst.leftovers() == ([], []) and len(inst.manifests()) == 1
    d.stop()


def test_sighup_with_a_broken_config_keeps_the_old_one(installation, daemon_for):
    inst = installation(demo="small", daemon={"recheck_interval": "1s"},
                        schedules=[schedule_table("daily", "demo", "0 3 * * *")])
    d = daemon_for(inst).start()
    c = d.client()
    good_text = inst.config.read_text()

    # Shape errors in two places: both are reported, the running config is untouched.
    inst.compression_level = 40
    inst.schedules = [schedule_table("daily", "demo", "0 3 * * * * *")]
    inst.write_config()
    d.signal(signal.SIGHUP)
    failed = d.wait_event("config_reload_failed", timeout=10)
    problems = " | ".join(failed["problems"])
    assert "compression_level" in problems and "schedules[0].cron" in problems, problems
    assert d.alive and c.status()["state"] == "running"
    assert [s["name"] for s in c.schedule_list()] == ["daily"]
    assert c.destination_list()[0]["compression_level"] == 3
    assert c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)["status"] == "completed"

    # A TOML syntax error, through SIGHUP and through `backupctl reload` (exit 2, one line).
    inst.config.write_text(good_text + "\n[daemon\n")
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: len(d.events("config_reload_failed")) == 2, 10)
    assert "TOML" in d.events("config_reload_failed")[1]["problems"][0]
    reload = d.ctl("reload")
    assert reload.returncode == 2 and reload.stderr.count("\n") == 1 and "TOML" in reload.stderr, reload
    assert d.alive and c.status()["state"] == "running"

    # A good config is picked up: a new schedule appears.
    inst.compression_level = 3
    inst.schedules = [schedule_table("daily", "demo", "0 3 * * *"), schedule_table("weekly", "demo", "0 4 * * sun")]
    inst.write_config()
    d.signal(signal.SIGHUP)
    reloaded = d.wait_event("config_reloaded", timeout=10)
    assert reloaded["schedules"] == ["daily", "weekly"]
    assert [s["name"] for s in c.schedule_list()] == ["daily", "weekly"]
    assert d.ctl_json("reload")["reloaded"] is True
    assert not d.events("config_reload_partial")
    d.stop()


def test_history_schedules_and_pauses_survive_a_restart(installation, daemon_for):
    inst = installation(demo="small", schedules=[schedule_table("daily", "demo", "0 3 * * *")],
                        extra='\n[validation]\ndefault_level = "quick"\n')
    d = daemon_for(inst).start()
    done = d.ctl_json("backup", "--source", "demo", "--wait")
    assert done["status"] == "completed"
    d.ctl_json("schedule", "add", "hourly", "--source", "demo", "--cron", "0 * * * *", "--tag", "rt")
    with d.client() as c:  # the fields backupctl has no flags for, as the protocol names them
        guarded = c.schedule_add("guarded", "demo", "30 2 * * mon-fri", timezone="Europe/Paris",
                                 retry={"max_attempts": 5, "base_delay": "10s", "max_delay": "1m"},
                                 conditions={"blackout": [{"days": ["sat", "sun"], "start": "22:00", "end": "24:00"}],
                                             "max_cpu_percent": 75, "min_free_memory": "1MiB"},
                                 max_staleness_s=7200, validate_after_backup=True)
    assert guarded["retry"] == {"max_attempts": 5, "base_delay": 10.0, "max_delay": 60.0, "multiplier": 2.0,
                                "jitter": 0.2}
    assert guarded["conditions"] == {"blackout": [{"days": ["sat", "sun"], "start": "22:00", "end": "24:00"}],
                                     "maintenance": [], "max_cpu_percent": 75.0, "max_load_per_core": None,
                                     "min_free_memory": 1 << 20, "max_concurrent_jobs": None}
    # true means the config's validation.default_level, as in a [[schedules]] table
    assert guarded["max_staleness_s"] == 7200.0 and guarded["validate_after_backup"] == "quick"
    assert guarded["timezone"] == "Europe/Paris"
    d.ctl_json("schedule", "pause", "daily")
    d.ctl_json("schedule", "pause", "hourly")
    d.ctl_json("schedule", "resume", "hourly")
    before_jobs = d.ctl_json("jobs")
    before_schedules = d.ctl_json("schedule", "ls")
    d.stop()

    d.start()
    after_jobs = d.ctl_json("jobs")
    assert [(j["job_id"], j["status"]) for j in after_jobs] == [(j["job_id"], j["status"]) for j in before_jobs]
    assert after_jobs[0]["job_id"] == done["job_id"] and after_jobs[0]["result"]["id"] == done["id"]
    shown = d.ctl_json("jobs", done["job_id"])
    assert shown["status"] == "completed" and shown["result"]["id"] == done["id"]
    schedules = {s["name"]: s for s in d.ctl_json("schedule", "ls")}
    assert set(schedules) == {"daily", "hourly", "guarded"}
    assert schedules["guarded"] == {**guarded, "next_run": schedules["guarded"]["next_run"]}
    assert schedules["daily"]["paused"] is True and schedules["daily"]["origin"] == "config"
    assert schedules["daily"]["next_run"] is None
    assert schedules["hourly"]["paused"] is False and schedules["hourly"]["origin"] == "runtime"
    assert schedules["hourly"]["tags"] == ["rt"] and schedules["hourly"]["next_run"]
    assert {k: v for k, v in schedules["hourly"].items() if k != "next_run"} == \
        {k: v for k, v in next(s for s in before_schedules if s["name"] == "hourly").items() if k != "next_run"}
    assert d.ctl_json("ls")[0]["id"] == done["id"]
    d.ctl_json("schedule", "rm", "hourly")
    d.stop()

    d.start()
    assert [s["name"] for s in d.ctl_json("schedule", "ls")] == ["daily", "guarded"]
    d.stop()


def test_a_source_locked_by_another_process_holds_the_job_instead_of_failing_it(installation, daemon_for):
    import fcntl
    import os

    inst = installation(demo="small", daemon={"recheck_interval": "1s"})
    d = daemon_for(inst).start()
    c = d.client()
    lock_dir = inst.state / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "demo.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a one-shot `backupd backup` of the same source would
    try:
        job = c.backup_create("demo")
        held = d.wait_event("job_held", timeout=20, job_id=job["job_id"])
        assert "locked by another process" in held["reason"]
        assert c.job_get(job["job_id"])["status"] == "waiting"
    finally:
        os.close(fd)
    assert c.job_wait(job["job_id"], timeout_s=60)["status"] == "completed"
    d.stop()
