"""Retention: which backups, and which copies of them, to keep or delete, and why.

`plan_retention(backups, policy, now) -> RetentionPlan` is pure: it reads no clock (`now` is
passed in) and touches no destination. The caller (the prune job, `backupctl prune --dry-run`)
carries the plan out. Every backup in the input ends up in exactly one of `plan.keep` and
`plan.delete`, each with at least one reason; every copy of a kept backup on a destination that
has limits ends up in `plan.keep_copies` or `plan.delete_copies`, again with reasons. Deleting a
backup means deleting every copy of it, so copies of deleted backups are not listed separately.

Planning is per source. Within a source, backups are ordered newest first by
(`created_at`, `backup_id`).

Chains. A backup's chain is the walk over `parent_id` down to a full (see core/chain.py). A chain
is *broken* when a member is missing from the input (or the walk cycles); a backup with a broken
chain is not *restorable*. Parents are looked up within the same source only.

Streams. A backup sent to chosen destinations (a schedule's `destinations`, e.g. hourly to a local
disk and nightly off-site) belongs to the stream of that set (`BackupInfo.stream`); the others to
the default stream (). The global rules below, the newest restorable backup and the newest verified
chain are applied per stream, so the hourly backups never crowd the nightly ones out; with more
than one stream their reasons end in `[to <destinations>]`.

Global rules, like restic's `forget` (GFS), applied to the restorable backups of each source:
  keep_last N     the N newest; reason `keep_last 2/7`.
  keep_daily N    the newest backup of each of the N most recent UTC days that have backups;
                  reason `keep_daily 3/14 (2026-11-24)`. keep_weekly uses ISO weeks
                  (`2026-W48`), keep_monthly months (`2026-11`), keep_yearly years (`2026`).
A rule that is None or 0 is not set. Then, whatever the rules say:
  - the newest restorable backup of each source is kept (`newest restorable backup`);
  - flagged backups (`BackupInfo.flagged`: the source looked corrupt or shrunk) are not counted by
    the rules, and the newest unflagged restorable backup is kept (`newest unflagged backup`), so a
    run of flagged backups never pushes the last good one out;
  - the newest backup whose whole chain is verified (every member has `verified_at`) is kept
    (`newest verified chain`): the last verified chain stays until a newer backup has a
    fully verified chain;
  - chain safety: every member of a kept backup's chain is kept, with `needed by <id> (chain)`.
When no global rule is set at all, every backup is kept (`no retention policy: everything is
kept`), broken ones included, subject to the per destination limits. Otherwise a backup that
nothing keeps is deleted, and its reasons say why each rule passed it over
(`keep_daily 14: 2026-11-20 is kept as <id>`, `keep_daily 14: 2026-10-01 is older than the 14
newest days`), or that its chain is broken (`chain broken: <id> needs <parent>, which is missing`).

Per destination limits (`per_destination[name]`) give each destination a window per source:
  max_count N       the N newest backups of the source that have a copy on the destination;
  max_age_days D    the backups created at most D days before `now`.
The window counts every backup of the source on the destination, whether the global rules keep it
or not, so it depends only on the destination's own limits: max_count is an upper bound, and the
global rules choose among the backups inside it. A copy inside every window of its destination
is *live* (reasons `max_count 2/5`, `max_age_days 30 (3 days old)`); destinations without limits
keep every copy (and are not listed in `keep_copies`).
  1. A globally kept backup with no live copy anywhere is deleted whole (`every copy is over its
     destination's limits`, then each copy's limit and what the global rules said), unless it is
     *safe* (the newest restorable backup, the newest verified chain, or a member of their chains)
     or a member of the chain of a backup that stays. The others stay. A backup kept only for the
     chain of backups deleted this way goes with them (`only backups deleted for their destination
     limits needed it`).
  2. On each destination, a live copy keeps the copies there of its chain members: `needed by
     <id> on <dest> (chain)`. So a chain kept on a destination is never broken there.
  3. A backup that stays but has no copy left after 1-2 (its copies are all over their limits,
     and it is safe or needed by a chain that crosses destinations) keeps its copy on the
     destination whose name sorts first (`last copy of a kept backup`), with step 2 applied to it.
  Every other copy over a limit is deleted. A kept backup therefore keeps at least one copy, and
  every member of its chain stays with at least one copy: it stays restorable from its copies.

Properties (tests/core/test_retention.py): chain safety (every kept backup's chain is kept, and on
each destination every kept copy's chain members there are kept); idempotence (applying the plan
with `apply_plan` and planning again at the same `now` deletes nothing); monotonicity (a policy
with larger N's and looser destination limits keeps a superset of backups, provided the smaller one
sets at least one global rule: the empty policy keeps everything). With several limited
destinations the last-copy rule may move a surviving copy, so kept copies are a superset only when
one destination holds each backup.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from backupd.core.chain import walk
from backupd.core.vocab import STRATEGIES

from .retention_copies import plan_copies

NO_POLICY = "no retention policy: everything is kept"


@dataclass(frozen=True)
class BackupInfo:
    """One backup of one source, and the destinations that hold a copy of it."""

    backup_id: str
    source: str
    strategy: str  # one of STRATEGIES
    parent_id: str | None  # the backup a delta applies on; None for a full
    created_at: datetime  # timezone-aware
    verified_at: datetime | None = None
    destinations: frozenset[str] = frozenset()
    stream: tuple[str, ...] = ()  # the destinations it was sent to by choice; () for every enabled one
    flagged: bool = False  # its source looked corrupt or shrunk (core/source_health.py)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"backup {self.backup_id}: strategy must be one of {STRATEGIES} (got {self.strategy!r})")
        if self.created_at.tzinfo is None:
            raise ValueError(f"backup {self.backup_id}: created_at must be timezone-aware")
        if not isinstance(self.destinations, frozenset):
            object.__setattr__(self, "destinations", frozenset(self.destinations))


@dataclass(frozen=True)
class DestinationLimits:
    max_age_days: int | None = None
    max_count: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_age_days", "max_count"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1 or unset (got {value!r})")

    @property
    def active(self) -> bool:
        return self.max_age_days is not None or self.max_count is not None


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    per_destination: Mapping[str, DestinationLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in RULES:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0 or unset (got {value!r})")

    def rules(self) -> list[tuple[str, int]]:
        """The global rules that are set, in the order they are applied."""
        return [(name, getattr(self, name)) for name in RULES if getattr(self, name)]


@dataclass
class RetentionPlan:
    """Reasons per backup id, and per (backup id, destination) copy. Insertion order: source by name,
    then newest first."""

    keep: dict[str, list[str]] = field(default_factory=dict)
    delete: dict[str, list[str]] = field(default_factory=dict)
    keep_copies: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    delete_copies: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The shape `backupctl prune --dry-run --json` prints."""
        return {
            "keep": [{"id": i, "reasons": list(r)} for i, r in self.keep.items()],
            "delete": [{"id": i, "reasons": list(r)} for i, r in self.delete.items()],
            "keep_copies": [{"id": i, "destination": d, "reasons": list(r)} for (i, d), r in self.keep_copies.items()],
            "delete_copies": [
                {"id": i, "destination": d, "reasons": list(r)} for (i, d), r in self.delete_copies.items()
            ],
        }


