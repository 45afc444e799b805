"""journald reads a line's priority from its `<N>` prefix: the real daemon, its stdout a file that
`JOURNAL_STREAM` names (as systemd sets it), prefixes every line; a failed job's line carries `<3>`, so
`journalctl -p err` lists it. Any other stdout (a plain file here) gets the lines unchanged."""

from __future__ import annotations

import json
import os

from .harness import Daemon


def _failed_backup(d: Daemon, inst) -> str:
    os.rename(inst.db("demo"), inst.db("demo").with_name("demo.db.away"))  # the snapshot fails
    c = d.client()
    job = c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)
    assert job["status"] == "failed", job
    d.stop()
    return d.log_path().read_text()


def test_a_failed_job_carries_priority_3_on_the_journal_stream(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst)
    log = d.log_path(1)
    log.touch()  # the daemon's stdout, opened again (same inode) by start()
    st = os.stat(log)
    d.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    d.start()
    lines = _failed_backup(d, inst).splitlines()
    assert lines and all(line[:3] in ("<7>", "<6>", "<4>", "<3>", "<2>") for line in lines), lines[:5]
    events = [(line[:3], json.loads(line[3:])) for line in lines]
    failed = [p for p, e in events if e["event"] == "job_failed"]
    assert failed == ["<3>"], events
    assert [p for p, e in events if e["event"] == "daemon_ready"] == ["<6>"]
    assert all(p == {"info": "<6>", "warning": "<4>", "error": "<3>"}[e["level"]] for p, e in events)


def test_no_prefix_elsewhere(installation, daemon_for):
    """JOURNAL_STREAM set but naming another file (as when stdout was redirected): no prefix."""
    inst = installation(demo="small")
    other = os.stat(inst.config)
    d = daemon_for(inst, env={"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"}).start()
    lines = _failed_backup(d, inst).splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines[:5]
    assert any(json.loads(line)["event"] == "job_failed" for line in lines)
