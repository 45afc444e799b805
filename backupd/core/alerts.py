"""Alert rules: from a schedule's run history, a destination's usage and the sources' freshness, the set
of problems active now; and the transitions between two such sets, so each is raised once and cleared once.

Pure. An `Alert` is keyed by its code and subject (`source_stale:kb`): the same condition seen again
is the same alert, so `transitions(active, active)` is always empty. `severity` says what it makes the
daemon's health: `error` unhealthy, `warning` degraded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from backupd.core.freshness import Freshness

ERROR, WARNING = "error", "warning"
SOURCE, SCHEDULE, DESTINATION = "source", "schedule", "destination"


@dataclass(frozen=True)
class Alert:
    """One active problem, about one source, schedule or destination (`subject_kind`, `subject`)."""

    code: str
    subject_kind: str
    subject: str
    message: str
    severity: str

    @property
    def key(self) -> str:
        """Stable across evaluations: the code and the subject."""
        return f"{self.code}:{self.subject_kind}:{self.subject}"

    def problem(self) -> dict[str, str]:
        """As `health` names it: code, message and the subject."""
        return {"code": self.code, "message": self.message, self.subject_kind: self.subject}


@dataclass(frozen=True)
class Run:
    """One finished (or, `running`, still running) run of a schedule: failed or not, and how long it took."""

    failed: bool
    duration_s: float | None
    running: bool = False


@dataclass(frozen=True)
class Thresholds:
    """`[alerts]`: each rule is off when its threshold is None."""

    failure_rate: float | None = None
    window: int = 5
    duration_factor: float | None = None
    storage_usage: float | None = None


def source_alerts(source: str, fresh: Freshness) -> list[Alert]:
    """`source_stale` when the source has no recent enough restorable backup."""
    if not fresh.stale:
        return []
    if fresh.newest is None:
        message = "no restorable backup on enough destinations"
    else:
        message = f"newest restorable backup is {_dur(fresh.age_s or 0.0)} old (max_age {_dur(fresh.max_age_s)})"
    return [Alert("source_stale", SOURCE, source, message, ERROR)]


def schedule_alerts(schedule: str, runs: Sequence[Run], t: Thresholds) -> list[Alert]:
    """The alerts of a schedule whose runs, newest first, are `runs`."""
    out: list[Alert] = []
    finished = [r for r in runs if not r.running]
    if finished and finished[0].failed:
        out.append(Alert("schedule_last_run_failed", SCHEDULE, schedule, "its last run failed", ERROR))
    window = finished[: t.window]
    if t.failure_rate is not None and window:
        rate = sum(r.failed for r in window) / len(window)
        if rate >= t.failure_rate:
            out.append(Alert("schedule_failing", SCHEDULE, schedule,
                             f"{sum(r.failed for r in window)} of its last {len(window)} runs failed", WARNING))
    if t.duration_factor is not None and runs and runs[0].duration_s is not None:
        earlier = [r.duration_s for r in runs[1:] if not r.failed and not r.running and r.duration_s is not None]
        earlier = earlier[: t.window]
        if earlier:
            mean = sum(earlier) / len(earlier)
            if runs[0].duration_s > t.duration_factor * mean:
                verb = "is running for" if runs[0].running else "took"
                out.append(Alert("run_too_long", SCHEDULE, schedule,
                                 f"its latest run {verb} {_dur(runs[0].duration_s)}, over {t.duration_factor:g}x"
                                 f" its mean of {_dur(mean)}", WARNING))
    return out


def storage_alerts(destination: str, used_bytes: int, free_bytes: int | None, t: Thresholds) -> list[Alert]:
    """`storage_nearly_full` when backups take more than `storage_usage` of the space they have there
    (used + free)."""
    if t.storage_usage is None or free_bytes is None or used_bytes + free_bytes <= 0:
        return []
    share = used_bytes / (used_bytes + free_bytes)
    if share < t.storage_usage:
        return []
    return [Alert("storage_nearly_full", DESTINATION, destination,
                  f"backups use {share:.0%} of the space there (threshold {t.storage_usage:.0%})", WARNING)]


def transitions(previous: Mapping[str, Alert], current: Iterable[Alert]) -> tuple[list[Alert], list[Alert]]:
    """(raised, cleared): the alerts of `current` not active before, and the ones active before that are
    gone. An alert whose message changed (the age grew) is neither."""
    now = {a.key: a for a in current}
    raised = [a for k, a in now.items() if k not in previous]
    cleared = [a for k, a in previous.items() if k not in now]
    return raised, cleared


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
