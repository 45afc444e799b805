"""The metrics, end to end on a real daemon: the control op and `backupctl metrics`, the textfile and
the HTTP listener; each passes `promtool check metrics` and follows the catalog as backups are made."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backupd.daemon.metrics import DaemonCollector, exposition, registry_of
from backupd.daemon.store import DaemonStore

from tests.promtool import check_metrics
from tests.test_metrics_docs import documented

from .harness import wait_for


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value of an exposition text, parsed by prometheus_client's own parser."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAST = "backupd_backup_last_success_timestamp_seconds"
KEY = (LAST, frozenset({"source": "demo", "destination": "local"}.items()))


def test_op_and_backupctl_metrics_follow_backups(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    c = d.client()
    before = c.metrics()
    check_metrics(before["text"])
    assert KEY not in samples(before["text"])
    assert samples(before["text"])[("backupd_build_info", frozenset({"version": c.status()["version"]}.items()))] == 1
    first = c.job_wait(c.backup_create("demo", "full")["job_id"], timeout_s=60)
    assert first["status"] == "completed"
    one = samples(c.metrics()["text"])
    assert one[("backupd_backup_runs_total", frozenset({"source": "demo", "strategy": "full",
                                                        "outcome": "completed"}.items()))] == 1
    assert one[("backupd_backup_duration_seconds_count", frozenset({"source": "demo", "strategy": "full"}.items()))] == 1
    assert one[("backupd_chain_length", KEY[1])] == 1
    second = c.job_wait(c.backup_create("demo", "incremental")["job_id"], timeout_s=60)
    assert second["status"] == "completed"
    got = c.metrics()
    two = samples(got["text"])
    assert two[KEY] > one[KEY]
    assert two[("backupd_chain_length", KEY[1])] == 2
    assert two[("backupd_backup_stored_bytes", KEY[1])] > one[("backupd_backup_stored_bytes", KEY[1])]
    table = documented()
    for name, labels in two:  # every sample carries the labels docs/METRICS.md names, and no other
        family = next(n for n in (name, re.sub(r"_(bucket|sum|count)$", "", name)) if n in table)
        assert {k for k, _ in labels} - {"le"} == table[family][1], name
    assert got["summary"][LAST] == [{"labels": {"source": "demo", "destination": "local"}, "value": two[KEY]}]
    text = d.ctl("metrics", "--prometheus")
    assert text.returncode == 0, text.stderr
    check_metrics(text.stdout)
    assert samples(text.stdout) == two | {k: v for k, v in samples(text.stdout).items() if k[0] == "backupd_jobs"}
    human = d.ctl("metrics")
    assert human.returncode == 0 and "demo" in human.stdout and "local" in human.stdout, human.stderr
    d.stop()


def test_textfile_is_written_atomically_after_jobs_and_the_listener_serves(installation, daemon_for):
    port = free_port()
    inst = installation(demo="small", extra=f'\n[monitoring]\ntextfile = "prom/backupd.prom"\n'
                                            f'listen = "127.0.0.1:{port}"\n')
    (inst.root / "prom").mkdir()
    d = daemon_for(inst).start()
    textfile = inst.root / "prom" / "backupd.prom"
    wait_for(textfile.exists, timeout=10)
    check_metrics(textfile.read_text())
    assert KEY not in samples(textfile.read_text())
    c = d.client()
    assert c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)["status"] == "completed"
    wait_for(lambda: KEY in samples(textfile.read_text()), timeout=10)  # after the job, not after 60 s
    assert sorted(p.name for p in textfile.parent.iterdir()) == ["backupd.prom"]  # no temp file left
    assert textfile.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        served = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/plain")
    check_metrics(served)
    assert samples(served)[KEY] == samples(textfile.read_text())[KEY]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert json.loads(r.read())["status"] in ("ok", "unknown", "degraded")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)
        raise AssertionError("a 404 was expected")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    d.stop()


def test_a_textfile_that_cannot_be_written_is_logged_once_and_written_once_it_can(installation, daemon_for):
    inst = installation(demo="small", extra='\n[monitoring]\ntextfile = "later/backupd.prom"\n')
    d = daemon_for(inst).start()
    d.wait_event("metrics_textfile_failed", timeout=10)
    c = d.client()
    assert c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)["status"] == "completed"
    (inst.root / "later").mkdir()
    assert c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)["status"] == "completed"
    d.wait_event("metrics_textfile_recovered", timeout=10)
    assert len(d.events("metrics_textfile_failed")) == 1
    check_metrics((inst.root / "later" / "backupd.prom").read_text())
    assert c.status()["state"] == "running"
    d.stop()


def test_the_listener_is_off_by_default(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    assert d.events("metrics_listening") == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", 9847)) != 0
    d.stop()


def test_a_taken_port_stops_the_start_with_a_config_error(installation, daemon_for):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        inst = installation(demo="small", extra=f'\n[monitoring]\nlisten = "127.0.0.1:{port}"\n')
        d = daemon_for(inst).start(wait=False)
        assert d.wait_exit() == 2
    assert f"monitoring.listen: cannot listen on 127.0.0.1:{port}" in d.log_tail(), d.log_tail()


def _run(store: DaemonStore, job_id: str, status: str, seconds: float, strategy: str | None = "full") -> None:
    start = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc) + timedelta(hours=len(job_id))
    store.save_job({"job_id": job_id, "kind": "backup", "source": "demo", "schedule": "nightly", "status": status,
                    "created_at": start.isoformat(), "started_at": start.isoformat(),
                    "finished_at": (start + timedelta(seconds=seconds)).isoformat(), "args": {"strategy": "auto"},
                    "result": {"strategy": strategy} if strategy else None})


def test_runs_and_durations_come_from_the_job_history(tmp_path):
    """Outcomes by the strategy taken (the requested one when the run never chose), durations bucketed."""
    store = DaemonStore(tmp_path / "catalog.db")
    _run(store, "j1", "completed", 0.5)
    _run(store, "j22", "completed", 70.25)
    _run(store, "j333", "failed", 3.0, strategy=None)
    store.save_job({"job_id": "j4444", "kind": "backup", "source": "demo", "status": "running",
                    "created_at": "2026-11-02T00:00:00+00:00", "started_at": "2026-11-02T00:00:00+00:00"})
    store.close()
    registry = registry_of(DaemonCollector(tmp_path / "catalog.db", destinations=lambda: [], schedules=lambda: [],
                                           jobs=lambda: {"running": 1}, stale=lambda: {}))
    text = exposition(registry)
    check_metrics(text)
    got = samples(text)

    def at(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert at("backupd_backup_runs_total", source="demo", strategy="full", outcome="completed") == 2
    assert at("backupd_backup_runs_total", source="demo", strategy="auto", outcome="failed") == 1
    assert at("backupd_backup_duration_seconds_count", source="demo", strategy="full") == 2
    assert at("backupd_backup_duration_seconds_sum", source="demo", strategy="full") == pytest.approx(70.75, abs=0.01)
    assert at("backupd_backup_duration_seconds_bucket", source="demo", strategy="full", le="1.0") == 1
    assert at("backupd_backup_duration_seconds_bucket", source="demo", strategy="full", le="60.0") == 1
    assert at("backupd_backup_duration_seconds_bucket", source="demo", strategy="full", le="300.0") == 2
    assert at("backupd_backup_last_attempt_timestamp_seconds", source="demo") == \
        datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()
    assert at("backupd_jobs", state="running") == 1
