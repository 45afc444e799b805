"""An SFTP destination in a real daemon: sshd dies in the middle of an upload and comes back. The job
retries with backoff and succeeds, the backup restores, and the dead upload leaves nothing on the server."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.servers.sshd import SshServer, running_sshd

from .harness import TEMP_SUFFIX, row_count, wait_for

SLOW = 15  # zstd level: the 32 MiB source takes a few seconds, so the upload can be caught half done
RETRY = {"max_attempts": 5, "base_delay": "1s", "max_delay": "2s"}


@pytest.fixture
def own_sshd() -> Iterator[SshServer]:
    """A server of this test's own, which it stops and starts."""
    with running_sshd() as server:
        yield server


def server_files(directory: Path) -> list[Path]:
    """Every file under `directory`, even while uploads come and go."""
    return [Path(d, f) for d, _, names in os.walk(directory) for f in names]


def growing_artifact_temp(directory: Path) -> Path | None:
    """The temp file of an artifact upload that has written bytes already, if there is one."""
    for path in server_files(directory):
        try:
            if ".bkpd." in path.name and path.name.endswith(TEMP_SUFFIX) and path.stat().st_size > 0:
                return path
        except FileNotFoundError:  # renamed into place meanwhile
            continue
    return None


def test_sshd_stopped_mid_upload_the_job_retries_and_succeeds_and_leaves_no_partial_file(
        installation, daemon_for, own_sshd):
    remote = own_sshd.root / "backupd"
    inst = installation(big="big", compression_level=SLOW, destination={
        "name": "offsite", "kind": "sftp", "host": own_sshd.host, "port": own_sshd.port, "user": own_sshd.user,
        "key_file": str(own_sshd.client_key_file), "known_hosts": str(own_sshd.known_hosts), "path": str(remote)})
    assert inst.dest == remote
    d = daemon_for(inst).start()
    c = d.client()
    # A scheduled job (manual ones are not retried): once a day, a second or two from now.
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    added = c.schedule_add("nightly", "big", f"{due.second} {due.minute} {due.hour} * * *", strategy="full",
                           retry=RETRY)
    assert datetime.fromisoformat(added["next_run"]) == due, added
    job_id = d.wait_event("schedule_fired", timeout=15, schedule="nightly")["job_id"]

    temp = wait_for(lambda: growing_artifact_temp(remote), 60)
    assert temp, f"no artifact upload appeared on the server:\n{d.log_tail()}"
    running = c.job_get(job_id)
    assert running["status"] == "running" and running["attempt"] == 1, running
    own_sshd.stop()  # the server and every session die: the daemon's connection drops mid-upload

    scheduled = d.wait_event("job_retry_scheduled", timeout=30, job_id=job_id)
    assert scheduled["attempt"] == 2 and scheduled["error"]["code"] == "destination_unavailable", scheduled
    assert f"connection to 127.0.0.1 port {own_sshd.port} lost" in scheduled["error"]["message"], scheduled
    assert temp.exists()  # what the dead upload left: nobody could remove it while the server was down
    own_sshd.start()  # same port, same host key

    done = c.job_wait(job_id, timeout_s=60)
    assert done["status"] == "completed" and done["attempt"] >= 2 and done["error"] is None, done
    starts = d.events("job_started", job_id=job_id)
    assert [e["attempt"] for e in starts] == list(range(1, done["attempt"] + 1))
    assert not d.events("job_failed", job_id=job_id)
    dead_key = temp.relative_to(remote).as_posix()
    assert any(dead_key in e["temp_files"] for e in d.events("leftovers_removed", destination="offsite")), \
        d.events("leftovers_removed")

    # Nothing half-written stays on the server: one artifact and its sidecar, no temp or dot file.
    names = sorted(p.relative_to(remote).as_posix() for p in server_files(remote))
    assert not [n for n in names if n.endswith(TEMP_SUFFIX) or Path(n).name.startswith(".")], names
    backup_id = done["result"]["id"]
    assert names == [f"big/{backup_id}.bkpd", f"big/{backup_id}.manifest"], names

    # The backup restores from the server and is intact.
    target = inst.root / "restored.db"
    restored = c.job_wait(c.restore_create("big", target, backup_id=backup_id)["job_id"], timeout_s=60)
    assert restored["status"] == "completed", restored
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert row_count(target) == row_count(inst.db("big"))
    d.stop()
