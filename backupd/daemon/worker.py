"""The process one job runs in. The daemon starts it through a forkserver, talks to it over a pipe,
and cancels it with SIGTERM: the engine then stops at its next progress report, aborting uploads,
so no partial artifact is left.

Messages to the daemon: ("progress", dict) and ("log", line) ... then exactly one ("done", status,
result, error). Each structlog event of the job is also sent as one short `log` line, so the daemon
keeps the last ones (the log tail of a failure's event) without reading the job's stdout.

A job is throughput work: its process (and every thread the engine starts in it, since Linux
threads inherit the nice value of the thread that creates them) runs WORKER_NICE steps below the
daemon, so on a busy machine the control socket, the supervisor and the application whose database
is being backed up get the CPU first. On an idle machine this costs nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import MutableMapping
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, assert_never

import structlog

from backupd import log as logsetup
from backupd.core.vocab import BLOCKING_SEVERITIES, CheckStatus, JobStatus, Verdict
from backupd.daemon.jobspec import BackupJob, JobSpec, PruneJob, ResyncJob, RestoreJob, ValidateJob
from backupd.engine.copy_choice import CopyChoice
from backupd.errors import BackupdError, Cancelled, code_retryable

if TYPE_CHECKING:
    from backupd.config import Config
    from backupd.engine.context import EngineContext
    from backupd.engine.progress import Progress, ProgressSink

# Measured with bench/bench_control.py on 2 cores with two backups running: `status` p99 ~10 ms with
# the workers at the daemon's priority, ~0.3-1 ms with them 10 steps nicer.
WORKER_NICE = 10
LOG_LINE_CHARS = 300
_TAIL_SKIP = frozenset({"event", "level", "timestamp", "job_id", "source"})
Outcome = tuple[str, Any, dict[str, Any] | None]  # the job's status, result and error


def run_job(config: Config, job_id: str, spec: JobSpec, conn: Connection, log_level: str) -> None:
    """Process entry point."""
    try:
        os.nice(WORKER_NICE)  # before the engine starts any thread: they all inherit it
    except OSError:
        pass  # lowering one's own priority is always allowed; never fail a job over it
    logsetup.configure(log_level)  # JSON or console as the daemon decided, on the stdout they share
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sending = threading.Lock()  # the engine's threads log and report progress too

    def send(message: tuple[Any, ...]) -> None:
        """Raises when the pipe broke: a job whose daemon died stops at its next progress report."""
        with sending:
            conn.send(message)

    def tail(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in _TAIL_SKIP)
        try:
            send(("log", f"{event.get('level', _method)} {event.get('event')} {fields}".strip()[:LOG_LINE_CHARS]))
        except (OSError, ValueError):  # closed (the job is done) or broken: logging goes on
            pass
        return event

    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[*processors[:-1], tail, processors[-1]])  # before the renderer

    def sink(progress: Progress) -> None:
        send(("progress", progress.to_dict()))
        if stop.is_set():
            raise Cancelled("the job was cancelled")

    from structlog.contextvars import bind_contextvars

    bind_contextvars(job_id=job_id, source=spec.source)
    try:
        status, result, error = _run(config, job_id, spec, sink)
    except Cancelled as exc:
        status, result, error = JobStatus.CANCELLED, None, {"code": exc.code, "message": str(exc)}
    except BackupdError as exc:
        status, result, error = JobStatus.FAILED, None, {"code": exc.code, "message": str(exc),
                                                         "retryable": exc.retryable}
    except Exception as exc:  # a bug: reported as a failed job, the daemon keeps running
        status, result, error = JobStatus.FAILED, None, {"code": "internal_error",
                                                         "message": f"{type(exc).__name__}: {exc}"}
    send(("done", status, result, error))
    with sending:
        conn.close()


def _run(config: Config, job_id: str, spec: JobSpec, sink: ProgressSink) -> Outcome:
    """Run the job `spec` describes on an engine context of its own."""
    from backupd.engine.context import open_context

    ctx = open_context(config, copy_selection=spec.copy_selection if isinstance(spec, RestoreJob) else None)
    try:
        match spec:
            case BackupJob():
                return _backup(ctx, job_id, spec, sink)
            case RestoreJob():
                return _restore(ctx, config, spec, sink)
            case ValidateJob():
                report = _validate(ctx, spec.backup_id, spec.level, spec.choice)
                return judge_validation(report, report, spec.backup_id, spec.level, new_backup=False)
            case PruneJob():
                return _prune(ctx, spec)
            case ResyncJob():
                return _resync(ctx, spec)
            case _:
                assert_never(spec)
    finally:
        ctx.close()


def _backup(ctx: EngineContext, job_id: str, spec: BackupJob, sink: ProgressSink) -> Outcome:
    from backupd.engine.backup import run_backup

    backup = run_backup(ctx, spec.source, spec.strategy, tags=spec.tags, description=spec.description,
                        metadata=spec.metadata, progress=sink, job_id=job_id, destinations=spec.destinations)
    result = backup.to_json()
    if backup.status == JobStatus.PARTIAL:
        return JobStatus.PARTIAL, result, {"code": "partial", "message": "copies failed on "
                                   + ", ".join(f"{d} ({why})" for d, why in backup.failed.items())}
    if not spec.validate_level:
        return backup.status, result, None
    report = _validate(ctx, backup.backup_id, spec.validate_level)
    result["validation"] = report
    return judge_validation(report, result, backup.backup_id, spec.validate_level, new_backup=True)


def _restore(ctx: EngineContext, config: Config, spec: RestoreJob, sink: ProgressSink) -> Outcome:
    from datetime import datetime
    from pathlib import Path

    from backupd.daemon.access import check_restore_target
    from backupd.engine.restore import run_restore

    check_restore_target(Path(spec.to), config.restore_dirs())  # again: the request was checked a while ago
    at = datetime.fromisoformat(spec.at) if spec.at else None
    res = run_restore(ctx, spec.source, Path(spec.to), backup_id=spec.backup_id, at=at,
                      tables=list(spec.tables) if spec.tables is not None else None, overwrite=spec.overwrite,
                      progress=sink)
    return JobStatus.COMPLETED, res.to_json(), None


def _prune(ctx: EngineContext, spec: PruneJob) -> Outcome:
    from backupd.engine.prune import run_prune

    report = run_prune(ctx, spec.source, dry_run=False)
    if report["errors"]:
        return JobStatus.PARTIAL, report, {"code": "partial", "message": "; ".join(report["errors"])}
    return JobStatus.COMPLETED, report, None


def _resync(ctx: EngineContext, spec: ResyncJob) -> Outcome:
    from backupd.engine.resync import resync

    report = resync(ctx, spec.source).to_json()
    if report["failed"]:
        return JobStatus.PARTIAL, report, {"code": "partial", "message": "; ".join(
            f"{f['destination']}: {f['error']}" for f in report["failed"])}
    return JobStatus.COMPLETED, report, None


def judge_validation(report: dict[str, Any], result: Any, backup_id: str, level: str, *, new_backup: bool) -> Outcome:
    """The job's outcome from a validation `report` of `backup_id`: failed, with warnings, or completed.

    A failed validation is worth retrying when the job makes a new backup (the next one may pass), or
    when every blocking failure is itself transient (a destination that could not be reached); a
    damaged copy or a wrong key fails the same way however often it is read again."""
    if report["verdict"] == Verdict.FAIL:
        blocking = [c for c in report["checks"] if c["status"] == CheckStatus.FAIL and c["severity"] in BLOCKING_SEVERITIES]
        transient = all(code_retryable(c["details"].get("code")) for c in blocking)
        return JobStatus.FAILED, result, {"code": "verification_failed",
                                          "message": f"backup {backup_id} failed {level} validation",
                                          "retryable": new_backup or transient}
    warned = report["verdict"] == Verdict.WARN
    return (JobStatus.COMPLETED_WITH_WARNINGS if warned else JobStatus.COMPLETED), result, None


def _validate(ctx: EngineContext, backup_id: str, level: str, choice: CopyChoice | None = None) -> dict[str, Any]:
    from backupd.engine.validate import validate_backup

    return validate_backup(ctx, backup_id, level, choice or CopyChoice()).to_json()
