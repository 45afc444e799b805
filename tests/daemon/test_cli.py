"""`backupctl` end to end against a real daemon: backup --wait, ls, restore, validate, schedules, jobs,
status while a backup runs, and the exit codes and output of failures."""

from __future__ import annotations

import json
import os
import subprocess
import time

from .harness import BACKUPD, row_count, wait_for

BACKUP_FIELDS = {"id", "source", "strategy", "parent_id", "base_id", "created_at", "logical_bytes", "stored_bytes",
                 "changed_pages", "page_count"}


def test_backupctl_end_to_end(installation, daemon_for):
    inst = installation(demo="small", big="big", compression_level=9)
    inst.sources["ghost"] = "no-such.db"  # a source whose database does not exist: its backups fail
    inst.write_config()
    d = daemon_for(inst).start()

    status = d.ctl_json("status")
    assert status["state"] == "running" and status["jobs"] == {"queued": 0, "waiting": 0, "running": 0}

    # backup --wait --json: the job's status and the backup's fields, flat
    first = d.ctl_json("backup", "--source", "demo", "--wait", "--tag", "e2e")
    assert first["status"] == "completed" and first["error"] is None and first["job_id"].startswith("j")
    assert BACKUP_FIELDS <= set(first), sorted(first)
    assert first["source"] == "demo" and first["strategy"] == "full" and first["tags"] == ["e2e"]
    second = d.ctl_json("backup", "--source", "demo", "--wait", "--strategy", "incremental")
    assert second["status"] == "completed" and second["strategy"] == "incremental"
    assert second["parent_id"] == first["id"]

    # ls --json is exactly what `backupd list --json` prints
    listed = d.ctl_json("ls")
    offline = subprocess.run([str(BACKUPD), "list", "-c", str(inst.config), "--json"], capture_output=True,
                             text=True, timeout=60)
    assert offline.returncode == 0, offline.stderr
    assert listed == json.loads(offline.stdout)
    assert [b["id"] for b in listed] == [first["id"], second["id"]]
    assert d.ctl_json("ls", "--source", "demo") == listed

    # restore the incremental (its chain) to a new file, then validate
    target = inst.root / "restored.db"
    restored = d.ctl_json("restore", "--source", "demo", "--backup", second["id"], "--to", str(target), "--wait")
    assert restored["status"] == "completed", restored
    assert row_count(target) == row_count(inst.db("demo"))
    report = d.ctl_json("validate", second["id"], "--level", "standard", "--wait")
    assert report["status"] == "completed" and report["verdict"] == "pass", report
    human = d.ctl("validate", first["id"], "--level", "quick", "--wait")
    assert human.returncode == 0 and "pass" in human.stdout, human

    # a job that fails: exit 1, one stderr line naming the cause; with --json the job says why
    failed = d.ctl("backup", "--source", "ghost", "--wait")
    assert failed.returncode == 1, failed
    assert failed.stderr.count("\n") == 1 and "snapshot_failed" in failed.stderr and "Traceback" not in failed.stderr
    failed_json = d.ctl("--json", "backup", "--source", "ghost", "--wait")
    assert failed_json.returncode == 1
    assert json.loads(failed_json.stdout)["status"] == "failed"
    assert json.loads(failed_json.stdout)["error"]["code"] == "snapshot_failed"
    over = d.ctl("restore", "--source", "demo", "--backup", first["id"], "--to", str(target), "--wait")
    assert over.returncode == 2 and "already exists" in over.stderr, over  # refused before a job is queued
    unknown = d.ctl("backup", "--source", "nope", "--wait")
    assert unknown.returncode == 2 and "unknown source" in unknown.stderr, unknown

    # schedule add / ls / stats / rm
    added = d.ctl_json("schedule", "add", "nightly", "--source", "demo", "--cron", "15 3 * * *",
                       "--strategy", "incremental", "--description", "added by the e2e test")
    assert added["name"] == "nightly" and added["origin"] == "runtime" and added["next_run"]
    assert [s["name"] for s in d.ctl_json("schedule", "ls")] == ["nightly"]
    again = d.ctl("schedule", "add", "nightly", "--source", "demo", "--cron", "15 3 * * *")
    assert again.returncode == 1 and "exists" in again.stderr, again
    stats = d.ctl_json("schedule", "stats", "nightly")
    assert stats[0]["name"] == "nightly" and stats[0]["runs"] == 0
    assert d.ctl_json("schedule", "rm", "nightly") == {"removed": "nightly"}
    assert d.ctl_json("schedule", "ls") == []
    gone = d.ctl("schedule", "rm", "nightly")
    assert gone.returncode == 1 and "no schedule" in gone.stderr

    # status while a backup runs: it answers at once and counts the running job
    job = d.ctl_json("backup", "--source", "big")
    assert job["status"] in ("queued", "running")
    timings = []

    def running_now() -> bool:
        t = time.monotonic()
        s = d.ctl_json("status")
        timings.append(time.monotonic() - t)
        return s["jobs"]["running"] == 1

    assert wait_for(running_now, 30, interval=0.01), "the big backup never showed as running"
    during = d.ctl_json("status")
    assert during["jobs"]["running"] == 1
    shown = d.ctl_json("jobs", job["job_id"])
    assert shown["status"] == "running" and shown["kind"] == "backup", shown
    assert max(timings) < 5, timings  # a whole backupctl process; the bench measures the round trip
    finished = d.wait_job(job["job_id"], lambda j: j["status"] == "completed", 120, "completed")
    assert finished["result"]["source"] == "big"

    jobs = d.ctl_json("jobs", "--limit", "20")
    assert jobs[0]["job_id"] == job["job_id"]  # newest first
    assert {j["status"] for j in jobs} == {"completed", "failed"}
    assert [j["job_id"] for j in d.ctl_json("jobs", "--status", "failed")] == \
        [j["job_id"] for j in jobs if j["status"] == "failed"]
    human_status = d.ctl("status")
    assert human_status.returncode == 0 and "running" in human_status.stdout
    d.stop()


