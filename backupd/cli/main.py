"""`backupd`: the one-shot command line. Exit codes: 0 success, 1 the operation failed, 2 bad usage or config.

Errors are one line on stderr (a JSON object with `error` and `code` under --json), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from backupd_client.cli_parser import glue_relative_times

from backupd import __version__
from backupd import log as logsetup
from backupd.core.metadata import parse_meta
from backupd.core.sampling import check_percent
from backupd.core.units import parse_instant
from backupd.core.vocab import (COPY_SELECTIONS, REQUESTED_STRATEGIES, VALIDATION_LEVELS, JobStatus, RequestedStrategy,
                                Verdict)
from backupd.errors import BackupdError, UsageError


CONFIG_ENV = "BACKUPD_CONFIG"
DEFAULT_CONFIG = Path("/etc/backupd/backupd.toml")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def config_path(given: Path | None, environ: Mapping[str, str]) -> Path:
    """The config file: `-c`, else $BACKUPD_CONFIG, else /etc/backupd/backupd.toml; UsageError when the
    one chosen by default does not exist (saying how to choose another)."""
    if given is not None:
        return given
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    if not DEFAULT_CONFIG.exists():
        raise UsageError(f"no config file at {DEFAULT_CONFIG} (the default); give -c PATH or set {CONFIG_ENV}",
                         hint="config/backupd.toml in the source tree is a commented sample to start from")
    return DEFAULT_CONFIG


def parse_at(value: str, now: datetime) -> datetime:
    """`--at`: an ISO 8601 time, `now`, or `-DURATION` before `now`."""
    try:
        return parse_instant(value, now)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None


def restore_point(args: argparse.Namespace, now: datetime) -> tuple[str | None, datetime | None]:
    """`--backup ID` or `--at WHEN` as (backup_id, at); `--backup latest` is the newest point, as at now."""
    if args.backup_id == "latest":
        return None, now
    return args.backup_id, parse_at(args.at, now) if args.at else None


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return check_percent(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _meta(items: list[str]) -> dict[str, str]:
    try:
        return parse_meta(items)
    except ValueError as exc:
        raise UsageError(f"--meta: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="backupd", description="Backups of SQLite databases: full, incremental, differential.")
    p.add_argument("-v", "--verbose", action="store_true", help="log events (JSON) to stderr")
    p.add_argument("--version", action="version", version=f"backupd {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def cmd(name: str, help: str, config: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        if config:
            sp.add_argument("-c", "--config", type=Path, metavar="PATH",
                            help=f"the config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    k = cmd("keygen", "write a new 32-byte key file (mode 0600)", config=False)
    k.add_argument("path", type=Path)

    b = cmd("backup", "back up one source now")
    b.add_argument("--source", required=True)
    b.add_argument("--strategy", choices=REQUESTED_STRATEGIES, default=RequestedStrategy.AUTO)
    b.add_argument("--tag", action="append", default=[], dest="tags")
    b.add_argument("--description", default="")
    b.add_argument("--destination", action="append", dest="destinations", metavar="NAME",
                   help="send to this destination only (repeatable; default: every enabled one)")
    b.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="free-form metadata recorded with the backup (repeatable)")
    b.add_argument("--validate", choices=VALIDATION_LEVELS, metavar="LEVEL",
                   help="validate the backup at this level (quick, standard, deep) once it is stored")

    ls = cmd("list", "list restore points")
    ls.add_argument("--source")

    inv = cmd("inventory", "totals by source, strategy and destination; chains, missing copies, verification")
    inv.add_argument("--days", type=int, default=30, help="verification coverage over the last N days")

    r = cmd("restore", "restore a backup to a new file")
    r.add_argument("--source", required=True)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--backup", dest="backup_id", metavar="ID", help="this backup (`latest`: the newest restore point)")
    which.add_argument("--at", type=str, metavar="WHEN",
                       help="the newest restore point at or before WHEN: ISO 8601 with a zone, `now`, or `-2h`")
    r.add_argument("--to", type=Path, help="the database file to create (required unless --plan)")
    r.add_argument("--plan", action="store_true",
                   help="only show which backups of the chain would be read from which destination")
    r.add_argument("--tables", help="comma-separated table names: restore only these (with their indexes)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing file, atomically, after validation")
    r.add_argument("--copy-selection", choices=COPY_SELECTIONS,
                   help="which copy to read first (default: [restore] copy_selection in the config)")

    v = cmd("verify", "validate a backup and its chain")
    v.add_argument("--backup", dest="backup_id", required=True)
    v.add_argument("--level", choices=VALIDATION_LEVELS)
    copies = v.add_mutually_exclusive_group()
    copies.add_argument("--destination", metavar="NAME", help="check the copies on this destination")
    copies.add_argument("--all-copies", action="store_true", help="check every copy of every chain member")
    v.add_argument("--sample", type=_percent, metavar="PERCENT",
                   help="read this share of each copy's blocks in depth, a different share each run")

    d = cmd("run", "run the daemon in the foreground (systemd supervises it)")
    d.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    pr = cmd("prune", "apply retention ([retention], per-destination max_age_days/max_count)")
    pr.add_argument("--source", help="only this source (default: all)")
    pr.add_argument("--dry-run", action="store_true", help="only show the plan, with a reason for every decision")

    rs = cmd("resync", "copy backups onto the destinations that lack them (after a partial backup)")
    rs.add_argument("--source", help="only this source (default: all)")

    c = cmd("catalog", "catalog maintenance")
    c.add_argument("action", choices=["rebuild"])

    cf = sub.add_parser("config", help="check the config, or print its JSON Schema")
    csub = cf.add_subparsers(dest="action", required=True, parser_class=_Parser)
    cv = csub.add_parser("validate", help="every problem of the config and of this machine for it (exit 2)")
    cv.add_argument("-c", "--config", type=Path, metavar="PATH",
                    help=f"the config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
    cv.add_argument("--probe", action="store_true", help="also reach and write to every enabled destination")
    cv.add_argument("--json", action="store_true", help="machine-readable output")
    csub.add_parser("schema", help="the JSON Schema of backupd.toml, as JSON (for editors and CI)")
    return p


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(p) -> None:
        eta = f" eta {p.eta_s:.0f}s" if p.eta_s is not None else ""
        sys.stderr.write(f"\r{p.phase:<12} {p.percent:5.1f}% {p.rate / 2**20:7.1f} MiB/s{eta}   ")
        sys.stderr.flush()

    return show


def _engine(args):
    """The engine on the config file with the destinations changed at run time (see config.overlay).

    For `catalog rebuild`, a damaged state database is first moved aside (`args.repaired` says how)."""
    import structlog

    from backupd.config import load_config
    from backupd.config.overlay import with_runtime_destinations
    from backupd.engine.context import open_context, utc_now
    from backupd.state.repair import repair

    config = load_config(args.config)
    args.repaired = repair(config.state.dir, utc_now()) if args.command == "catalog" else None
    applied = with_runtime_destinations(config)
    for problem in applied.problems:
        structlog.get_logger("backupd.cli").warning("runtime_destination_left_out", problem=problem)
    return open_context(applied.config, copy_selection=getattr(args, "copy_selection", None))


def _human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _meta_text(metadata: dict[str, Any]) -> str:
    return "".join(f"  {k}={v}" for k, v in sorted(metadata.items()))


def _report_text(j: dict[str, Any]) -> str:
    lines = [f"{c['status']:<5} {c['severity']:<8} {c['id']}: {c['message']}" for c in j["checks"]]
    return "\n".join([*lines, *(f"recommendation: {r}" for r in j["recommendations"]), f"verdict: {j['verdict']}"])


def run(args) -> tuple[Any, str, int]:
    """Execute a parsed command; returns (JSON-able result, human text, exit code)."""
    if args.command == "keygen":
        from backupd.engine.crypto import keygen

        kid = keygen(args.path)
        return {"path": str(args.path), "key_id": kid}, f"wrote {args.path} (key id {kid}); keep a copy offline", 0
    if args.command == "config":
        from backupd.cli import config_cmd

        if args.action == "schema":
            return None, json.dumps(config_cmd.schema(), indent=2), 0
        return config_cmd.validate(args.config, probe=args.probe)
    if args.command == "run":
        from backupd.daemon.main import run as run_daemon

        return None, "", run_daemon(args.config, args.log_level)
    ctx = _engine(args)
    try:
        if args.command == "backup":
            from backupd.engine.backup import run_backup

            b = run_backup(ctx, args.source, args.strategy, tags=tuple(args.tags), description=args.description,
                           metadata=_meta(args.meta), progress=_progress_printer(), destinations=args.destinations)
            j = b.to_json()
            text = (f"backup {j['id']} ({j['strategy']}): {j['changed_pages']} of {j['page_count']} pages, "
                    f"stored {_human_size(j['stored_bytes'])}")
            if b.failed:
                lines = [f"  {c.destination}: stored" for c in b.copies]
                lines += [f"  {name}: FAILED: {why}" for name, why in b.failed.items()]
                head = (f"partial: success policy {b.policy!r} not met" if b.status == JobStatus.PARTIAL
                        else f"success policy {b.policy!r} met, with failed copies")
                text += "\n" + head + "\n" + "\n".join(lines)
            for warning in b.manifest.warnings:  # stored anyway, but the operator must hear of it
                sys.stderr.write(f"backupd: warning: {warning}\n")
            if b.status == JobStatus.PARTIAL:
                return j, text, 1
            if args.validate:
                from backupd.engine.validate import validate_backup

                j["validation"] = report = validate_backup(ctx, b.backup_id, args.validate).to_json()
                text += "\n" + _report_text(report)
                return j, text, 1 if report["verdict"] == Verdict.FAIL else 0
            return j, text, 0
        if args.command == "list":
            if args.source:
                ctx.config.source(args.source)
            rows = [b.to_json() for b in ctx.catalog.backups(args.source)]
            text = "\n".join(f"{r['id']}  {r['source']:<12} {r['strategy']:<12} {r['created_at']}  "
                             f"{_human_size(r['stored_bytes']):>10}" + _meta_text(r["metadata"])
                             + "".join(f"\n    WARNING {w}" for w in r["warnings"]) for r in rows) or (
                "no restore points in the catalog (on a new machine or state dir, run `backupd catalog rebuild` first)")
            return rows, text, 0
        if args.command == "inventory":
            from backupd.engine.holdings import inventory
            from backupd_client.render_inventory import inventory_text

            if args.days < 1:
                raise UsageError("inventory: --days must be at least 1")
            j = inventory(ctx.catalog, ctx.config, ctx.now(), args.days)
            return j, inventory_text(j), 0
        if args.command == "restore" and args.plan:
            from backupd.engine.restore import describe_plan, plan_restore

            backup_id, at = restore_point(args, ctx.now())
            j = describe_plan(ctx, plan_restore(ctx, args.source, backup_id=backup_id, at=at))
            lines = [f"{m['id']}  {m['strategy']:<12} from {m['destination']} ({_human_size(m['stored_bytes'])})"
                     + (f", then {', '.join(m['fallbacks'])}" if m["fallbacks"] else "") for m in j["chain"]]
            return j, "\n".join([f"restore {j['backup_id']} reads:", *lines]), 0
        if args.command == "restore":
            from backupd.engine.restore import run_restore

            if args.to is None:
                raise UsageError("restore: --to PATH is required (or --plan to only show the plan)")

            tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
            if args.tables is not None and not tables:
                raise UsageError("--tables: give at least one table name")
            backup_id, at = restore_point(args, ctx.now())
            res = run_restore(ctx, args.source, args.to, backup_id=backup_id, at=at, tables=tables,
                              overwrite=args.overwrite, progress=_progress_printer())
            j = res.to_json()
            gap = f" ({j['gap_s']:.0f}s before the asked time)" if j["gap_s"] is not None else ""
            return j, f"restored {j['backup_id']}{gap} to {j['path']} (chain of {len(j['chain'])})", 0
        if args.command == "verify":
            from backupd.engine.copy_choice import CopyChoice
            from backupd.engine.validate import validate_backup

            choice = CopyChoice(args.destination, args.all_copies, args.sample)
            j = validate_backup(ctx, args.backup_id, args.level or ctx.config.validation.default_level, choice).to_json()
            return j, _report_text(j), 1 if j["verdict"] == Verdict.FAIL else 0
        if args.command == "prune":
            from backupd.engine.prune import run_prune

            sources = [ctx.config.source(args.source).name] if args.source else [s.name for s in ctx.config.sources]
            plans = {s: run_prune(ctx, s, dry_run=args.dry_run) for s in sources}
            verb = "would delete" if args.dry_run else "deleted"
            lines = []
            for plan in plans.values():
                lines += [f"{verb} {d['id']}: {'; '.join(d['reasons'])}" for d in plan["delete"]]
                lines += [f"{verb} {d['id']} on {d['destination']}: {'; '.join(d['reasons'])}" for d in plan["delete_copies"]]
                lines += [f"keep {k['id']}: {'; '.join(k['reasons'])}" for k in plan["keep"]]
                lines += [f"error: {e}" for e in plan["errors"]]
            return plans, "\n".join(lines) or "nothing to prune", 1 if any(p["errors"] for p in plans.values()) else 0
        if args.command == "resync":
            from backupd.engine.resync import resync

            sources = [ctx.config.source(args.source).name] if args.source else [s.name for s in ctx.config.sources]
            reports = {s: resync(ctx, s).to_json() for s in sources}
            copied = sum(len(r["copied"]) for r in reports.values())
            failed = [f"{f['destination']}: {f['backup_id']}: {f['error']}" for r in reports.values() for f in r["failed"]]
            text = "\n".join([f"resync: {copied} copies made", *failed])
            return reports, text, 1 if failed else 0
        if args.command == "catalog":
            from backupd.engine.inventory import rebuild_catalog

            report = {**rebuild_catalog(ctx), "state_db": args.repaired.to_json() if args.repaired else None}
            lines = [args.repaired.describe()] if args.repaired else []
            lines.append(f"catalog rebuilt: {report['backups']} backups")
            if report["unreadable"]:
                lines[-1] += f"; {report['unreadable']} sidecars could not be read:"
                lines += [f"  {p['destination']}:{p['key']}: {p['error']}" for p in report["problems"]]
            return report, "\n".join(lines), 1 if report["unreadable"] else 0
    finally:
        ctx.close()
    raise UsageError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(glue_relative_times(argv))
        if "config" in args:
            args.config = config_path(args.config, os.environ)
        logsetup.configure("info" if args.verbose else "off", stream=sys.stderr, json=True)
        result, text, code = run(args)
    except BackupdError as exc:
        _fail(exc.to_dict(), as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        _fail({"error": "interrupted", "code": "cancelled"}, as_json)
        return 1
    except Exception as exc:  # a bug: still one line, never a traceback
        _fail({"error": f"internal error: {type(exc).__name__}: {exc}", "code": "internal_error"}, as_json)
        return 1
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    try:
        if result is not None or text:
            print(json.dumps(result, indent=None) if as_json else text)
        sys.stdout.flush()
    except BrokenPipeError:  # `backupd list | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _fail(err: dict, as_json: bool) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    # Messages may quote multi-line text (SQLite's integrity_check report, a path): keep it one line.
    text = " ".join(part.strip() for part in str(err["error"]).splitlines() if part.strip())
    sys.stderr.write((json.dumps(err) if as_json else f"backupd: error: {text}") + "\n")


if __name__ == "__main__":
    sys.exit(main())
