"""The metrics' docs agree with the code: docs/METRICS.md lists exactly the collector's families (name
and type), docs/alerts.yml passes promtool's check and its unit tests (tests/alerts_test.yml fires the
stale-source alert), and every query of docs/grafana-dashboard.json names metrics that exist."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from backupd.config.notifiers import NotifierConfig
from backupd.daemon.metrics import DaemonCollector
from backupd.daemon.outbox import Deliveries
from backupd.state.db import StateDB
from backupd.state.outbox import OutboxStore
from tests.promtool import promtool

ROOT = Path(__file__).resolve().parents[1]
METRIC = re.compile(r"\bbackupd_[a-z_]+")


def collected(tmp_path: Path) -> dict[str, str]:
    """Every family the collector yields (on an empty state database, with the notifiers') as exposed
    name -> type."""
    state = StateDB(tmp_path / "state.db")
    config = SimpleNamespace(notifiers=[NotifierConfig.model_validate({"name": "ops", "kind": "log"})])
    deliveries = Deliveries(lambda: config, OutboxStore(state), lambda: datetime.now(timezone.utc), lambda *a, **k: None)
    collector = DaemonCollector(tmp_path / "catalog.db", destinations=lambda: [], schedules=lambda: [],
                                jobs=lambda: {}, stale=lambda: {"app": True}, extra=[deliveries.families])
    try:
        return {f.name + ("_total" if f.type == "counter" else ""): f.type for f in collector.collect()}
    finally:
        state.close()


def documented() -> dict[str, tuple[str, set[str]]]:
    """docs/METRICS.md's table: name -> (type, labels)."""
    rows = re.findall(r"^\| `(backupd_[a-z_]+)` \| ([a-z]+) \| ([a-z_, ]*) \|", (ROOT / "docs/METRICS.md").read_text(), re.M)
    return {name: (kind, {lab.strip() for lab in labels.split(",") if lab.strip()}) for name, kind, labels in rows}


def test_metrics_doc_lists_every_family_with_its_type(tmp_path):
    assert {n: t for n, (t, _) in documented().items()} == collected(tmp_path)


def series_names(tmp_path: Path) -> set[str]:
    """The names a query may use: each family's, a histogram's series and a counter's too."""
    names = set()
    for name, kind in collected(tmp_path).items():
        names.add(name)
        if kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count")}
    return names


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    check = promtool("check", "rules", str(ROOT / "docs/alerts.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    tested = promtool("test", "rules", "alerts_test.yml", cwd=ROOT / "tests")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_alert_rules_use_only_existing_metrics(tmp_path):
    used = set(METRIC.findall((ROOT / "docs/alerts.yml").read_text().split("groups:", 1)[1]))
    assert used and used <= series_names(tmp_path)


def test_every_dashboard_query_names_existing_metrics(tmp_path):
    dash = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    queries += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    assert queries
    known = series_names(tmp_path)
    for q in queries:
        used = set(METRIC.findall(q))
        assert used and used <= known, q
