"""`Figures`: the aggregates the metrics report, read from the state database in a few SQL queries.

Everything is computed at read time from the catalog's tables and the job table, so a restart loses
nothing: run counts and durations come from the job history (which `[daemon] job_history_days`
prunes, so a count can drop after a prune, as a counter does after a restart). Copies being deleted
are left out, as the catalog leaves them out of every listing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from backupd.core.vocab import ACTIVE_STATUSES, JOB_STATUSES
from backupd.state.db import StateDB

_LIVE_COPIES = ("SELECT c.*, b.source, b.created_at, b.parent_id FROM copies c JOIN backups b USING (backup_id)"
                " WHERE NOT EXISTS (SELECT 1 FROM deletions d WHERE d.backup_id = c.backup_id"
                " AND d.destination = c.destination)")
_FINISHED = tuple(s for s in JOB_STATUSES if s not in ACTIVE_STATUSES)
_STRATEGY = ("COALESCE(json_extract(job, '$.result.strategy'), json_extract(job, '$.args.strategy'), 'auto')")


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


class Figures:
    """Read-only aggregates over the state database `state` (one connection, any thread)."""

    def __init__(self, state: StateDB):
        self._db = state

    def copies(self) -> list[dict[str, Any]]:
        """Per (source, destination): last_success (newest backup's creation, epoch s), stored_bytes,
        verified (newest verification, epoch s or None) and chain_length (members of the newest
        backup's chain there, its full included)."""
        rows = self._db.execute(
            f"WITH live AS ({_LIVE_COPIES}),"
            " newest AS (SELECT source, destination, max(created_at) AS at, sum(artifact_size + sidecar_size) AS bytes,"
            " max(verified_at) AS verified FROM live GROUP BY source, destination),"
            " heads AS (SELECT n.*, (SELECT backup_id FROM live l WHERE l.source = n.source AND"
            " l.destination = n.destination AND l.created_at = n.at ORDER BY backup_id DESC LIMIT 1) AS head FROM newest n),"
            " chain(source, destination, id, n) AS (SELECT source, destination, head, 1 FROM heads UNION ALL"
            " SELECT c.source, c.destination, b.parent_id, c.n + 1 FROM chain c JOIN backups b ON b.backup_id = c.id"
            " WHERE b.parent_id IS NOT NULL AND c.n < 100000)"
            " SELECT h.source, h.destination, h.at, h.bytes, h.verified, (SELECT max(n) FROM chain c WHERE"
            " c.source = h.source AND c.destination = h.destination) FROM heads h ORDER BY h.source, h.destination"
        ).fetchall()
        return [{"source": s, "destination": d, "last_success": _ts(at), "stored_bytes": n, "verified": _ts(v),
                 "chain_length": chain} for s, d, at, n, v, chain in rows]

    def logical_bytes(self) -> dict[str, int]:
        """source -> the logical size of its newest backup (the database as it was then)."""
        rows = self._db.execute(
            "SELECT source, json_extract(manifest, '$.logical_bytes') FROM backups b WHERE created_at ="
            " (SELECT max(created_at) FROM backups o WHERE o.source = b.source) GROUP BY source").fetchall()
        return {s: int(n) for s, n in rows if n is not None}

    def last_attempts(self) -> dict[str, float]:
        """source -> when its newest backup job started (epoch s), whoever ran it."""
        rows = self._db.execute("SELECT source, max(started_at) FROM jobs WHERE kind = 'backup'"
                                " AND started_at IS NOT NULL GROUP BY source").fetchall()
        return {s: float(_ts(at) or 0.0) for s, at in rows if s is not None}

    def runs(self) -> list[tuple[str, str, str, int]]:
        """(source, strategy, outcome, count) of the finished backup jobs in the history."""
        marks = ", ".join("?" * len(_FINISHED))
        return [(s, st, o, n) for s, st, o, n in self._db.execute(
            f"SELECT source, {_STRATEGY}, status, count(*) FROM jobs WHERE kind = 'backup' AND source IS NOT NULL"
            f" AND status IN ({marks}) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", _FINISHED)]

    def durations(self, buckets: Sequence[float]) -> list[tuple[str, str, list[int], int, float]]:
        """(source, strategy, cumulative count per bucket bound, count, sum of seconds) of the finished
        backup jobs that ran (their start to their end)."""
        le = "".join(f", sum(d <= {float(b)!r})" for b in buckets)
        marks = ", ".join("?" * len(_FINISHED))
        rows = self._db.execute(
            f"SELECT source, strategy, count(*), total(d){le} FROM (SELECT source, {_STRATEGY} AS strategy,"
            " (julianday(finished_at) - julianday(started_at)) * 86400.0 AS d FROM jobs WHERE kind = 'backup'"
            f" AND source IS NOT NULL AND started_at IS NOT NULL AND finished_at IS NOT NULL AND status IN ({marks}))"
            " GROUP BY 1, 2 ORDER BY 1, 2", _FINISHED).fetchall()
        return [(r[0], r[1], [int(x) for x in r[4:]], int(r[2]), float(r[3])) for r in rows]
