"""`backupctl metrics`: the summary as a person reads it."""

from __future__ import annotations

from backupd_client.render_metrics import metrics_text


def _s(value: float, **labels: str) -> dict:
    return {"labels": labels, "value": value}


def test_metrics_text_shows_each_source_and_destination():
    summary = {
        "backupd_backup_last_success_timestamp_seconds": [_s(1000.0, source="app", destination="usb")],
        "backupd_backup_runs_total": [_s(3, source="app", strategy="full", outcome="completed"),
                                      _s(1, source="app", strategy="auto", outcome="failed"),
                                      _s(2, source="app", strategy="auto", outcome="skipped")],
        "backupd_backup_duration_seconds_count": [_s(3, source="app", strategy="full")],
        "backupd_backup_duration_seconds_sum": [_s(90.0, source="app", strategy="full")],
        "backupd_backup_stored_bytes": [_s(2 * 2**20, source="app", destination="usb")],
        "backupd_backup_logical_bytes": [_s(8 * 2**20, source="app")],
        "backupd_destination_up": [_s(0, destination="usb")],
        "backupd_destination_used_bytes": [_s(2 * 2**20, destination="usb")],
        "backupd_jobs": [_s(1, state="running")],
    }
    text = metrics_text(summary, now=1000.0 + 3600)
    app = next(line for line in text.splitlines() if line.startswith("app"))
    assert app.split() == ["app", "1h00m", "ago", "3", "1", "30s", "2.0", "MiB", "8.0", "MiB"]
    usb = next(line for line in text.splitlines() if line.startswith("usb"))
    assert usb.split() == ["usb", "no", "-", "2.0", "MiB"]
    assert text.endswith("jobs: 1 running")


def test_metrics_text_of_a_fresh_daemon():
    assert metrics_text({}, now=0) == "jobs: none"
