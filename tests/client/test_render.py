"""Human output: tables, the progress line, and one-line summaries of finished jobs."""

from __future__ import annotations

import io

from backupd_client import render

JOB = {"job_id": "j1", "kind": "backup", "source": "app", "status": "running", "priority": "normal",
       "schedule": None, "created_at": "2026-11-26T14:30:00.123456+01:00", "started_at": None,
       "finished_at": None, "attempt": 1, "max_attempts": 3, "reason": None,
       "progress": {"phase": "pages", "done_bytes": 3 << 20, "total_bytes": 8 << 20, "percent": 37.5,
                    "rate": 12.5 * 2**20, "eta_s": 0.4}, "result": None, "error": None}


def test_table_aligns_columns_and_never_breaks_a_row():
    rows = [JOB, {**JOB, "job_id": "j22", "source": "multi\nline", "status": "queued", "reason": "window"}]
    lines = render.table(rows, render.JOB_COLUMNS).splitlines()
    assert lines[0].split() == ["JOB", "KIND", "SOURCE", "STATUS", "PROGRESS", "CREATED", "SCHEDULE"]
    assert len(lines) == 3
    assert lines[1].index("backup") == lines[2].index("backup") == lines[0].index("KIND")
    assert "38%" in lines[1] and "2026-11-26 13:30:00Z" in lines[1] and "multi line" in lines[2]
    assert render.table([], render.JOB_COLUMNS) == ""


def test_progress_line_and_bar():
    line = render.progress_line(JOB, width=8)
    assert line.startswith("[###-----]") and " 37.5%" in line and "pages" in line and "12.5 MiB/s" in line
    assert render.progress_line({**JOB, "status": "waiting", "reason": "blackout window"}) == \
        "waiting: blackout window"
    no_percent = {**JOB, "progress": {"done_bytes": 1, "total_bytes": 4}}
    assert "25.0%" in render.progress_line(no_percent)
    out = io.StringIO()
    bar = render.ProgressBar(out)
    bar.update(JOB)
    bar.clear()
    assert out.getvalue().startswith("\r[") and out.getvalue().endswith("\r\033[K")


def test_summaries_of_finished_jobs():
    backup = {**JOB, "status": "completed", "result": {"id": "b1", "strategy": "incremental", "changed_pages": 12,
                                                      "page_count": 1000, "stored_bytes": 5000}}
    assert render.job_summary(backup) == "backup b1 (incremental): 12 of 1000 pages, stored 4.9 KiB"
    restore = {**JOB, "kind": "restore", "result": {"backup_id": "b1", "path": "/x.db", "gap_s": 30.2,
                                                  "chain": ["a", "b1"]}}
    assert render.job_summary(restore) == "restored b1 (30s before the asked time) to /x.db (chain of 2)"
    assert render.job_summary({**JOB, "result": None}) == ""
    detail = render.job_detail({**backup, "error": {"code": "destination_unavailable", "message": "sftp down"}})
    assert "attempt 1 of 3" in detail and "destination_unavailable: sftp down" in detail and "backup b1" in detail


def test_small_formatters():
    assert [render.human_size(n) for n in (None, 5, 2048, 3 << 30)] == ["-", "5 B", "2.0 KiB", "3.0 GiB"]
    assert [render.human_duration(s) for s in (None, 2.5, 75, 7300, 90000)] == ["-", "2.5s", "1m15s", "2h01m",
                                                                              "1d01h"]
    assert render.short_time("not a time") == "not a time"
    assert render.ratio(0.975) == "98%" and render.ratio(None) == "-"
    assert render.schedule_state({"enabled": True, "paused": True}) == "paused"
    plan = {"delete": [{"id": "b1", "reason": "older than 30 days"}], "keep": ["b2"], "reasons": {"b2": "last 1"}}
    assert render.plan_text(plan, dry_run=True).splitlines() == [
        "would delete b1: older than 30 days", "keep b2: last 1", "dry run: 1 to delete, 1 kept"]


def test_event_line_names_type_source_job_and_error_and_says_when_events_were_dropped():
    line = render.event_line({"at": "2026-12-04T03:00:00+00:00", "type": "backup.failed", "source": "app",
                              "job_id": "j1", "message": "no such table", "error_code": "snapshot_failed",
                              "dropped": 3, "destinations": []})
    assert "backup.failed" in line and "source=app" in line and "job_id=j1" in line
    assert "no such table (snapshot_failed)" in line and "[3 earlier events dropped]" in line
    dest = render.event_line({"type": "destination.unhealthy", "destinations": ["usb"], "dropped": 0})
    assert "destination=usb" in dest and "dropped" not in dest