def test_backupctl_prune_renders_its_jobs_and_what_they_deleted(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    ids = [d.ctl_json("backup", "--source", "demo", "--strategy", "full", "--wait")["id"] for _ in range(3)]
    inst.extra = "\n[retention]\nkeep_last = 1\n"
    inst.write_config()
    assert d.ctl("reload").returncode == 0

    queued = d.ctl("prune")
    assert queued.returncode == 0, queued
    assert "{" not in queued.stdout and queued.stdout.startswith("prune of demo: job j"), queued.stdout
    d.client().job_wait(d.ctl_json("jobs", "--kind", "prune")[0]["job_id"], timeout_s=60)

    assert [b["id"] for b in d.ctl_json("ls")] == [ids[-1]]
    inst.extra = ""  # no retention while one more backup is taken
    inst.write_config()
    assert d.ctl("reload").returncode == 0
    d.ctl_json("backup", "--source", "demo", "--strategy", "full", "--wait")
    inst.extra = "\n[retention]\nkeep_last = 1\n"
    inst.write_config()
    assert d.ctl("reload").returncode == 0
    waited = d.ctl("prune", "--wait")
    assert waited.returncode == 0, waited
    lines = waited.stdout.splitlines()
    assert lines[0].startswith("prune of demo: job j") and lines[0].endswith(" completed"), lines
    assert any(line.startswith(f"  deleted {ids[-1]}") for line in lines), lines
    assert lines[-1] == "  1 to delete, 1 kept", lines
    assert "{" not in waited.stdout
    as_json = d.ctl_json("prune", "--wait")
    assert [j["kind"] for j in as_json] == ["prune"] and as_json[0]["status"] == "completed"


def test_backupctl_restore_under_a_directory_named_like_a_uri(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    backup = d.ctl_json("backup", "--source", "demo", "--wait")
    outside = inst.root / "out"
    directory = outside / "a#b?mode=ro%25"
    directory.mkdir(parents=True)
    restored = d.ctl_json("restore", "--source", "demo", "--backup", backup["id"], "--to", str(directory / "r.db"),
                          "--wait")
    assert restored["status"] == "completed", restored
    assert row_count(directory / "r.db") == row_count(inst.db("demo"))
    assert sorted(p.relative_to(outside).as_posix() for p in outside.rglob("*")) == ["a#b?mode=ro%25",
                                                                                      "a#b?mode=ro%25/r.db"]
    not_utf8 = d.ctl("restore", "--source", "demo", "--backup", backup["id"], "--to",
                     os.fsdecode(bytes(directory) + b"/\xff.db"), "--wait")
    assert not_utf8.returncode == 2 and "is not valid UTF-8" in not_utf8.stderr, not_utf8
    assert "backupd restore" in not_utf8.stderr


def test_backupctl_restores_latest_and_relative_times_on_the_daemons_clock(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    first = d.ctl_json("backup", "--source", "demo", "--wait")
    second = d.ctl_json("backup", "--source", "demo", "--wait")
    out = inst.root / "out"
    out.mkdir()
    latest = d.ctl_json("restore", "--source", "demo", "--backup", "latest", "--to", str(out / "l.db"), "--wait")
    assert latest["status"] == "completed" and latest["backup_id"] == second["id"], latest
    job = d.client().job_get(latest["job_id"])
    assert job["args"]["backup_id"] is None and job["args"]["at"].endswith("+00:00"), job["args"]  # resolved
    now = d.ctl_json("restore", "--source", "demo", "--at", "now", "--to", str(out / "n.db"), "--wait")
    assert now["backup_id"] == second["id"]
    before = d.ctl("restore", "--source", "demo", "--at", "-1h", "--to", str(out / "b.db"), "--wait")
    assert before.returncode == 1 and "no restore point" in before.stderr.lower(), before.stderr
    bad = d.ctl("restore", "--source", "demo", "--at", "-2x", "--to", str(out / "x.db"), "--wait")
    assert bad.returncode == 2 and "is not a time before now" in bad.stderr, bad.stderr
    assert first["id"] != second["id"]
    d.stop()


def test_backupd_restores_latest_and_relative_times(installation):
    inst = installation(demo="small")
    cfg = str(inst.config)
    ran = [subprocess.run([str(BACKUPD), "backup", "-c", cfg, "--source", "demo", "--json"], capture_output=True,
                          text=True) for _ in range(2)]
    ids = [json.loads(r.stdout)["id"] for r in ran]
    out = inst.root / "out"
    out.mkdir()
    for how in (["--backup", "latest"], ["--at", "now"], ["--at", "-0s"]):
        r = subprocess.run([str(BACKUPD), "restore", "-c", cfg, "--source", "demo", *how, "--to",
                            str(out / f"{how[1]}.db"), "--json"], capture_output=True, text=True)
        assert r.returncode == 0 and json.loads(r.stdout)["backup_id"] == ids[1], (how, r.stderr)
    r = subprocess.run([str(BACKUPD), "restore", "-c", cfg, "--source", "demo", "--at", "-1d", "--to",
                        str(out / "old.db")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
