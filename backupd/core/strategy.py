"""Choosing a strategy for `auto`, from the chain's state and the measured change."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoPolicy:
    max_chain_length: int = 30  # backups a restore may have to apply after the full
    full_change_ratio: float = 0.5  # changed fraction (since the full) that makes a new full worth it
    differential_cost_ratio: float = 1.5  # a differential is chosen while it costs at most this x an incremental


@dataclass(frozen=True)
class ChangeMeasure:
    page_count: int
    changed_since_last: int | None  # None: no usable previous backup
    changed_since_full: int | None  # None: no usable full
    chain_length: int  # deltas a restore of the previous backup applies after its full


def choose_strategy(m: ChangeMeasure, policy: AutoPolicy) -> tuple[str, str]:
    """Return (strategy, reason).

    >>> choose_strategy(ChangeMeasure(100, None, None, 0), AutoPolicy())
    ('full', 'no usable full backup of this source yet')
    """
    if m.changed_since_full is None or m.changed_since_last is None:
        return "full", "no usable full backup of this source yet"
    if m.chain_length + 1 > policy.max_chain_length:
        return "full", f"chain would reach {m.chain_length + 1} deltas (max_chain_length {policy.max_chain_length})"
    ratio = m.changed_since_full / m.page_count if m.page_count else 1.0
    if ratio >= policy.full_change_ratio:
        return "full", (
            f"{ratio:.0%} of pages changed since the last full (full_change_ratio {policy.full_change_ratio:.0%})"
        )
    if m.changed_since_full <= policy.differential_cost_ratio * max(m.changed_since_last, 1):
        return "differential", (
            f"differential stores {m.changed_since_full} pages vs {m.changed_since_last} for an incremental"
            f" (within {policy.differential_cost_ratio}x) and keeps the restore chain at 2"
        )
    return "incremental", (
        f"incremental stores {m.changed_since_last} pages vs {m.changed_since_full} for a differential"
    )


def policy_met(succeeded: int, total: int, policy: str) -> bool:
    """Whether `succeeded` of `total` copies satisfy a success policy: all, quorum (a majority) or any.

    >>> policy_met(2, 3, "quorum"), policy_met(1, 2, "quorum"), policy_met(1, 3, "any")
    (True, False, True)
    """
    if policy == "all":
        return succeeded == total
    if policy == "quorum":
        return succeeded * 2 > total
    if policy == "any":
        return succeeded >= 1
    raise ValueError(f"unknown success policy {policy!r}")
