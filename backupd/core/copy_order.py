"""Which copy of a backup to read first: the ordering rule of `[restore] copy_selection`.

A copy is `verified` (its last validation passed), `failed` (its last validation found it damaged)
or `unverified` (never validated, or its verification was forgotten). Whatever the selection, a failed
copy is read only after every other copy: it is known to be bad.

- `priority`: destination priority first, the most recently verified copy breaking ties;
- `most_reliable`: verified copies first (the most recently verified first), then unverified ones,
  then failed ones; priority breaks ties.

    >>> a = CopyState("a", 1, verified_at=None, failed_at="2026-12-01T00:00:00+00:00")
    >>> b = CopyState("b", 2, verified_at=None, failed_at=None)
    >>> [c.destination for c in order_copies([a, b], "most_reliable")]
    ['b', 'a']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from backupd.core.vocab import COPY_SELECTIONS, CopySelection

FAILED, UNVERIFIED, VERIFIED = 0, 1, 2  # a copy's standing, worst first

T = TypeVar("T")


@dataclass(frozen=True)
class CopyState:
    """What the ordering looks at: the destination's priority (lower first) and the copy's last
    verification outcome (UTC ISO times, which sort as strings)."""

    destination: str
    priority: int
    verified_at: str | None = None
    failed_at: str | None = None

    @property
    def standing(self) -> int:
        """FAILED when its latest verification failed, VERIFIED when it passed, else UNVERIFIED."""
        if self.failed_at is not None and (self.verified_at is None or self.failed_at >= self.verified_at):
            return FAILED
        return VERIFIED if self.verified_at is not None else UNVERIFIED


@overload
def order_copies(copies: Sequence[CopyState], selection: str) -> list[CopyState]: ...
@overload
def order_copies(copies: Sequence[T], selection: str, state: Callable[[T], CopyState]) -> list[T]: ...


def order_copies(
    copies: Sequence[Any], selection: str, state: Callable[[Any], CopyState] = lambda c: c
) -> list[Any]:
    """`copies` in the order to read them under `selection` (see the module docstring); `state`
    describes each item (by default each item is a CopyState). Raises ValueError for an unknown selection."""
    if selection not in COPY_SELECTIONS:
        raise ValueError(f"unknown copy selection {selection!r} (expected {' or '.join(COPY_SELECTIONS)})")
    found = list(copies)

    def verified(c: Any) -> str:
        s = state(c)
        return s.verified_at or "" if s.standing == VERIFIED else ""

    def priority(c: Any) -> int:
        return state(c).priority

    # Stable sorts, least significant key first.
    if selection == CopySelection.MOST_RELIABLE:
        found.sort(key=priority)
        found.sort(key=verified, reverse=True)
    else:
        found.sort(key=verified, reverse=True)
        found.sort(key=priority)
    found.sort(key=lambda c: state(c).standing == FAILED)
    return found