def _day(t: datetime) -> str:
    return t.date().isoformat()


def _week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _month(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _year(t: datetime) -> str:
    return f"{t.year:04d}"


RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
# rule -> (bucket of a UTC instant, plural unit for reasons)
BUCKETS: dict[str, tuple[Callable[[datetime], str], str]] = {
    "keep_daily": (_day, "days"),
    "keep_weekly": (_week, "weeks"),
    "keep_monthly": (_month, "months"),
    "keep_yearly": (_year, "years"),
}


def _order(b: BackupInfo) -> tuple[datetime, str]:
    return (b.created_at, b.backup_id)


def _chain(b: BackupInfo, by_id: Mapping[str, BackupInfo]) -> tuple[list[str], str | None]:
    """(chain ids, full first, None), or (the members found, oldest first, why the chain is broken)."""
    members, gap = walk(b, by_id)
    if gap is None:
        return [m.backup_id for m in members], None
    # a cycle repeats members: keep each once, in the order the walk from b first reached them
    found = list(dict.fromkeys(m.backup_id for m in reversed(members)))
    current = by_id[found[-1]]
    parent = current.parent_id
    if parent is None:
        return found[::-1], f"chain broken: {current.backup_id} ({current.strategy}) names no parent"
    if parent in found:
        return found[::-1], f"chain broken: {current.backup_id} needs {parent}, which forms a cycle"
    return found[::-1], f"chain broken: {current.backup_id} needs {parent}, which is missing"


def plan_retention(backups: Iterable[BackupInfo], policy: RetentionPolicy, now: datetime) -> RetentionPlan:
    """Decide, with reasons, which backups and copies to keep and delete. See the module docstring.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 11, 26, tzinfo=timezone.utc)
    >>> full = BackupInfo("f", "db", "full", None, t - timedelta(days=1), destinations=frozenset({"local"}))
    >>> inc = BackupInfo("i", "db", "incremental", "f", t, destinations=frozenset({"local"}))
    >>> plan_retention([full, inc], RetentionPolicy(keep_last=1), t).keep
    {'i': ['keep_last 1/1', 'newest restorable backup'], 'f': ['needed by i (chain)']}
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_source: dict[str, list[BackupInfo]] = defaultdict(list)
    seen: set[str] = set()
    for b in backups:
        if b.backup_id in seen:
            raise ValueError(f"backup {b.backup_id} is listed twice")
        seen.add(b.backup_id)
        by_source[b.source].append(b)
    plan = RetentionPlan()
    for source in sorted(by_source):
        _plan_source(sorted(by_source[source], key=_order, reverse=True), policy, now, plan)
    return plan


def _plan_source(items: list[BackupInfo], policy: RetentionPolicy, now: datetime, plan: RetentionPlan) -> None:
    """Plan one source's backups, given newest first."""
    by_id = {b.backup_id: b for b in items}
    chains = {b.backup_id: _chain(b, by_id) for b in items}
    keep: dict[str, list[str]] = defaultdict(list)
    passed_over: dict[str, list[str]] = defaultdict(list)
    safe: list[str] = []  # kept whatever the destination limits say
    verified = {b.backup_id for b in items if b.verified_at is not None}
    streams = sorted({b.stream for b in items})
    for stream in streams:
        suffix = f" [to {'+'.join(stream) or 'every destination'}]" if len(streams) > 1 else ""
        _keep_stream([b for b in items if b.stream == stream], chains, verified, policy, keep, passed_over, safe,
                     suffix)

    direct = set(keep)
    for b in items:  # newest first, so the newest dependent is named first
        if b.backup_id in direct:
            for member in chains[b.backup_id][0][:-1]:
                keep[member].append(f"needed by {b.backup_id} (chain)")

    kept = [b for b in items if b.backup_id in keep]
    expired = plan_copies(items, kept, direct, {m for s in safe for m in chains[s][0]}, chains, policy, now, plan)
    for b in items:
        if b.backup_id in expired:
            rules_said = "; ".join(keep[b.backup_id])
            plan.delete[b.backup_id] = [*expired[b.backup_id], f"global rules alone keep it: {rules_said}"]
        elif b.backup_id in keep:
            plan.keep[b.backup_id] = keep[b.backup_id]
        else:
            broken = chains[b.backup_id][1]
            plan.delete[b.backup_id] = [broken] if broken else passed_over[b.backup_id]


def _keep_stream(items: list[BackupInfo], chains: Mapping[str, tuple[list[str], str | None]], verified: set[str],
                 policy: RetentionPolicy, keep: dict[str, list[str]], passed_over: dict[str, list[str]],
                 safe: list[str], suffix: str) -> None:
    """Apply the global rules, the newest restorable backup and the newest verified chain to one
    stream's backups (newest first), adding to `keep`, `passed_over` and `safe`."""
    restorable = [b for b in items if chains[b.backup_id][1] is None]
    good = [b for b in restorable if not b.flagged]
    for b in restorable:
        if b.flagged:
            passed_over[b.backup_id].append(f"flagged (source corrupt or shrunk): not counted by the rules{suffix}")
    rules = policy.rules()
    for rule, n in rules:
        if rule == "keep_last":
            for i, b in enumerate(good):
                if i < n:
                    keep[b.backup_id].append(f"keep_last {i + 1}/{n}{suffix}")
                else:
                    passed_over[b.backup_id].append(f"keep_last {n}: not among the {n} newest{suffix}")
            continue
        bucket_of, unit = BUCKETS[rule]
        chosen: dict[str, str] = {}  # bucket -> the backup kept for it
        for b in good:
            bucket = bucket_of(b.created_at.astimezone(timezone.utc))
            if bucket in chosen:
                passed_over[b.backup_id].append(f"{rule} {n}: {bucket} is kept as {chosen[bucket]}")
            elif len(chosen) < n:
                chosen[bucket] = b.backup_id
                keep[b.backup_id].append(f"{rule} {len(chosen)}/{n} ({bucket}){suffix}")
            else:
                passed_over[b.backup_id].append(f"{rule} {n}: {bucket} is older than the {n} newest {unit}{suffix}")
    if not rules:
        for b in items:
            keep[b.backup_id].append(NO_POLICY)
    if restorable:
        keep[restorable[0].backup_id].append(f"newest restorable backup{suffix}")
        safe.append(restorable[0].backup_id)
    if good and good[0] is not restorable[0]:
        keep[good[0].backup_id].append(f"newest unflagged backup{suffix}")
        safe.append(good[0].backup_id)
    for b in restorable:
        if all(member in verified for member in chains[b.backup_id][0]):
            keep[b.backup_id].append(f"newest verified chain{suffix}")
            safe.append(b.backup_id)
            break


def apply_plan(backups: Iterable[BackupInfo], plan: RetentionPlan) -> list[BackupInfo]:
    """The backups as they are once `plan` has been carried out: deleted backups gone, deleted copies
    removed from `destinations`."""
    gone: dict[str, set[str]] = defaultdict(set)
    for backup_id, dest in plan.delete_copies:
        gone[backup_id].add(dest)
    out = []
    for b in backups:
        if b.backup_id in plan.delete:
            continue
        if b.backup_id in gone:
            b = replace(b, destinations=b.destinations - gone[b.backup_id])
        out.append(b)
    return out


def kept_on(backups: Iterable[BackupInfo], policy: RetentionPolicy, now: datetime, dest: str,
            meant: set[str]) -> set[str]:
    """The backups of `meant` whose copy on `dest` its retention keeps, as if `dest` held all of them:
    resync copies only these, so it never restores a copy the next prune deletes again."""
    full = [replace(b, destinations=b.destinations | {dest}) if b.backup_id in meant else b for b in backups]
    plan = plan_retention(full, policy, now)
    return {i for i in meant if i not in plan.delete and (i, dest) not in plan.delete_copies}
