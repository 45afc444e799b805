"""`backupctl`: drive a running backupd over its control socket.

Exit codes as in the `backupd` CLI: 0 success, 1 the operation failed (also: a waited-for job that
ended `failed` or `partial`, or the daemon cannot be reached), 2 bad usage or config. An error is
one line on stderr (`backupctl: error: ...`, or a JSON object with `error` and `code` under --json),
never a traceback. `--json`, `--socket` and `--timeout` go before or after the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from . import render, render_inventory
from .cli_parser import PROG, build_parser, glue_relative_times
from .client import DEFAULT_TIMEOUT_S, Client, iso_time
from .errors import BadUsageError, CancelledError, ClientError, InternalError
from .protocol import FAILED_STATUSES
from .render_metrics import metrics_text

FOLLOW_HISTORY = 10  # recent events `events --follow` prints first
__all__ = ["PROG", "Outcome", "build_parser", "main", "run"]


def _meta(items: list[str]) -> dict[str, str] | None:
    """`KEY=VALUE` items as a map; the daemon checks the names and values."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadUsageError(f"--meta: expected KEY=VALUE, got {item!r}")
        if key in out:
            raise BadUsageError(f"--meta: key {key!r} is given twice")
        out[key] = value
    return out or None


@dataclass
class Outcome:
    result: Any  # what --json prints on stdout
    text: str  # what a person sees on stdout ("" for nothing)
    exit_code: int = 0
    error: str | None = None  # one stderr line in human mode (a failed job)
    printed: bool = False  # already written as it came (a followed stream)


def _dest(args: argparse.Namespace, client: Client) -> Outcome:
    if args.action == "ls":
        dests = client.destination_list()
        return Outcome(dests, render.table(dests, render.DESTINATION_COLUMNS) or "no destinations")
    if args.action == "resync":
        jobs = client.destination_resync(args.source)
        if args.wait:
            jobs = [client.job_wait(j["job_id"]) for j in jobs]
        failed = any(j.get("status") in FAILED_STATUSES for j in jobs)
        return Outcome(jobs, render.table(jobs, render.JOB_COLUMNS) or "nothing to resync", 1 if failed else 0)
    if args.action == "add":
        added = client.destination_add(_read_destination(args.file))
        return Outcome(added, f"destination {added['name']} added; check it with `backupctl dest health {added['name']}`")
    if args.action in ("enable", "disable"):
        changed = (client.destination_enable if args.action == "enable" else client.destination_disable)(args.name)
        warning = f"\nwarning: {changed['warning']}" if changed.get("warning") else ""
        return Outcome(changed, f"destination {changed['name']} {args.action}d{warning}")
    if args.action == "rm":
        removed = client.destination_remove(args.name, force=args.force)
        return Outcome(removed, f"destination {args.name} removed (its files were left in place)")
    health = client.destination_health(args.name) if args.cached else client.destination_health_fresh(args.name)
    bad = any(isinstance(h, dict) and h.get("status") == "unhealthy" for h in health)
    return Outcome(health, render.table(health, render.DESTINATION_HEALTH_COLUMNS) or "no destinations",
                   1 if bad else 0)


