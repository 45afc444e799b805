"""The dispatch gate: may a pending job start now, wait, or be given up? A pure decision.

`decide(request, running, load, now, global_max)` applies these rules in order; the first that
applies decides, and every reason names the rule and the values:

1. Skip: maintenance windows are configured, the job has been held (`held_since`), a maintenance
   window was open at some point since then, and none is open now: its window closed before it
   could start.
2. Hold until the blackout ends: `now` is inside a blackout window. Never bypassed. (Skip at once
   if the blackout windows cover the whole week: it never ends.)
3. Hold: the source already has a job running (one job per source). Never bypassed.
4. Hold until the next maintenance window opens: maintenance windows are configured and none is
   open. (Skip at once if none ever opens.)
5. Hold: `running.total` has reached the daemon's `global_max`, or the schedule's own
   `max_concurrent_jobs` (which also counts every running job, not only this schedule's).
6. Load: cpu_percent > max_cpu_percent, load_per_core > max_load_per_core, or free_memory <
   min_free_memory. Priority "high" dispatches anyway, and so does a stale source (no good
   backup yet, or the last one older than max_staleness_s); the Dispatch note says which limit
   was ignored and why. Otherwise Hold. A `Load` value of None (not measured) checks nothing.
7. Dispatch.

Hold limit: a Hold turns into a Skip once the job has waited max_hold_s since held_since, or once
`now` reaches `deadline` (e.g. the schedule's next fire time), whichever comes first. The caller
keeps `held_since` (the time of the first Hold) and passes it back on each re-check. A hold whose
known end (`Hold.until`) lies past the limit is still a Hold, not an early Skip: the job is seen
waiting, with its reason, and conditions may change before the limit (a reload, a window edit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from backupd.core.units import format_duration, format_size
from backupd.core.vocab import Priority
from backupd.core.windows import Window, window_state

__all__ = ["Conditions", "Decision", "Dispatch", "Hold", "JobRequest", "Load", "Running", "Skip", "decide"]

DEFAULT_MAX_HOLD_S = 6 * 3600.0
_UTC = timezone.utc


@dataclass(frozen=True)
class Conditions:
    """When a schedule's jobs may start; windows are read on the wall clock of `timezone` (IANA name)."""

    blackout: tuple[Window, ...] = ()
    maintenance: tuple[Window, ...] = ()
    timezone: str = "UTC"
    max_cpu_percent: float | None = None
    max_load_per_core: float | None = None
    min_free_memory: int | None = None  # bytes
    max_concurrent_jobs: int | None = None  # running jobs of any schedule or source


@dataclass(frozen=True)
class JobRequest:
    source: str
    priority: Priority = Priority.NORMAL
    conditions: Conditions = Conditions()
    max_staleness_s: float | None = None
    last_good_backup_at: datetime | None = None
    held_since: datetime | None = None  # first time the gate held this job; None if never held


@dataclass(frozen=True)
class Load:
    """A sample of the machine's load; None for a value that was not measured."""

    cpu_percent: float | None = None
    load_per_core: float | None = None
    free_memory: int | None = None  # bytes


@dataclass(frozen=True)
class Running:
    total: int = 0
    sources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Dispatch:
    note: str  # "conditions met", or which load limit was ignored and why


@dataclass(frozen=True)
class Hold:
    reason: str
    until: datetime | None  # when the hold is known to end (a window boundary); None: re-check later


@dataclass(frozen=True)
class Skip:
    reason: str


Decision = Dispatch | Hold | Skip


