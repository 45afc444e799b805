"""Human output for backupctl: compact tables, `key  value` blocks, one-line summaries and the
progress bar. Pure string building (the bar alone writes, to the stream it is given)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def _mapping(value: object) -> Mapping[str, Any]:
    """`value` when the reply holds a mapping there, else an empty one (the field is missing or not a mapping)."""
    return value if isinstance(value, Mapping) else {}


def fmt(value: Any) -> str:
    """One cell: `-` for nothing, yes/no, compact floats, comma lists, compact JSON for maps."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return " ".join(str(value).split())  # one line, whatever the daemon put in it


def human_size(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def short_time(value: Any) -> str:
    """An ISO 8601 time as `YYYY-MM-DD HH:MM:SSZ` in UTC; anything else as it is."""
    if not isinstance(value, str):
        return fmt(value)
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return fmt(value)
    if t.tzinfo is None:
        return t.strftime("%Y-%m-%d %H:%M:%S")
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Left-aligned columns under upper-case headers, two spaces apart; "" for no rows."""
    cells = [[_cell(get(row)) for _, get in columns] for row in rows if isinstance(row, Mapping)]
    if not cells:
        return ""
    headers = [name.upper() for name, _ in columns]
    widths = [max(len(r[i]) for r in [headers, *cells]) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers, *cells])


def _cell(value: Any) -> str:
    return " ".join(value.split()) or "-" if isinstance(value, str) else fmt(value)


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = [(k, v if isinstance(v, str) else fmt(v)) for k, v in pairs]
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def col(key: str, how: Callable[[Any], str] = fmt) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: how(row.get(key))


# -- objects ----------------------------------------------------------------------------------------

JOB_COLUMNS: list[Column] = [
    ("job", col("job_id")), ("kind", col("kind")), ("source", col("source")), ("status", col("status")),
    ("progress", lambda j: percent_text(j) if j.get("status") == "running" else fmt(j.get("reason"))),
    ("created", col("created_at", short_time)), ("schedule", col("schedule")),
]
BACKUP_COLUMNS: list[Column] = [
    ("id", col("id")), ("source", col("source")), ("strategy", col("strategy")),
    ("created", col("created_at", short_time)), ("stored", col("stored_bytes", human_size)),
    ("pages", lambda b: f"{fmt(b.get('changed_pages'))}/{fmt(b.get('page_count'))}"), ("parent", col("parent_id")),
    ("metadata", lambda b: metadata_text(b.get("metadata"))),
    ("warnings", lambda b: ", ".join(w.split(":", 1)[0] for w in b.get("warnings") or ()) or "-"),
]
SCHEDULE_COLUMNS: list[Column] = [
    ("name", col("name")), ("source", col("source")), ("cron", col("cron")), ("strategy", col("strategy")),
    ("timezone", col("timezone")), ("state", lambda s: schedule_state(s)),
    ("next run", col("next_run", short_time)), ("origin", col("origin")),
]
STATS_COLUMNS: list[Column] = [
    ("name", col("name")), ("runs", col("runs")), ("ok", col("completed")), ("failed", col("failed")),
    ("skipped", col("skipped")), ("success", col("success_rate", lambda v: ratio(v))),
    ("reliability", col("reliability", lambda v: ratio(v))), ("mean", col("mean_duration_s", human_duration)),
    ("last run", col("last_run", short_time)), ("next run", col("next_run", short_time)),
]
DESTINATION_COLUMNS: list[Column] = [
    ("name", col("name")), ("kind", col("kind")), ("enabled", col("enabled")), ("priority", col("priority")),
    ("encrypted", col("encrypted")), ("zstd", col("compression_level")), ("origin", col("origin")),
]
NOTIFIER_COLUMNS: list[Column] = [
    ("name", col("name")), ("kind", col("kind")), ("state", col("state")), ("queue", col("queue")),
    ("delivered", col("delivered")), ("failed", col("failed")), ("expired", col("expired")),
    ("last", col("last_result")), ("at", col("last_at", short_time)),
    ("last error", lambda n: fmt(n.get("reason") or n.get("last_error"))),  # why it is down, first
]
DESTINATION_HEALTH_COLUMNS: list[Column] = [
    ("name", col("name")), ("status", col("status")), ("reachable", col("reachable")),
    ("writable", col("writable")), ("free", col("free_bytes", human_size)),
    ("latency", col("latency_ms", lambda v: "-" if v is None else f"{fmt(v)} ms")), ("used", col("used_bytes", human_size)),
    ("last backup", col("last_backup_at")), ("problems", col("problems")),
]


def ratio(value: Any) -> str:
    """0.97 -> 97%; values already above 1 are taken as percentages."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value * 100 if value <= 1 else value:.0f}%"


def schedule_state(s: Mapping[str, Any]) -> str:
    if s.get("enabled") is False:
        return "disabled"
    return "paused" if s.get("paused") else "active"


def percent_of(job: Mapping[str, Any]) -> float | None:
    p = _mapping(job.get("progress"))
    pct = p.get("percent")
    if isinstance(pct, (int, float)) and not isinstance(pct, bool):
        return max(0.0, min(100.0, float(pct)))
    done, total = p.get("done_bytes"), p.get("total_bytes")
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return max(0.0, min(100.0, 100.0 * done / total))
    return None


def percent_text(job: Mapping[str, Any]) -> str:
    pct = percent_of(job)
    return "-" if pct is None else f"{pct:.0f}%"


def progress_line(job: Mapping[str, Any], width: int = 24) -> str:
    """`[#########---------------]  38.2%  pages  120.0 MiB/s  eta 12s`, or why the job waits."""
    status = job.get("status")
    if status in ("queued", "waiting"):
        reason = job.get("reason")
        return f"{status}{': ' + fmt(reason) if reason else ''}"
    p = _mapping(job.get("progress"))
    pct = percent_of(job)
    filled = 0 if pct is None else int(width * pct / 100)
    parts = [f"[{'#' * filled}{'-' * (width - filled)}]", "   ?  " if pct is None else f"{pct:5.1f}%"]
    if p.get("phase"):
        parts.append(fmt(p["phase"]))
    if isinstance(p.get("rate"), (int, float)) and p["rate"]:
        parts.append(f"{human_size(p['rate'])}/s")
    if isinstance(p.get("eta_s"), (int, float)):
        parts.append(f"eta {human_duration(p['eta_s'])}")
    return "  ".join(parts)


class ProgressBar:
    """Redraws one line on a terminal stream; `clear()` leaves the line empty for what follows."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.drawn = False

    def update(self, job: Mapping[str, Any]) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r" + progress_line(job)[: max(10, columns - 1)] + "\033[K")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


def job_detail(job: Mapping[str, Any]) -> str:
    attempt = job.get("attempt")
    status = fmt(job.get("status"))
    if isinstance(attempt, int) and isinstance(job.get("max_attempts"), int) and job["max_attempts"] > 1:
        status += f" (attempt {attempt} of {job['max_attempts']})"
    error = job.get("error") if isinstance(job.get("error"), Mapping) else None
    pairs: list[tuple[str, Any]] = [
        ("job", job.get("job_id")), ("kind", job.get("kind")), ("source", job.get("source")), ("status", status),
        ("priority", job.get("priority")), ("schedule", job.get("schedule")),
        ("created", short_time(job.get("created_at"))), ("started", short_time(job.get("started_at"))),
        ("finished", short_time(job.get("finished_at"))),
    ]
    if job.get("reason"):
        pairs.append(("reason", job.get("reason")))
    if job.get("status") == "running":
        pairs.append(("progress", progress_line(job)))
    if error:
        pairs.append(("error", f"{fmt(error.get('code'))}: {fmt(error.get('message'))}"))
    if job.get("result"):
        pairs.append(("result", job_summary(job) or fmt(job.get("result"))))
    return key_values(pairs)


def job_summary(job: Mapping[str, Any]) -> str:
    """One line for what a finished job produced, in the words of the `backupd` CLI; "" if unknown."""
    r = _mapping(job.get("result"))
    kind = job.get("kind")
    if kind == "backup" and r.get("id"):
        return (f"backup {r['id']} ({fmt(r.get('strategy'))}): {fmt(r.get('changed_pages'))} of "
                f"{fmt(r.get('page_count'))} pages, stored {human_size(r.get('stored_bytes'))}")
    if kind == "restore" and (r.get("backup_id") or r.get("path")):
        gap = r.get("gap_s")
        gap_text = f" ({gap:.0f}s before the asked time)" if isinstance(gap, (int, float)) else ""
        chain = r.get("chain")
        chain_text = f" (chain of {len(chain)})" if isinstance(chain, list) else ""
        return f"restored {fmt(r.get('backup_id'))}{gap_text} to {fmt(r.get('path'))}{chain_text}"
    if kind == "validate" and r.get("verdict"):
        return f"verdict: {fmt(r['verdict'])}"
    return ""


def metadata_text(metadata: Any) -> str:
    """`key=value` pairs, sorted by key; "" for none."""
    if not isinstance(metadata, Mapping):
        return ""
    return " ".join(f"{k}={fmt(v)}" for k, v in sorted(metadata.items()))


def validation_report(report: Mapping[str, Any]) -> str:
    lines = [f"{fmt(c.get('status')):<5} {fmt(c.get('severity')):<8} {fmt(c.get('id'))}: {fmt(c.get('message'))}"
             for c in report.get("checks") or [] if isinstance(c, Mapping)]
    lines.extend(f"recommendation: {fmt(r)}" for r in report.get("recommendations") or [])
    lines.append(f"verdict: {fmt(report.get('verdict'))}")
    return "\n".join(lines)


def status_text(s: Mapping[str, Any]) -> str:
    jobs = _mapping(s.get("jobs"))
    schedules = s.get("schedules")
    return key_values([
        ("backupd", f"{fmt(s.get('version'))} (protocol {fmt(s.get('protocol'))}), pid {fmt(s.get('pid'))}"),
        ("state", f"{fmt(s.get('state'))}, up {human_duration(s.get('uptime_s'))}"),
        ("jobs", ", ".join(f"{fmt(jobs.get(k))} {k}" for k in ("running", "waiting", "queued"))),
        ("schedules", len(schedules) if isinstance(schedules, list) else schedules),
        ("config", s.get("config")),
    ])


def health_text(h: Mapping[str, Any]) -> str:
    lines = [f"health: {fmt(h.get('status'))}"]
    lines.extend(f"problem: {problem_text(p)}" for p in h.get("problems") or [])
    dests = [d for d in h.get("destinations") or [] if isinstance(d, Mapping)]
    if dests:
        lines.extend(["", table(dests, DESTINATION_HEALTH_COLUMNS)])
    return "\n".join(lines)


def problem_text(p: Any) -> str:
    """One problem of `health`: `schedule nightly: its last run failed [schedule_last_run_failed]`."""
    if not isinstance(p, Mapping):
        return fmt(p)
    subject = next((f"{k} {fmt(p[k])}: " for k in ("source", "schedule", "destination") if p.get(k)), "")
    return f"{subject}{fmt(p.get('message'))} [{fmt(p.get('code'))}]"


def plan_text(plan: Any, dry_run: bool) -> str:
    """The retention plan: what goes and why, then what stays."""
    if not isinstance(plan, Mapping):
        return fmt(plan)
    reasons = _mapping(plan.get("reasons"))

    def line(verb: str, item: Any) -> str:
        ident = item.get("id") or item.get("backup_id") if isinstance(item, Mapping) else item
        why = (item.get("reason") or "; ".join(item.get("reasons") or []) if isinstance(item, Mapping) else None) \
            or reasons.get(str(ident))
        return f"{verb} {fmt(ident)}" + (f": {fmt(why)}" if why else "")

    delete = plan.get("delete") if isinstance(plan.get("delete"), list) else None
    keep = plan.get("keep") if isinstance(plan.get("keep"), list) else None
    if delete is None and keep is None:
        return key_values((str(k), v) for k, v in plan.items())
    verb = "would delete" if dry_run else "deleted"
    lines = [line(verb, item) for item in delete or []]
    lines.extend(line("keep", item) for item in keep or [])
    lines.append(f"{'dry run: ' if dry_run else ''}{len(delete or [])} to delete, {len(keep or [])} kept")
    return "\n".join(lines)


def prune_jobs_text(jobs: Iterable[Mapping[str, Any]]) -> str:
    """A real prune: each source's job, and for a finished one what it deleted and kept, as the dry run says it."""
    lines = []
    for job in jobs:
        error = job.get("error") if isinstance(job.get("error"), Mapping) else None
        why = f": {fmt(error.get('message'))} ({fmt(error.get('code'))})" if error else ""
        lines.append(f"prune of {fmt(job.get('source'))}: job {fmt(job.get('job_id'))} {fmt(job.get('status'))}{why}")
        result = job.get("result")
        if isinstance(result, Mapping) and ("delete" in result or "keep" in result):
            lines.extend(f"  {line}" for line in plan_text(result, False).splitlines())
    return "\n".join(lines) or "nothing to prune"


def event_line(e: Mapping[str, Any]) -> str:
    """One event on one line: time, type, source, job, then the message and error code."""
    parts = [short_time(e.get("at")), fmt(e.get("type"))]
    parts += [f"{k}={fmt(e.get(k))}" for k in ("source", "job_id", "backup_id") if e.get(k)]
    dests = e.get("destinations") or []
    if dests and not e.get("source"):
        parts.append(f"destination={fmt(dests)}")
    if e.get("message"):
        code = f" ({fmt(e.get('error_code'))})" if e.get("error_code") else ""
        parts.append(f"- {fmt(e.get('message'))}{code}")
    if e.get("dropped"):
        parts.append(f"[{e['dropped']} earlier events dropped]")
    return "  ".join(parts)
