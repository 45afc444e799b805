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
import tomllib
from dataclasses import dataclass
from typing import Any, NoReturn

from . import render
from .client import DEFAULT_TIMEOUT_S, Client, iso_time
from .errors import BadUsageError, CancelledError, ClientError, InternalError
from .protocol import (COPY_SELECTIONS, DEFAULT_SOCKET, FAILED_STATUSES, JOB_KINDS, PRIORITIES, SCHEDULE_JOBS,
                       SOCKET_ENV, STRATEGIES, VALIDATION_LEVELS, JobStatus)

PROG = "backupctl"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        raise BadUsageError(f"{where}: {message}" if where else message)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"a sample is a percentage of blocks above 0 and at most 100, not {text}")
    return value


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


def build_parser() -> argparse.ArgumentParser:
    # The global options sit on every (sub)parser with SUPPRESS defaults, so they work before or after
    # the command and a later parser never resets what an earlier one read.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (errors too, as a JSON object on stderr)")
    common.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                        help=f"control socket (default: ${SOCKET_ENV}, else {DEFAULT_SOCKET})")
    common.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=argparse.SUPPRESS,
                        help=f"wait this long for each answer (default {DEFAULT_TIMEOUT_S:g})")

    p = _Parser(prog=PROG, parents=[common], description="Control a running backupd.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def cmd(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=help, description=help, parents=[common])

    cmd(sub, "status", "the daemon's version, uptime and job counts")
    cmd(sub, "health", "overall health and each destination's (exit 1 when unhealthy)")

    b = cmd(sub, "backup", "back up one source now")
    b.add_argument("--source", required=True)
    b.add_argument("--strategy", choices=STRATEGIES, default="auto")
    b.add_argument("--priority", choices=PRIORITIES, default="normal")
    b.add_argument("--tag", action="append", default=[], dest="tags")
    b.add_argument("--description", default="")
    b.add_argument("--destination", action="append", dest="destinations", metavar="NAME",
                   help="send to this destination only (repeatable; default: every enabled one)")
    b.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="free-form metadata recorded with the backup (repeatable)")
    b.add_argument("--validate", choices=VALIDATION_LEVELS, metavar="LEVEL",
                   help="validate the backup at this level (quick, standard, deep) once it is stored")
    b.add_argument("--wait", action="store_true", help="wait for the backup to finish (progress bar on a terminal)")

    j = cmd(sub, "jobs", "list jobs (newest first), or show one")
    j.add_argument("job_id", nargs="?", metavar="ID")
    j.add_argument("--status", choices=[s.value for s in JobStatus])
    j.add_argument("--source")
    j.add_argument("--kind", choices=JOB_KINDS)
    j.add_argument("--limit", type=_limit)

    c = cmd(sub, "cancel", "cancel a queued, waiting or running job")
    c.add_argument("job_id", metavar="ID")

    ls = cmd(sub, "ls", "list restore points")
    ls.add_argument("--source")

    r = cmd(sub, "restore", "restore a backup to a new file")
    r.add_argument("--source", required=True)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--backup", dest="backup_id", metavar="ID")
    which.add_argument("--at", metavar="TIME",
                       help="ISO 8601 with a timezone: the newest restore point at or before it")
    r.add_argument("--to", required=True, metavar="PATH")
    r.add_argument("--tables", help="comma-separated table names: restore only these (with their indexes)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing file, atomically, after validation")
    r.add_argument("--copy-selection", choices=COPY_SELECTIONS,
                   help="which copy to read first (default: the daemon's [restore] copy_selection)")
    r.add_argument("--wait", action="store_true", help="wait for the restore to finish")

    v = cmd(sub, "validate", "validate a backup and its chain")
    v.add_argument("backup_id", metavar="ID")
    v.add_argument("--level", choices=VALIDATION_LEVELS)
    copies = v.add_mutually_exclusive_group()
    copies.add_argument("--destination", metavar="NAME", help="check the copies on this destination")
    copies.add_argument("--all-copies", action="store_true", help="check every copy of every chain member")
    v.add_argument("--sample", type=_percent, metavar="PERCENT",
                   help="read this share of each copy's blocks in depth, a different share each run")
    v.add_argument("--wait", action="store_true", help="wait for the report")

    s = cmd(sub, "schedule", "list, add, remove, pause and resume schedules; their statistics")
    ssub = s.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    cmd(ssub, "ls", "list schedules")
    sa = cmd(ssub, "add", "add a schedule at run time (kept across restarts)")
    sa.add_argument("name", metavar="NAME")
    sa.add_argument("--job", choices=SCHEDULE_JOBS, help="what it runs (default backup)")
    sa.add_argument("--source", required=True)
    sa.add_argument("--cron", required=True, metavar="EXPR", help='5-field cron expression, e.g. "15 3 * * *"')
    sa.add_argument("--strategy", choices=STRATEGIES)
    sa.add_argument("--timezone", metavar="TZ", help="IANA name, e.g. Europe/Paris")
    sa.add_argument("--description")
    sa.add_argument("--tag", action="append", dest="tags")
    sa.add_argument("--destination", action="append", dest="destinations", metavar="NAME",
                    help="its backups go to this destination only (repeatable; default: every enabled one)")
    for action, help in (("rm", "remove a run-time schedule"), ("pause", "stop a schedule firing"),
                         ("resume", "let a paused schedule fire again")):
        cmd(ssub, action, help).add_argument("name", metavar="NAME")
    cmd(ssub, "stats", "runs, success rate, reliability, mean duration, next run").add_argument(
        "name", nargs="?", metavar="NAME")

    d = cmd(sub, "dest", "destinations and their health")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    cmd(dsub, "ls", "list destinations")
    dh = cmd(dsub, "health", "probe destinations now and show the result (exit 1 when one is unhealthy)")
    dh.add_argument("name", nargs="?", metavar="NAME")
    dh.add_argument("--cached", action="store_true", help="show the daemon's latest probes without probing again")
    da = cmd(dsub, "add", "add a destination at run time (kept across restarts)")
    da.add_argument("file", metavar="FILE",
                    help="TOML file holding one destination's keys, as in [[destinations]] (absolute paths); - reads stdin")
    for action, help in (("enable", "send backups to a disabled destination again"),
                         ("disable", "stop using a destination for backups and restores; it stays configured")):
        cmd(dsub, action, help).add_argument("name", metavar="NAME")
    drm = cmd(dsub, "rm", "forget a destination added at run time (its files stay where they are)")
    drm.add_argument("name", metavar="NAME")
    drm.add_argument("--force", action="store_true", help="even when it holds the only copy of some backups")
    rs = cmd(dsub, "resync", "copy backups onto the destinations that lack them (after a partial backup)")
    rs.add_argument("--source", metavar="S")
    rs.add_argument("--wait", action="store_true", help="wait for the resync jobs and show their outcome")

    pr = cmd(sub, "prune", "apply retention; explains every decision")
    pr.add_argument("--dry-run", action="store_true", help="only show what would be deleted, and why")
    pr.add_argument("--wait", action="store_true", help="wait for the prune jobs and show what they deleted")

    cmd(sub, "reload", "reload the daemon's config file (as SIGHUP does)")
    return p


@dataclass
class Outcome:
    result: Any  # what --json prints on stdout
    text: str  # what a person sees on stdout ("" for nothing)
    exit_code: int = 0
    error: str | None = None  # one stderr line in human mode (a failed job)


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
    if command == "backup":
        job = client.backup_create(args.source, args.strategy, args.priority, args.tags, args.description,
                                   args.destinations, metadata=_meta(args.meta), validate_level=args.validate)
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


def _queued(job: dict[str, Any], what: str) -> Outcome:
    return Outcome(job, f"{what}: job {render.fmt(job.get('job_id'))} {render.fmt(job.get('status'))}")


def _finish(client: Client, job: dict[str, Any]) -> Outcome:
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
    result = finished.get("result") if isinstance(finished.get("result"), dict) else {}
    flat = {**result, "job_id": job_id, "status": status, "error": finished.get("error")}
    kind = render.fmt(finished.get("kind"))
    error = finished.get("error") if isinstance(finished.get("error"), dict) else {}
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
        args = build_parser().parse_args(argv)
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
        if as_json:
            print(json.dumps(outcome.result))
        elif outcome.text:
            print(outcome.text)
        sys.stdout.flush()
    except BrokenPipeError:  # `backupctl jobs | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
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
