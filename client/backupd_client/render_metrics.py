"""`backupctl metrics`: the `metrics` op's summary (samples by name) as a person reads it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .render import col, human_duration, human_size, table

_P = "backupd_"
_OK = ("completed", "completed_with_warnings")
_FAILED = ("failed", "partial", "timed_out")


def _by(summary: Mapping[str, Any], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples of `name` keyed by the values of the labels `keys`, summed over the others."""
    out: dict[tuple[str, ...], float] = {}
    for s in summary.get(_P + name) or []:
        labels = s.get("labels") or {}
        k = tuple(str(labels.get(key, "")) for key in keys)
        out[k] = out.get(k, 0.0) + float(s.get("value") or 0)
    return out


def _age(ts: float | None, now: float) -> str:
    return f"{human_duration(now - ts)} ago" if ts else "never"


def metrics_text(summary: Mapping[str, Any], now: float | None = None) -> str:
    """Per source (newest backup, runs, mean duration, sizes), per destination and the job counts."""
    now = time.time() if now is None else now
    last = _by(summary, "backup_last_success_timestamp_seconds", "source", "destination")
    runs = _by(summary, "backup_runs_total", "source", "outcome")
    count = _by(summary, "backup_duration_seconds_count", "source")
    total = _by(summary, "backup_duration_seconds_sum", "source")
    stored = _by(summary, "backup_stored_bytes", "source")
    logical = _by(summary, "backup_logical_bytes", "source")
    sources = sorted({k[0] for k in [*last, *runs, *logical]})
    rows = [{
        "source": s, "last": _age(max((v for k, v in last.items() if k[0] == s), default=None), now),
        "ok": int(sum(v for k, v in runs.items() if k[0] == s and k[1] in _OK)),
        "failed": int(sum(v for k, v in runs.items() if k[0] == s and k[1] in _FAILED)),
        "mean": human_duration(total[(s,)] / count[(s,)]) if count.get((s,)) else "-",
        "stored": human_size(stored.get((s,))), "logical": human_size(logical.get((s,))),
    } for s in sources]
    up, free = _by(summary, "destination_up", "destination"), _by(summary, "destination_free_bytes", "destination")
    used = _by(summary, "destination_used_bytes", "destination")
    dests = [{"destination": d, "up": {1.0: "yes", 0.0: "no"}.get(up.get((d,), -1.0), "unknown"),
              "free": human_size(free.get((d,))), "used": human_size(used.get((d,)))}
             for d in sorted({k[0] for k in [*up, *used]})]
    jobs = ", ".join(f"{int(v)} {k[0]}" for k, v in _by(summary, "jobs", "state").items())
    parts = [table(rows, [(c, col(c)) for c in ("source", "last", "ok", "failed", "mean", "stored", "logical")]),
             table(dests, [(c, col(c)) for c in ("destination", "up", "free", "used")]), f"jobs: {jobs or 'none'}"]
    return "\n\n".join(p for p in parts if p)
