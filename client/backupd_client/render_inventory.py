"""`backupctl inventory` for a person: one table by source, by strategy and by destination, and the
verification coverage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .render import Column, _mapping, col, fmt, human_size, ratio, short_time, table

_TOTALS: list[Column] = [
    ("backups", col("backups")), ("restore points", col("restore_points")),
    ("stored", col("stored_bytes", human_size)), ("logical", col("logical_bytes", human_size)),
]
SOURCE_COLUMNS: list[Column] = [
    ("source", col("name")), *_TOTALS, ("oldest", col("oldest", short_time)), ("newest", col("newest", short_time)),
    ("chain", col("chain_length")), ("verified", col("verified")),
]
STRATEGY_COLUMNS: list[Column] = [("strategy", col("name")), *_TOTALS]
DESTINATION_COLUMNS: list[Column] = [
    ("destination", col("name")), *_TOTALS,
    ("chains", lambda d: ", ".join(f"{s} {n}" for s, n in sorted((d.get("chain_length") or {}).items())) or "-"),
    ("missing", lambda d: missing_text(d.get("missing"))),
]


def missing_text(ids: Any) -> str:
    """How many copies are missing, and the first few ids."""
    if not isinstance(ids, list) or not ids:
        return "0"
    return f"{len(ids)} ({', '.join(fmt(i) for i in ids[:3])}{', ...' if len(ids) > 3 else ''})"


def _rows(by: Any) -> list[dict[str, Any]]:
    return [{"name": k, **v} for k, v in sorted(by.items()) if isinstance(v, Mapping)] if isinstance(by, Mapping) else []


def inventory_text(inv: Mapping[str, Any]) -> str:
    """The tables of an `inventory` reply, then one line of verification coverage."""
    parts = [table(_rows(inv.get(key)), cols) for key, cols in (
        ("by_source", SOURCE_COLUMNS), ("by_strategy", STRATEGY_COLUMNS), ("by_destination", DESTINATION_COLUMNS))]
    v = _mapping(inv.get("verification"))
    parts.append(f"verified in the last {fmt(v.get('days'))} days: {fmt(v.get('verified'))} of "
                 f"{fmt(v.get('backups'))} backups ({ratio(v.get('coverage'))})")
    return "\n\n".join(p for p in parts if p)
