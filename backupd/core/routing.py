"""Which notifiers an event goes to.

A notifier gets every event its `events` patterns match, while it is enabled. A job may name more
notifiers (a schedule's or a manual backup's `notify`, with `notify_on`): those get the job's final
event too, the one that says how it ended, when `notify_on` asks for that outcome (failure: failed
or partial; success: succeeded, with or without warnings; completion: any outcome, a skip included).
Pure: the caller says which notifiers are enabled now (a 410 Gone disables one until the next reload).

>>> from backupd.core.events import EventType
>>> hooks = [Recipient("ops", ("backup.failed",)), Recipient("team", ("alert.*",))]
>>> recipients(EventType.BACKUP_FAILED, hooks, NotifyRequest(("team",), (NotifyOn.FAILURE,)), final=True)
['ops', 'team']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backupd.core.events import EventType, matches
from backupd.core.vocab import NotifyOn

__all__ = ["NotifyRequest", "Recipient", "outcome_of", "recipients", "wanted"]

_FAILURE = frozenset({EventType.BACKUP_FAILED, EventType.BACKUP_PARTIAL, EventType.PRUNE_FAILED,
                      EventType.RESTORE_FAILED, EventType.VALIDATION_FAILED})
_SUCCESS = frozenset({EventType.BACKUP_SUCCEEDED, EventType.BACKUP_SUCCEEDED_WITH_WARNINGS,
                      EventType.RESTORE_SUCCEEDED, EventType.VALIDATION_PASSED, EventType.VALIDATION_WARNED})
_OTHER_OUTCOMES = frozenset({EventType.BACKUP_SKIPPED})


@dataclass(frozen=True)
class Recipient:
    """A notifier as routing sees it: its name, its `events` patterns, and whether it is enabled now."""

    name: str
    patterns: tuple[str, ...]
    enabled: bool = True


@dataclass(frozen=True)
class NotifyRequest:
    """A job's own notifiers (`notify`) and the outcomes they are sent (`notify_on`)."""

    names: tuple[str, ...] = ()
    on: tuple[NotifyOn, ...] = (NotifyOn.FAILURE,)

    def to_wire(self) -> dict[str, list[str]]:
        """As a job's wire form carries it: `{"names": [...], "on": [...]}`."""
        return {"names": list(self.names), "on": [str(o) for o in self.on]}

    @classmethod
    def from_wire(cls, raw: object) -> NotifyRequest | None:
        """The request a job's wire `notify` holds; None when it names no notifier (or is not one)."""
        if not isinstance(raw, Mapping) or not raw.get("names"):
            return None
        return cls(tuple(raw["names"]), tuple(NotifyOn(o) for o in raw.get("on") or (NotifyOn.FAILURE,)))


def outcome_of(event_type: EventType) -> NotifyOn | None:
    """FAILURE or SUCCESS for a job outcome of that kind, COMPLETION for another outcome (a skip), else
    None (a start, or an event that is not a job's outcome)."""
    if event_type in _FAILURE:
        return NotifyOn.FAILURE
    if event_type in _SUCCESS:
        return NotifyOn.SUCCESS
    return NotifyOn.COMPLETION if event_type in _OTHER_OUTCOMES else None


def wanted(request: NotifyRequest, event_type: EventType) -> bool:
    """Whether a job's final event of `event_type` goes to the request's notifiers."""
    outcome = outcome_of(event_type)
    return outcome is not None and (NotifyOn.COMPLETION in request.on or outcome in request.on)


def recipients(event_type: EventType, notifiers: Iterable[Recipient], request: NotifyRequest | None = None,
               *, final: bool = False) -> list[str]:
    """The names of the enabled notifiers an event of `event_type` goes to, in the order given, each once:
    those whose patterns match, and (for a job's `final` event) those of `request` that want its outcome."""
    extra: Sequence[str] = request.names if request is not None and final and wanted(request, event_type) else ()
    return [n.name for n in notifiers
            if n.enabled and (n.name in extra or any(matches(p, event_type) for p in n.patterns))]