def decide(
    request: JobRequest,
    running: Running,
    load: Load | None,
    now: datetime,
    global_max: int,
    *,
    max_hold_s: float | None = DEFAULT_MAX_HOLD_S,
    deadline: datetime | None = None,
) -> Decision:
    """Dispatch, Hold or Skip `request` at `now` (aware); see the module docstring for the rules.

    >>> t = datetime(2024, 3, 4, 12, tzinfo=timezone.utc)
    >>> decide(JobRequest("kb"), Running(1, frozenset({"kb"})), None, t, 2)
    Hold(reason="source 'kb' already has a job running (one job per source)", until=None)
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime (got {now!r})")
    conditions = request.conditions
    zone = ZoneInfo(conditions.timezone)
    limit = _hold_limit(request, now, max_hold_s, deadline)

    maintenance = window_state(now, conditions.maintenance, zone) if conditions.maintenance else None
    if maintenance is not None and not maintenance.inside and request.held_since is not None:
        since = window_state(request.held_since, conditions.maintenance, zone)
        if since.inside or (since.next_start is not None and _utc(since.next_start) <= _utc(now)):
            window = since.window
            return Skip(
                f"maintenance window {window} ({conditions.timezone}) closed before the job could start"
                f" (held since {_show(request.held_since, zone)})"
            )

    blackout = window_state(now, conditions.blackout, zone) if conditions.blackout else None
    if blackout is not None and blackout.inside:
        where = f"blackout window {blackout.window} ({conditions.timezone})"
        if blackout.ends_at is None:
            return Skip(f"{where}: blackout windows cover the whole week")
        return _hold(f"in {where} until {_show(blackout.ends_at, zone)}", blackout.ends_at, request, now, limit)

    if request.source in running.sources:
        reason = f"source {request.source!r} already has a job running (one job per source)"
        return _hold(reason, None, request, now, limit)

    if maintenance is not None and not maintenance.inside:
        if maintenance.next_start is None:
            return Skip(f"maintenance windows ({conditions.timezone}) never open")
        reason = (
            f"outside maintenance windows ({conditions.timezone}); next opens {_show(maintenance.next_start, zone)}"
            f" ({maintenance.window})"
        )
        return _hold(reason, maintenance.next_start, request, now, limit)

    jobs = f"{running.total} job{'' if running.total == 1 else 's'} running"
    if running.total >= global_max:
        return _hold(f"{jobs}, max_concurrent_jobs {global_max} (daemon)", None, request, now, limit)
    if conditions.max_concurrent_jobs is not None and running.total >= conditions.max_concurrent_jobs:
        reason = f"{jobs}, max_concurrent_jobs {conditions.max_concurrent_jobs} (schedule)"
        return _hold(reason, None, request, now, limit)

    exceeded = _load_problems(conditions, load)
    if exceeded:
        if request.priority == Priority.HIGH:
            return Dispatch(f"running despite load (priority high): {exceeded}")
        stale = _staleness(request, now)
        if stale is not None:
            return Dispatch(f"running despite load: {stale}: {exceeded}")
        return _hold(exceeded, None, request, now, limit)
    return Dispatch("conditions met")


def _hold_limit(
    request: JobRequest, now: datetime, max_hold_s: float | None, deadline: datetime | None
) -> tuple[datetime, str] | None:
    """The instant a hold turns into a skip, with the rule's name; None for no limit."""
    limits = []
    if max_hold_s is not None:
        held_since = request.held_since if request.held_since is not None else now
        limits.append((_utc(held_since) + timedelta(seconds=max_hold_s), f"max_hold {format_duration(max_hold_s)}"))
    if deadline is not None:
        limits.append((_utc(deadline), f"deadline {deadline.isoformat()}"))
    return min(limits, key=lambda item: item[0]) if limits else None


def _hold(
    reason: str, until: datetime | None, request: JobRequest, now: datetime, limit: tuple[datetime, str] | None
) -> Hold | Skip:
    if limit is not None:
        at, rule = limit
        if _utc(now) >= at:
            held = format_duration((_utc(now) - _utc(request.held_since or now)).total_seconds())
            return Skip(f"held {held}, reached {rule}: {reason}")
    return Hold(reason, until)


def _load_problems(conditions: Conditions, load: Load | None) -> str:
    if load is None:
        return ""
    problems = []
    if conditions.max_cpu_percent is not None and load.cpu_percent is not None:
        if load.cpu_percent > conditions.max_cpu_percent:
            problems.append(f"cpu {load.cpu_percent:g}% > max_cpu_percent {conditions.max_cpu_percent:g}")
    if conditions.max_load_per_core is not None and load.load_per_core is not None:
        if load.load_per_core > conditions.max_load_per_core:
            problems.append(
                f"load per core {load.load_per_core:.2f} > max_load_per_core {conditions.max_load_per_core:g}"
            )
    if conditions.min_free_memory is not None and load.free_memory is not None:
        if load.free_memory < conditions.min_free_memory:
            free, minimum = format_size(load.free_memory), format_size(conditions.min_free_memory)
            problems.append(f"free memory {free} < min_free_memory {minimum}")
    return "; ".join(problems)


def _staleness(request: JobRequest, now: datetime) -> str | None:
    """Why the source counts as stale (so load limits are ignored), or None."""
    if request.max_staleness_s is None:
        return None
    allowed = format_duration(request.max_staleness_s)
    if request.last_good_backup_at is None:
        return f"no good backup yet (max_staleness {allowed})"
    age = (_utc(now) - _utc(request.last_good_backup_at)).total_seconds()
    if age > request.max_staleness_s:
        return f"last good backup is {format_duration(age)} old (max_staleness {allowed})"
    return None


def _show(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(_UTC)
