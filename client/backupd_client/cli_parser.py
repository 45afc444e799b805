"""`backupctl`'s command line: the parser of every command and its options (run by `cli`).

Bad usage raises BadUsageError (exit 2), never argparse's own exit; `--json`, `--socket` and
`--timeout` go before or after the command.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from . import __version__
from .client import DEFAULT_TIMEOUT_S
from .errors import BadUsageError
from .protocol import (COPY_SELECTIONS, DEFAULT_SOCKET, JOB_KINDS, NOTIFY_ON, PRIORITIES, SCHEDULE_JOBS, SOCKET_ENV,
                       STRATEGIES, VALIDATION_LEVELS, JobStatus)

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
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def cmd(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=help, description=help, parents=[common])

    cmd(sub, "status", "the daemon's version, uptime and job counts")
    cmd(sub, "health", "overall health and each destination's (exit 1 when unhealthy)")
    m = cmd(sub, "metrics", "service and performance figures per source and destination")
    m.add_argument("--prometheus", action="store_true", help="the Prometheus text exposition instead")

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
    b.add_argument("--notify", action="append", default=[], metavar="NAME",
                   help="also send its outcome to this notifier (repeatable; see --notify-on)")
    b.add_argument("--notify-on", action="append", default=[], choices=NOTIFY_ON, dest="notify_on",
                   help="which outcomes --notify's notifiers get: failure (default), success, completion (repeatable)")
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
    which.add_argument("--backup", dest="backup_id", metavar="ID", help="this backup (`latest`: the newest restore point)")
    which.add_argument("--at", metavar="WHEN",
                       help="the newest restore point at or before WHEN: ISO 8601 with a zone, `now`, or `-2h`"
                            " (relative to the daemon's clock)")
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

    inv = cmd(sub, "inventory", "what the backups hold: totals, restore points, chains, missing copies, verification")
    inv.add_argument("--days", type=int, metavar="N", help="verification coverage over the last N days (default 30)")
    cmd(sub, "reload", "reload the daemon's config file (as SIGHUP does)")

    n = cmd(sub, "notify", "the notifiers: their queues and last deliveries, or send one a test")
    nsub = n.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    cmd(nsub, "ls", "each notifier's state, queue length and last delivery")
    nt = cmd(nsub, "test", "send a notifier.test event and wait for its delivery (exit 1 when it failed)")
    nt.add_argument("name", metavar="NAME")
    nt.add_argument("--wait-s", type=float, default=15.0, metavar="S", dest="wait_s",
                    help="how long to wait for the delivery's result (default 15)")

    ev = cmd(sub, "events", "the recent events (backup.failed, destination.unhealthy, ...), or follow them")
    ev.add_argument("--follow", "-f", action="store_true", help="the last 10 events, then each one as it happens, until Ctrl-C")
    ev.add_argument("--type", action="append", default=[], dest="types", metavar="PATTERN",
                    help="only these types: backup.failed, backup.*, *.failed (repeatable)")
    ev.add_argument("--source", metavar="NAME", help="only this source's events")
    return p


def glue_relative_times(argv: list[str]) -> list[str]:
    """`--at -2h` as `--at=-2h`: argparse would take `-2h` for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--at" and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"--at={arg}"
        else:
            out.append(arg)
    return out
