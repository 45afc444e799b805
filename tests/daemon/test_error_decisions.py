"""Errors decide, in a real daemon: whether a failed scheduled backup is retried follows its error's
class (backupd/errors.py), never a list of code strings; and requests the one-shot `backupd` refuses as
bad usage (an unknown source or destination, an existing restore target) are refused by the daemon
before a job is queued, with the same code and exit code."""

from __future__ import annotations

import json
import os
import subprocess

from tests.destinations.conftest import tmpfs  # noqa: F401 - the fixture a full destination needs
from tests.servers.sshd import SshServer, running_sshd

from .harness import BIN, Daemon, schedule_table, wait_for
from .test_sftp_outage import growing_artifact_temp

EVERY_2S = "*/2 * * * * *"
FAST = {"recheck_interval": "1s"}
RETRY = {"max_attempts": 2, "base_delay": "1s", "max_delay": "1s"}


def _scheduled(**sources: str) -> dict:
    name = next(iter(sources))
    return dict(sources, daemon=FAST, schedules=[schedule_table("often", name, EVERY_2S, retry=RETRY)])


def _sftp(server: SshServer, name: str = "offsite") -> dict:
    return {"name": name, "kind": "sftp", "host": server.host, "port": server.port, "user": server.user,
            "key_file": str(server.client_key_file), "known_hosts": str(server.known_hosts),
            "path": str(server.root / "backupd")}


def _first_failure(d: Daemon, timeout: float = 60) -> tuple[dict, dict]:
    """The first job of the schedule that failed for good: its job_failed event and its wire form."""
    failed = d.wait_event("job_failed", timeout=timeout, schedule="often")
    return failed, d.client().job_get(failed["job_id"])


def test_a_full_destination_is_not_retried(installation, daemon_for, tmpfs):
    inst = installation(**_scheduled(demo="small"))
    tmpfs("size=256k", at=inst.dest)  # the 4 MiB source does not fit
    d = daemon_for(inst).start()
    failed, job = _first_failure(d)
    assert failed["attempt"] == 1 and failed["error"]["code"] == "destination_full", failed
    assert failed["error"]["retryable"] is False and "no space left" in failed["error"]["message"], failed
    assert job["status"] == "failed" and job["attempt"] == 1 and job["max_attempts"] == 2, job
    assert not d.events("job_retry_scheduled", job_id=failed["job_id"])
    d.stop()


def test_an_unusable_key_is_not_retried(installation, daemon_for):
    inst = installation(**_scheduled(demo="small"))
    d = daemon_for(inst).start()
    os.chmod(inst.root / "backup.key", 0o644)  # after the config was loaded: each job reads the key
    failed, job = _first_failure(d)
    assert failed["attempt"] == 1 and failed["error"]["code"] == "key_unusable", failed
    assert "readable by group or others" in failed["error"]["message"], failed
    assert job["status"] == "failed" and job["attempt"] == 1 and job["max_attempts"] == 2, job
    assert not d.events("job_retry_scheduled", job_id=failed["job_id"])
    d.stop()


def test_a_wrong_key_neither_fails_nor_retries_a_backup_it_starts_a_new_chain(installation, daemon_for):
    """A backup never reads with the key but to extend a chain: with another key configured the chain
    cannot grow, so the backup is a new full at the first attempt; validating the old one names wrong_key
    and is not retryable (a validation failing only on an unreachable destination is, see test_worker_outcomes)."""
    inst = installation(demo="small", daemon=FAST)
    d = daemon_for(inst).start()
    c = d.client()
    first = c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)
    assert first["status"] == "completed", first
    key = inst.root / "backup.key"
    key.write_bytes(bytes(32))  # another valid key
    os.chmod(key, 0o600)
    inst.schedules = [schedule_table("often", "demo", EVERY_2S, retry=RETRY, strategy="incremental")]
    inst.write_config()
    d.signal(1)  # SIGHUP: reload
    fired = d.wait_event("schedule_fired", timeout=30, schedule="often")
    done = c.job_wait(fired["job_id"], timeout_s=60)
    assert done["status"] == "completed" and done["attempt"] == 1, done
    assert done["result"]["strategy"] == "full" and "wrong key" in done["result"]["strategy_reason"], done
    assert not d.events("job_retry_scheduled", job_id=fired["job_id"])
    report = c.job_wait(c.validate(first["result"]["id"], level="standard")["job_id"], timeout_s=60)
    codes = {ch["details"].get("code") for ch in report["result"]["checks"] if ch["status"] == "fail"}
    assert report["status"] == "failed" and "wrong_key" in codes, report["result"]["checks"]
    # reading again with the same wrong key fails the same way: the job's error says not to retry it
    assert report["error"] == {"code": "verification_failed", "retryable": False,
                               "message": f"backup {first['result']['id']} failed standard validation"}, report
    d.stop()