def _read_destination(path: str) -> dict[str, Any]:
    """One destination's table from a TOML file: its keys at the top, or a single [[destinations]] entry."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        table = tomllib.loads(text)
    except OSError as exc:
        raise BadUsageError(f"dest add: cannot read {path!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadUsageError(f"dest add: {path!r} is not valid TOML: {exc}") from None
    entries = table.get("destinations")
    if isinstance(entries, list) and set(table) == {"destinations"}:
        if len(entries) != 1:
            raise BadUsageError(f"dest add: {path!r} holds {len(entries)} [[destinations]] tables; give one")
        return entries[0]
    return table


def run(args: argparse.Namespace, client: Client) -> Outcome:
    """Execute a parsed command against the daemon."""
    command = args.command
    if command == "status":
        s = client.status()
        return Outcome(s, render.status_text(s))
    if command == "health":
        h = client.health()
        return Outcome(h, render.health_text(h), 1 if h.get("status") == "unhealthy" else 0)
    if command == "metrics":
        m = client.metrics()
        if args.prometheus:
            return Outcome(m["text"], m["text"].rstrip("\n"))
        return Outcome(m, metrics_text(m["summary"]))
    if command == "backup":
        job = client.backup_create(args.source, args.strategy, args.priority, args.tags, args.description,
                                   args.destinations, metadata=_meta(args.meta), validate_level=args.validate,
                                   notify=args.notify, notify_on=args.notify_on)
        return _finish(client, job) if args.wait else _queued(job, f"backup of {args.source}")
    if command == "jobs":
        if args.job_id:
            job = client.job_get(args.job_id)
            return Outcome(job, render.job_detail(job))
        jobs = client.job_list(args.status, args.source, args.kind, args.limit)
        return Outcome(jobs, render.table(jobs, render.JOB_COLUMNS) or "no jobs")
    if command == "cancel":
        job = client.job_cancel(args.job_id)
        return Outcome(job, f"job {job.get('job_id', args.job_id)}: {render.fmt(job.get('status'))}")
    if command == "ls":
        points = client.restore_points(args.source)
        return Outcome(points, render.table(points, render.BACKUP_COLUMNS) or "no restore points")
    if command == "restore":
        tables = None
        if args.tables is not None:
            tables = [t.strip() for t in args.tables.split(",") if t.strip()]
            if not tables:
                raise BadUsageError("--tables: give at least one table name")
        try:
            at = iso_time(args.at) if args.at else None
        except BadUsageError as exc:
            raise BadUsageError(f"--at: {exc.message}") from None
        to = os.path.abspath(args.to)
        try:
            to.encode("utf-8")
        except UnicodeEncodeError:
            raise BadUsageError(f"--to {to!r} is not valid UTF-8, and the control protocol carries paths as UTF-8: "
                                "choose a UTF-8 path, or restore with `backupd restore`, which takes any path") from None
        job = client.restore_create(args.source, to, backup_id=args.backup_id, at=at,
                                    tables=tables, overwrite=args.overwrite, copy_selection=args.copy_selection)
        return _finish(client, job) if args.wait else _queued(job, f"restore of {args.source}")
    if command == "validate":
        job = client.validate(args.backup_id, args.level, destination=args.destination, all_copies=args.all_copies,
                              sample_percent=args.sample)
        return _finish(client, job) if args.wait else _queued(job, f"validation of {args.backup_id}")
    if command == "schedule":
        return _schedule(args, client)
    if command == "dest":
        return _dest(args, client)
    if command == "prune":
        plan = client.prune(dry_run=args.dry_run)
        if args.dry_run or not isinstance(plan.get("jobs"), list):
            return Outcome(plan, render.plan_text(plan, args.dry_run))
        jobs = [client.job_wait(j["job_id"]) for j in plan["jobs"]] if args.wait else plan["jobs"]
        failed = any(j.get("status") in FAILED_STATUSES for j in jobs)
        return Outcome(jobs if args.wait else plan, render.prune_jobs_text(jobs), 1 if failed else 0)
    if command == "inventory":
        inv = client.inventory(args.days)
        return Outcome(inv, render_inventory.inventory_text(inv))
    if command == "events":
        return _events(args, client)
    if command == "notify":
        return _notify(args, client)
    if command == "reload":
        reply = client.config_reload()
        return Outcome(reply, "config reloaded")
    raise BadUsageError(f"unknown command {command}")


def _schedule(args: argparse.Namespace, client: Client) -> Outcome:
    action = args.action
    if action == "ls":
        schedules = client.schedule_list()
        return Outcome(schedules, render.table(schedules, render.SCHEDULE_COLUMNS) or "no schedules")
    if action == "add":
        s = client.schedule_add(args.name, args.source, args.cron, strategy=args.strategy, timezone=args.timezone,
                                description=args.description, tags=args.tags, destinations=args.destinations,
                                job=args.job)
        return Outcome(s, f"added schedule {args.name}: next run {render.short_time(s.get('next_run'))}")
    if action == "rm":
        reply = client.schedule_remove(args.name)
        return Outcome(reply, f"removed schedule {args.name}")
    if action in ("pause", "resume"):
        s = client.schedule_pause(args.name) if action == "pause" else client.schedule_resume(args.name)
        return Outcome(s, f"schedule {args.name}: {render.schedule_state(s)}, next run "
                          f"{render.short_time(s.get('next_run'))}")
    stats = client.schedule_stats(args.name)
    return Outcome(stats, render.table(stats, render.STATS_COLUMNS) or "no schedules")


def _notify(args: argparse.Namespace, client: Client) -> Outcome:
    """`notify ls`, or `notify test NAME`: queue a test and wait until the notifier's last result is it."""
    if args.action == "ls":
        notifiers = client.notify_list()
        return Outcome(notifiers, render.table(notifiers, render.NOTIFIER_COLUMNS) or "no notifiers configured")
    queued = client.notify_test(args.name)
    deadline = time.monotonic() + max(0.0, args.wait_s)
    while True:
        row = next((n for n in client.notify_list() if n.get("name") == args.name), None) or {}
        if row.get("last_event_id") == queued["event_id"] or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    result = {**queued, "result": row.get("last_result") if row.get("last_event_id") == queued["event_id"] else None,
              "error": row.get("last_error")}
    if result["result"] == "delivered":
        return Outcome(result, f"notifier {args.name}: test notification delivered (event {queued['event_id']})")
    if result["result"] is None:
        return Outcome(result, "", 1, f"notifier {args.name}: no result after {args.wait_s:g}s; the test is still "
                                      f"queued (see `{PROG} notify ls`)")
    return Outcome(result, "", 1, f"notifier {args.name}: test notification failed: {render.fmt(result['error'])}")


