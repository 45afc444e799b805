"""What one job is asked to do: a frozen spec per kind, built once where the request enters (a control
request in handlers.py, a schedule's fire in scheduler.py, the supervisor's own follow-ups) and handed
as is to the worker process (pickled through the forkserver), which dispatches on its type.

The defaults live here and nowhere else. `to_wire()` is the job's `args` on the protocol
(docs/PROTOCOL.md), and `from_args` reads them back: `type(s).from_args(s.source, s.to_wire()) == s`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from backupd.core.metadata import check_metadata
from backupd.core.vocab import (COPY_SELECTIONS, REQUESTED_STRATEGIES, VALIDATION_LEVELS, CopySelection, JobKind,
                                RequestedStrategy, ValidationLevel, Word)
from backupd.engine.copy_choice import CopyChoice
from backupd.errors import UsageError


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def _set_word(spec: object, name: str, word: type[Word], allowed: tuple[str, ...]) -> None:
    """Check the field `name` of the frozen `spec` (when set) against `allowed`, and store it as a `word`
    member, so a spec built from plain strings holds the vocabulary's types."""
    value = getattr(spec, name)
    if value is not None:
        _one_of(name, value, allowed)
        object.__setattr__(spec, name, word(value))


@dataclass(frozen=True)
class _Spec:
    """What every spec has: the source it works on, its kind, its wire form."""

    kind: ClassVar[JobKind]
    source: str

    @classmethod
    def from_args(cls, source: str, args: dict[str, Any]) -> Self:
        """The spec from a job's wire `args`, or from a control request's checked arguments: an absent
        argument takes the spec's default, lists become tuples, keys that are not the spec's (such as a
        request's `source` or `priority`) are not read."""
        given = {f.name: args[f.name] for f in fields(cls) if f.name != "source" and f.name in args}
        return cls(source, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})

    def to_wire(self) -> dict[str, Any]:
        """The job's `args` on the protocol: every field but `source`, tuples as lists."""
        return {f.name: _wire(getattr(self, f.name)) for f in fields(self) if f.name != "source"}


def _wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass(frozen=True)
class BackupJob(_Spec):
    """Back up `source`, to the chosen `destinations` (None or empty: every enabled one), then
    validate the new backup at `validate_level` when one is given."""

    kind: ClassVar[JobKind] = JobKind.BACKUP
    strategy: RequestedStrategy = RequestedStrategy.AUTO
    tags: tuple[str, ...] = ()
    description: str = ""
    destinations: tuple[str, ...] | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    validate_level: ValidationLevel | None = None

    def __post_init__(self) -> None:
        _set_word(self, "strategy", RequestedStrategy, REQUESTED_STRATEGIES)
        _set_word(self, "validate_level", ValidationLevel, VALIDATION_LEVELS)
        try:
            check_metadata(self.metadata)
        except ValueError as exc:
            raise UsageError(f"metadata: {exc}") from None


@dataclass(frozen=True)
class RestoreJob(_Spec):
    """Restore `source` to the path `to`, from `backup_id` or the restore point at `at` (an instant as
    the request gave it); `copy_selection` overrides `[restore] copy_selection` for this restore."""

    kind: ClassVar[JobKind] = JobKind.RESTORE
    to: str
    backup_id: str | None = None
    at: str | None = None
    tables: tuple[str, ...] | None = None
    overwrite: bool = False
    copy_selection: CopySelection | None = None

    def __post_init__(self) -> None:
        if (self.backup_id is None) == (self.at is None):
            raise UsageError("restore: give a backup id or an instant (at), not both or neither")
        _set_word(self, "copy_selection", CopySelection, COPY_SELECTIONS)


@dataclass(frozen=True)
class ValidateJob(_Spec):
    """Validate backup `backup_id` (of `source`) at `level`, on the copies the choice names."""

    kind: ClassVar[JobKind] = JobKind.VALIDATE
    backup_id: str
    level: ValidationLevel
    destination: str | None = None
    all_copies: bool = False
    sample_percent: float | None = None

    def __post_init__(self) -> None:
        _set_word(self, "level", ValidationLevel, VALIDATION_LEVELS)
        self.choice.check(self.level)

    @property
    def choice(self) -> CopyChoice:
        """Which copies this validation checks."""
        return CopyChoice(self.destination, self.all_copies, self.sample_percent)


@dataclass(frozen=True)
class PruneJob(_Spec):
    """Apply the retention policy to `source`'s backups."""

    kind: ClassVar[JobKind] = JobKind.PRUNE


@dataclass(frozen=True)
class ResyncJob(_Spec):
    """Copy `source`'s backups to the enabled destinations that miss them."""

    kind: ClassVar[JobKind] = JobKind.RESYNC


JobSpec = BackupJob | RestoreJob | ValidateJob | PruneJob | ResyncJob
