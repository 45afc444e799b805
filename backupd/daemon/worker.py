"""The process one job runs in. The daemon starts it through a forkserver, talks to it over a pipe,
and cancels it with SIGTERM: the engine then stops at its next progress report, aborting uploads,
so no partial artifact is left.

Messages to the daemon: ("progress", dict) ... then exactly one ("done", status, result, error).

A job is throughput work: its process (and every thread the engine starts in it, since Linux
threads inherit the nice value of the thread that creates them) runs WORKER_NICE steps below the
daemon, so on a busy machine the control socket, the supervisor and the application whose database
is being backed up get the CPU first. On an idle machine this costs nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from backupd import log as logsetup
from backupd.errors import BackupdError, Cancelled

# Measured with bench/bench_control.py on 2 cores with two backups running: `status` p99 ~10 ms with
# the workers at the daemon's priority, ~0.3-1 ms with them 10 steps nicer.
WORKER_NICE = 10


def run_job(config: Any, job_id: str, kind: str, source: str, args: dict[str, Any], conn: Connection,
            log_level: str) -> None:
    """Process entry point."""
    try:
        os.nice(WORKER_NICE)  # before the engine starts any thread: they all inherit it
    except OSError:
        pass  # lowering one's own priority is always allowed; never fail a job over it
    logsetup.configure(log_level, json=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def sink(progress) -> None:
        conn.send(("progress", progress.to_dict()))
        if stop.is_set():
            raise Cancelled("the job was cancelled")

    from structlog.contextvars import bind_contextvars

    bind_contextvars(job_id=job_id, source=source)
    try:
        status, result, error = _run(config, job_id, kind, source, args, sink)
    except Cancelled as exc:
        status, result, error = "cancelled", None, {"code": exc.code, "message": str(exc)}
    except BackupdError as exc:
        status, result, error = "failed", None, {"code": exc.code, "message": str(exc), "retryable": exc.retryable}
    except Exception as exc:  # a bug: reported as a failed job, the daemon keeps running
        status, result, error = "failed", None, {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
    conn.send(("done", status, result, error))
    conn.close()


def _run(config, job_id, kind, source, args, sink) -> tuple[str, Any, dict | None]:
    from backupd.engine.context import open_context

    ctx = open_context(config.with_copy_selection(args.get("copy_selection")))
    try:
        if kind == "backup":
            from backupd.engine.backup import run_backup

            backup = run_backup(ctx, source, args.get("strategy", "auto"), tags=tuple(args.get("tags", ())),
                                description=args.get("description", ""), metadata=args.get("metadata") or {},
                                progress=sink, job_id=job_id, destinations=args.get("destinations"))
            result = backup.to_json()
            if backup.status == "partial":
                return "partial", result, {"code": "partial", "message": "copies failed on "
                                           + ", ".join(f"{d} ({why})" for d, why in backup.failed.items())}
            level = args.get("validate_level")
            if not level:
                return backup.status, result, None
            report = _validate(ctx, backup.backup_id, level).to_json()
            result["validation"] = report
            if report["verdict"] == "fail":
                return "failed", result, {"code": "verification_failed",
                                          "message": f"backup {backup.backup_id} failed {level} validation"}
            return ("completed_with_warnings" if report["verdict"] == "warn" else "completed"), result, None
        if kind == "restore":
            from datetime import datetime

            from pathlib import Path

            from backupd.daemon.access import check_restore_target
            from backupd.engine.restore import run_restore

            check_restore_target(Path(args["to"]), config.restore_dirs())  # again: the request was checked a while ago
            at = datetime.fromisoformat(args["at"]) if args.get("at") else None
            res = run_restore(ctx, source, args["to"], backup_id=args.get("backup_id"), at=at,
                              tables=args.get("tables"), overwrite=bool(args.get("overwrite")), progress=sink)
            return "completed", res.to_json(), None
        if kind == "prune":
            from backupd.engine.prune import run_prune

            report = run_prune(ctx, source, dry_run=False)
            if report["errors"]:
                return "partial", report, {"code": "partial", "message": "; ".join(report["errors"])}
            return "completed", report, None
        if kind == "resync":
            from backupd.engine.resync import resync

            report = resync(ctx, source).to_json()
            if report["failed"]:
                return "partial", report, {"code": "partial", "message": "; ".join(
                    f"{f['destination']}: {f['error']}" for f in report["failed"])}
            return "completed", report, None
        if kind == "validate":
            from backupd.engine.copy_choice import CopyChoice

            choice = CopyChoice(args.get("destination"), bool(args.get("all_copies")), args.get("sample_percent"))
            report = _validate(ctx, args["backup_id"], args["level"], choice).to_json()
            if report["verdict"] == "fail":
                return "failed", report, {"code": "verification_failed",
                                          "message": f"backup {args['backup_id']} failed {args['level']} validation"}
            return ("completed_with_warnings" if report["verdict"] == "warn" else "completed"), report, None
        raise BackupdError(f"unknown job kind {kind!r}")
    finally:
        ctx.close()


def _validate(ctx, backup_id: str, level: str, choice=None):
    from backupd.engine.copy_choice import CopyChoice
    from backupd.engine.validate import validate_backup

    return validate_backup(ctx, backup_id, level, choice or CopyChoice())