def _events(args: argparse.Namespace, client: Client) -> Outcome:
    """The recent events; with --follow, the last FOLLOW_HISTORY of them and then each one as it happens
    (a JSON line each under --json), until Ctrl-C, as `journalctl -f` does."""
    as_json = getattr(args, "json", False)
    if not args.follow:
        events = list(client.events(args.types, args.source, follow=False, history=500))
        return Outcome(events, "\n".join(render.event_line(e) for e in events) or "no events")
    try:
        for event in client.events(args.types, args.source, history=FOLLOW_HISTORY):
            print(json.dumps(event) if as_json else render.event_line(event), flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `backupctl events -f | head -3`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return Outcome(None, "", printed=True)


def _queued(job: Mapping[str, Any], what: str) -> Outcome:
    return Outcome(job, f"{what}: job {render.fmt(job.get('job_id'))} {render.fmt(job.get('status'))}")


def _finish(client: Client, job: Mapping[str, Any]) -> Outcome:
    """Wait for `job` to end, with a progress bar on a terminal; the outcome of the finished job."""
    job_id = job.get("job_id")
    if not isinstance(job_id, str):
        raise InternalError(f"backupd answered without a job id: {render.fmt(job)}")
    bar = render.ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        if bar is not None:
            bar.update(job)
        finished = client.job_wait(job_id, on_progress=bar.update if bar else None)
    except KeyboardInterrupt:
        raise CancelledError(f"interrupted; job {job_id} is still running in backupd "
                             f"(cancel it with: {PROG} cancel {job_id})", {"job_id": job_id}) from None
    finally:
        if bar is not None:
            bar.clear()
    status = finished.get("status")
    raw_result, raw_error = finished.get("result"), finished.get("error")
    result: dict[str, Any] = raw_result if isinstance(raw_result, dict) else {}
    flat = {**result, "job_id": job_id, "status": status, "error": finished.get("error")}
    kind = render.fmt(finished.get("kind"))
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    why = f": {render.fmt(error.get('message'))} ({render.fmt(error.get('code'))})" if error else ""
    if finished.get("kind") == "validate" and result.get("checks") is not None:
        text = render.validation_report(result)
    else:
        text = render.job_summary(finished) or f"{kind} job {job_id}: {render.fmt(status)}"
        if isinstance(result.get("validation"), dict):  # backup --validate
            text += "\n" + render.validation_report(result["validation"])
    if status not in ("completed", "failed"):
        text += f" [{render.fmt(status)}]"
    if status == "failed":
        return Outcome(flat, "", 1, f"{kind} job {job_id} failed{why}")
    if status in FAILED_STATUSES:
        return Outcome(flat, text, 1, f"{kind} job {job_id} ended {status}{why}")
    if result.get("verdict") == "fail":
        return Outcome(flat, text, 1, f"{kind} job {job_id}: verdict fail")
    return Outcome(flat, text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(glue_relative_times(argv))
        as_json = getattr(args, "json", False)
        with Client(getattr(args, "socket", None), timeout=getattr(args, "timeout", DEFAULT_TIMEOUT_S)) as client:
            outcome = run(args, client)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except ClientError as exc:
        _fail(exc.to_dict(), as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        _fail({"error": "interrupted", "code": "cancelled"}, as_json)
        return 1
    except Exception as exc:  # a bug: still one line, never a traceback
        _fail({"error": f"internal error: {type(exc).__name__}: {exc}", "code": "internal_error"}, as_json)
        return 1
    try:
        if outcome.printed:
            pass
        elif as_json:
            print(json.dumps(outcome.result))
        elif outcome.text:
            print(outcome.text)
        sys.stdout.flush()
    except BrokenPipeError:  # `backupctl jobs | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if outcome.error and not as_json:
        _fail({"error": outcome.error}, False)
    return outcome.exit_code


def _fail(err: dict[str, Any], as_json: bool) -> None:
    # Messages may quote multi-line text from the daemon: keep it one line.
    err = {**err, "error": " ".join(str(err["error"]).split())}
    sys.stderr.write((json.dumps(err) if as_json else f"{PROG}: error: {err['error']}") + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