def test_an_unavailable_server_is_retried_until_the_attempts_run_out(installation, daemon_for, tmp_path):
    server = SshServer(tmp_path)  # keys and a port, but no sshd: the connection is refused
    inst = installation(**_scheduled(demo="small"), destination=_sftp(server))
    d = daemon_for(inst).start()
    retry = d.wait_event("job_retry_scheduled", timeout=60)
    assert retry["attempt"] == 2 and retry["error"]["code"] == "destination_unavailable", retry
    assert retry["error"]["retryable"] is True, retry
    failed = d.wait_event("job_failed", timeout=60, job_id=retry["job_id"])
    assert failed["attempt"] == 2 and failed["error"]["code"] == "destination_unavailable", failed
    job = d.client().job_get(retry["job_id"])
    assert job["status"] == "failed" and job["attempt"] == job["max_attempts"] == 2, job
    assert [e["attempt"] for e in d.events("job_started", job_id=retry["job_id"])] == [1, 2]
    d.stop()


def test_a_dropped_connection_is_retried(installation, daemon_for):
    with running_sshd() as server:
        inst = installation(big="big", compression_level=15, destination=_sftp(server), daemon=FAST,
                            schedules=[schedule_table("often", "big", EVERY_2S, retry=RETRY, strategy="full")])
        d = daemon_for(inst).start()
        job_id = d.wait_event("schedule_fired", timeout=15, schedule="often")["job_id"]
        assert wait_for(lambda: growing_artifact_temp(server.root / "backupd"), 60), d.log_tail()
        server.stop()  # mid-upload: the daemon's connection drops
        retry = d.wait_event("job_retry_scheduled", timeout=60, job_id=job_id)
        assert retry["attempt"] == 2 and retry["error"]["code"] == "destination_unavailable", retry
        assert retry["error"]["retryable"] is True and "lost" in retry["error"]["message"], retry
        job = d.client().job_get(job_id)
        assert job["status"] in ("waiting", "running") and job["max_attempts"] == 2, job
        d.kill()


def test_every_destination_failing_is_retried_if_one_cause_is(installation, daemon_for, tmpfs, tmp_path):
    """A full local disk (not retryable) and an unreachable server (retryable): the job is retried."""
    server = SshServer(tmp_path)
    unreachable = _sftp(server)
    extra = "\n[[destinations]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in unreachable.items())
    extra += '\n[destinations.encryption]\nkey_file = "backup.key"\n'
    inst = installation(**_scheduled(demo="small"), extra=extra)
    tmpfs("size=256k", at=inst.dest)
    d = daemon_for(inst).start()
    retry = d.wait_event("job_retry_scheduled", timeout=60)
    assert retry["attempt"] == 2 and retry["error"]["retryable"] is True, retry
    assert retry["error"]["code"] in ("destination_full", "destination_unavailable"), retry
    failed = d.wait_event("job_failed", timeout=60, job_id=retry["job_id"])
    assert failed["attempt"] == 2, failed
    d.stop()


def test_bad_usage_is_refused_before_a_job_is_queued_as_one_shot(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    backup = d.ctl_json("backup", "--source", "demo", "--wait")
    existing = inst.root / "state" / "restores" / "there.db"
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(b"keep me")
    cases = [
        (["backup", "--source", "nosuch"], ["backup", "--source", "nosuch"], "unknown_source"),
        (["backup", "--source", "demo", "--destination", "nosuch"],
         ["backup", "--source", "demo", "--destination", "nosuch"], "unknown_destination"),
        (["restore", "--source", "demo", "--backup", backup["id"], "--to", str(existing)],
         ["restore", "--source", "demo", "--backup", backup["id"], "--to", str(existing)], "target_exists"),
    ]
    jobs = len(d.ctl_json("jobs"))
    for ctl_args, oneshot_args, code in cases:
        via_daemon = d.ctl("--json", *ctl_args)
        assert via_daemon.returncode == 2 and json.loads(via_daemon.stderr)["code"] == code, via_daemon
        oneshot = _backupd(*oneshot_args, "-c", str(inst.config), "--json")
        assert oneshot.returncode == 2 and json.loads(oneshot.stderr)["code"] == code, oneshot
    assert len(d.ctl_json("jobs")) == jobs, "a refused request queues nothing"
    assert existing.read_bytes() == b"keep me"
    d.stop()


def _backupd(*args: str) -> subprocess.CompletedProcess[str]:
    """The one-shot `backupd` console script, as a user runs it."""
    return subprocess.run([str(BIN / "backupd"), *args], capture_output=True, text=True, timeout=120)
