"""The daemon's Prometheus metrics: a collector that reads everything at scrape time.

`DaemonCollector` reads the catalog and job history (`state.figures`) and the daemon's live state
(destination health from the monitor's cache, schedules' next runs, the supervisor's job counts) each
time it is collected; it keeps no counter of its own, so a restart loses nothing. Labels come from
config names only (source, destination, schedule, strategy, outcome, state), never a backup id.
docs/METRICS.md lists every family (a test keeps the two in sync). Families that other parts of the
daemon own (freshness, notifications) are added through `extra`: callables returning their families.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from backupd import __version__
from backupd.core.vocab import HealthStatus
from backupd.state.db import StateDB
from backupd.state.figures import Figures

DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0)
_UP = {HealthStatus.OK: 1.0, HealthStatus.DEGRADED: 1.0, HealthStatus.UNHEALTHY: 0.0}


class DaemonCollector(Collector):
    """Every backupd_* family, read at collect time from the state database at `state_path` and the
    callables giving the live state: `destinations` (the health monitor's snapshot), `schedules`
    (ScheduleBook.list()), `jobs` (Supervisor.counts()) and `stale` (Watchdog.stale_sources())."""

    def __init__(self, state_path: Path, *, destinations: Callable[[], list[dict[str, Any]]],
                 schedules: Callable[[], list[dict[str, Any]]], jobs: Callable[[], dict[str, int]],
                 stale: Callable[[], dict[str, bool]], extra: Iterable[Callable[[], Iterable[Metric]]] = ()):
        self._state_path = state_path
        self._destinations, self._schedules, self._jobs, self._stale = destinations, schedules, jobs, stale
        self._extra = tuple(extra)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("backupd_build_info", "The running backupd's version (always 1).", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        db = StateDB(self._state_path)  # a connection per scrape: scrapes come from several threads
        try:
            yield from _catalog_families(Figures(db))
        finally:
            db.close()
        yield from self._live_families()
        for family in self._extra:
            yield from family()

    def _live_families(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("backupd_destination_up", "1 when the destination's latest probe reached it.",
                               labels=["destination"])
        free = GaugeMetricFamily("backupd_destination_free_bytes", "Free space the latest probe found.",
                                 labels=["destination"])
        used = GaugeMetricFamily("backupd_destination_used_bytes", "Bytes the catalog records stored there.",
                                 labels=["destination"])
        for d in self._destinations():
            if d["status"] in _UP:
                up.add_metric([d["name"]], _UP[d["status"]])
            if d.get("free_bytes") is not None:
                free.add_metric([d["name"]], float(d["free_bytes"]))
            used.add_metric([d["name"]], float(d.get("used_bytes") or 0))
        yield from (up, free, used)
        nxt = GaugeMetricFamily("backupd_schedule_next_run_timestamp_seconds",
                                "When the schedule fires next (absent while paused or disabled).", labels=["schedule"])
        for s in self._schedules():
            if s.get("next_run"):
                nxt.add_metric([s["name"]], datetime.fromisoformat(s["next_run"]).timestamp())
        yield nxt
        jobs = GaugeMetricFamily("backupd_jobs", "Jobs of the daemon now in each unfinished state.", labels=["state"])
        for state, n in self._jobs().items():
            jobs.add_metric([str(state)], float(n))
        yield jobs
        stale = GaugeMetricFamily("backupd_source_stale", "1 while the source has no restorable backup within its "
                                  "max_age (0 when fresh or without a max_age).", labels=["source"])
        for source, is_stale in sorted(self._stale().items()):
            stale.add_metric([source], 1.0 if is_stale else 0.0)
        yield stale


def _catalog_families(fig: Figures) -> Iterator[Metric]:
    sd = ["source", "destination"]
    last = GaugeMetricFamily("backupd_backup_last_success_timestamp_seconds",
                             "Creation time of the newest backup stored on the destination.", labels=sd)
    stored = GaugeMetricFamily("backupd_backup_stored_bytes", "Bytes of the source's copies on the destination.",
                               labels=sd)
    chain = GaugeMetricFamily("backupd_chain_length", "Backups in the newest chain on the destination, its full"
                              " included (what a restore of the newest point reads).", labels=sd)
    verified = GaugeMetricFamily("backupd_verification_last_success_timestamp_seconds",
                                 "Newest successful validation of a copy of the source there.", labels=sd)
    for c in fig.copies():
        key = [c["source"], c["destination"]]
        last.add_metric(key, c["last_success"])
        stored.add_metric(key, float(c["stored_bytes"]))
        chain.add_metric(key, float(c["chain_length"]))
        if c["verified"] is not None:
            verified.add_metric(key, c["verified"])
    yield from (last, stored, chain, verified)
    logical = GaugeMetricFamily("backupd_backup_logical_bytes", "Size of the source database as of its newest backup.",
                                labels=["source"])
    for source, n in fig.logical_bytes().items():
        logical.add_metric([source], float(n))
    yield logical
    attempt = GaugeMetricFamily("backupd_backup_last_attempt_timestamp_seconds",
                                "When the source's newest backup job started, whatever its outcome.", labels=["source"])
    for source, at in fig.last_attempts().items():
        attempt.add_metric([source], at)
    yield attempt
    runs = CounterMetricFamily("backupd_backup_runs", "Finished backup jobs in the job history, by outcome.",
                               labels=["source", "strategy", "outcome"])
    for source, strategy, outcome, n in fig.runs():
        runs.add_metric([source, strategy, outcome], float(n))
    yield runs
    hist = HistogramMetricFamily("backupd_backup_duration_seconds", "Wall time of the finished backup jobs in the"
                                 " job history.", labels=["source", "strategy"])
    for source, strategy, counts, n, total in fig.durations(DURATION_BUCKETS):
        buckets = [(floatToGoString(b), float(k)) for b, k in zip(DURATION_BUCKETS, counts)] + [("+Inf", float(n))]
        hist.add_metric([source, strategy], buckets, total)
    yield hist


def registry_of(collector: DaemonCollector) -> CollectorRegistry:
    """A registry holding only `collector` (no process or platform collectors: the text stays ours)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> str:
    """The text exposition format (version 0.0.4) of everything in `registry`."""
    return generate_latest(registry).decode()


def summary(registry: CollectorRegistry) -> dict[str, Any]:
    """The samples as `{family: [{"labels": {...}, "value": v}, ...]}`, histogram series by sample name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for family in registry.collect():
        for s in family.samples:
            out.setdefault(s.name, []).append({"labels": dict(s.labels), "value": s.value})
    return out
