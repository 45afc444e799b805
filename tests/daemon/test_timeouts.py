"""Job timeouts in a real daemon. The source is made to hang the way a hard-mounted share that stopped
answering does: its path is a FIFO nobody writes, so opening it blocks in the kernel, where the job
cannot even notice a cancel. Before timeouts such a job held its source's lock forever. Now it is
cancelled at its timeout (killed after `cancel_grace`), ends `timed_out`, is retried per its policy,
leaves nothing on the destination, and the next backup of the source runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from .harness import Installation, wait_for

FAST = {"cancel_grace": "1s", "recheck_interval": "1s"}


@contextmanager
def hung_source(inst: Installation, source: str) -> Iterator[None]:
    """While inside, opening the source's database blocks forever."""
    path = inst.db(source)
    aside = path.with_name(path.name + ".aside")
    os.rename(path, aside)
    os.mkfifo(path)
    try:
        yield
    finally:
        os.unlink(path)
        os.rename(aside, path)


def test_a_hung_scheduled_backup_times_out_is_retried_and_frees_its_source(installation, daemon_for):
    inst = installation(demo="small", daemon={**FAST, "job_timeout": "1h"})  # the schedule's timeout wins
    d = daemon_for(inst).start()
    c = d.client()
    with hung_source(inst, "demo"):
        due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
        added = c.schedule_add("hourly", "demo", f"{due.second} {due.minute} {due.hour} * * *", strategy="full",
                               timeout="2s", retry={"max_attempts": 2, "base_delay": "1s", "max_delay": "1s"})
        assert added["timeout_s"] == 2.0
        job_id = d.wait_event("schedule_fired", timeout=15, schedule="hourly")["job_id"]
        job = d.wait_job(job_id, lambda j: j["status"] not in ("queued", "waiting", "running"), 60, "finished")
    assert job["status"] == "timed_out" and job["error"]["code"] == "timed_out", job
    assert (job["attempt"], job["max_attempts"], job["timeout_s"]) == (2, 2, 2.0)
    assert [e["attempt"] for e in d.events("job_timeout_reached", job_id=job_id)] == [1, 2]
    assert len(d.events("job_retry_scheduled", job_id=job_id)) == 1
    assert len(d.events("job_timed_out", job_id=job_id)) == 1
    assert c.schedule_stats("hourly")[0]["failed"] == 1
    after = c.backup_create("demo", strategy="full")
    assert c.job_wait(after["job_id"], timeout_s=60)["status"] == "completed"
    assert inst.leftovers() == ([], [])
    d.stop()


def test_daemon_job_timeout_bounds_a_manual_backup(installation, daemon_for):
    inst = installation(demo="small", daemon={**FAST, "job_timeout": "2s"})
    d = daemon_for(inst).start()
    c = d.client()
    with hung_source(inst, "demo"):
        job = c.backup_create("demo")
        done = c.job_wait(job["job_id"], timeout_s=60)
    assert done["status"] == "timed_out" and done["attempt"] == 1, done  # [daemon.retry]: no retry by default
    r = d.ctl("jobs", "--status", "timed_out")
    assert r.returncode == 0 and job["job_id"] in r.stdout, r
    assert c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)["status"] == "completed"
    assert inst.leftovers() == ([], []) and len(inst.manifests()) == 1
    d.stop()


def test_a_backup_that_overruns_its_timeout_stops_at_once_and_leaves_no_temp_file(installation, daemon_for):
    """A job that is slow rather than blocked notices the cancel at its next progress report: it
    aborts its uploads itself, so not even a temp file is left for the next run to remove."""
    inst = installation(big="big", compression_level=19,
                        daemon={"job_timeout": "2s", "cancel_grace": "60s", "recheck_interval": "1s"})
    d = daemon_for(inst).start()
    c = d.client()
    job = c.backup_create("big", strategy="full")
    assert wait_for(lambda: inst.leftovers()[0], 30), "no temp artifact appeared while the backup ran"
    done = c.job_wait(job["job_id"], timeout_s=60)
    assert done["status"] == "timed_out", done
    assert inst.leftovers() == ([], []) and inst.manifests() == []
    ran = datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["started_at"])
    assert ran < timedelta(seconds=20), f"ran {ran}: the worker was killed, it did not stop by itself"
    d.stop()
