"""Warnings about the source a backup was taken of: damaged (`source_corrupt`) or much smaller than at the
previous backup (`source_shrunk`). Pure; the snapshot's check and the previous manifest are passed in.

A flagged backup is stored anyway (it may be the best copy left) but retention does not count it
towards its rules (core/retention.py), so a run of them never pushes the last good backup out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backupd.core.vocab import RequestedStrategy, Strategy

SHRINK_RATIO = 0.5  # less than half the pages or rows of the previous backup


def source_warnings(problems: Sequence[str], page_count: int, tables: Mapping[str, int],
                    prev_page_count: int | None, prev_tables: Mapping[str, int] | None) -> tuple[str, ...]:
    """The warnings a backup carries, each "<code>: <why>".

    >>> source_warnings([], 0, {}, 10, {"t": 5})
    ('source_shrunk: the source is empty (0 pages; the previous backup had 10)',)
    >>> source_warnings(["row 3 missing from index i"], 10, {"t": 5}, None, None)
    ('source_corrupt: row 3 missing from index i',)
    """
    out = []
    if problems:
        out.append(f"source_corrupt: {'; '.join(problems)}")
    if prev_page_count:
        rows, prev_rows = sum(tables.values()), sum((prev_tables or {}).values())
        if page_count == 0:
            out.append(f"source_shrunk: the source is empty (0 pages; the previous backup had {prev_page_count})")
        elif page_count < prev_page_count * SHRINK_RATIO:
            out.append(f"source_shrunk: {page_count} pages, the previous backup had {prev_page_count}")
        elif prev_rows and rows < prev_rows * SHRINK_RATIO:
            out.append(f"source_shrunk: {rows} rows, the previous backup had {prev_rows}")
    return tuple(out)


def codes(warnings: Sequence[str]) -> list[str]:
    """The codes of `warnings` ("source_corrupt", ...)."""
    return [w.split(":", 1)[0] for w in warnings]


def flagged_strategy(strategy: str, reason: str, warnings: Sequence[str], requested: str,
                     extendable: str | None) -> tuple[str, str]:
    """The strategy for a snapshot that carries `warnings`: never a new chain started on it silently.

    `auto` extends the existing chain (`extendable`: "incremental" or "differential", None if it cannot)
    instead of a full, so the good chain stays the base; an explicit or unavoidable full says in its reason
    that the source is flagged. Unflagged snapshots keep their strategy and reason.

    >>> flagged_strategy("full", "auto: chain too long", ["source_shrunk: x"], "auto", "incremental")[0]
    'incremental'
    >>> flagged_strategy("full", "full requested", ["source_corrupt: y"], "full", "incremental")[0]
    'full'
    """
    if not warnings:
        return strategy, reason
    flagged = f"the source is flagged ({', '.join(codes(warnings))})"
    if strategy != Strategy.FULL:
        return strategy, f"{reason}; {flagged}"
    if requested == RequestedStrategy.AUTO and extendable is not None:
        return extendable, f"{reason}, but {flagged}: {extendable} on the existing chain instead of a new chain on it"
    return "full", (f"{reason}; {flagged}: this full starts no chain in place of the last good one, "
                    "which retention keeps")
