"""The supervisor: the only owner of job state. Triggers and control requests hand it job requests;
its loop asks the gate (core.gate) whether each pending job may start, starts it in a worker process
(backupd.daemon.worker), follows its progress over a pipe, retries failed backups with backoff, and
tells listeners (the control server) about every change.
"""

from __future__ import annotations

import multiprocessing
import random
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

import structlog

from backupd.config import Config
from backupd.core.backoff import RetryPolicy, retry_delay
from backupd.core.gate import Conditions, Dispatch, Hold, JobRequest, Running, Skip, decide
from backupd.core.events import LOG_TAIL_LINES
from backupd.core.routing import NotifyRequest
from backupd.core.vocab import (ACTIVE_STATUSES, FAILED_STATUSES, JOB_STATUSES, DestinationKind, JobKind, JobStatus,
                                Priority)
from backupd.daemon.jobs import PENDING, Job
from backupd.daemon.jobspec import JobSpec, ResyncJob
from backupd.daemon.probes import LoadProbe
from backupd.daemon.store import DaemonStore
from backupd.daemon.worker import run_job
from backupd.engine.catalog import Catalog
from backupd.state.db import state_db_path
from backupd.errors import BackupdError, NotFound, code_retryable

log = structlog.get_logger("backupd.supervisor")
KEEP_FINISHED = 500
HISTORY_PRUNE_EVERY_S = 3600.0
RESYNC_RETRY = RetryPolicy(max_attempts=5, base_delay=60.0, max_delay=3600.0)
_PRELOAD = ["backupd.engine.backup", "backupd.engine.restore", "backupd.engine.validate", "backupd.daemon.worker"]
# Imported in the forkserver when the config has such a destination, so each job does not import
# paramiko (0.15-0.4 s) or smbprotocol again.
_PRELOAD_BY_KIND = {DestinationKind.SFTP: "backupd.destinations.sftp", DestinationKind.SMB: "backupd.destinations.smb"}


class ShuttingDown(BackupdError):
    code = "shutting_down"


class Conflict(BackupdError):
    code = "conflict"


@dataclass
class _Worker:
    process: Any
    started: float = field(default_factory=time.monotonic)
    cancel_sent: float | None = None
    timed_out: bool = False


def _retryable(error: dict[str, Any] | None) -> bool:
    """The error's own `retryable` (the worker reports its class's, see backupd.errors), else the
    catalogue's for its code (errors made here: worker_died, timed_out)."""
    error = error or {}
    return bool(error["retryable"]) if "retryable" in error else code_retryable(error.get("code"))


class Supervisor:
    def __init__(self, config: Config, *, probe: LoadProbe, store: DaemonStore, clock: Callable[[], datetime],
                 log_level: str = "info"):
        self.config = config
        self.probe = probe
        self.store = store
        self.clock = clock
        self.log_level = log_level
        self.state = "running"
        self.started_at = clock()
        self.catalog = Catalog(state_db_path(config.state.dir))
        self._lock = threading.RLock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._workers: dict[str, _Worker] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.wake = threading.Event()
        self._mp = multiprocessing.get_context("forkserver")
        kinds = {d.kind for d in config.destinations}
        self._mp.set_forkserver_preload(_PRELOAD + [m for k, m in _PRELOAD_BY_KIND.items() if k in kinds])
        stale = store.fail_unfinished("the daemon stopped while this job was pending or running", clock())
        if stale:
            log.warning("jobs_interrupted", job_ids=stale)
        self._history_pruned_at: float | None = None

    # -- requests (any thread) -----------------------------------------------------------------
    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(fn)

    def submit(self, spec: JobSpec, *, priority: Priority = Priority.NORMAL, schedule: str | None = None,
               conditions: Conditions | None = None, retry: RetryPolicy | None = None,
               max_staleness_s: float | None = None, timeout_s: float | None = None,
               notify: NotifyRequest | None = None) -> dict[str, Any]:
        """Queue the job `spec` describes; it starts when the gate allows. Returns its wire form.

        Each attempt is cancelled after `timeout_s` (default `[daemon] job_timeout`; None: no limit); its
        outcome also goes to `notify`'s notifiers, as its `notify_on` says."""
        if self.state != "running":
            raise ShuttingDown("the daemon is stopping and accepts no new jobs")
        self.config.source(spec.source)
        now = self.clock()
        job = Job(job_id=now.strftime("j%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3), spec=spec, created_at=now,
                  priority=priority, schedule=schedule, conditions=conditions, retry=retry,
                  max_staleness_s=max_staleness_s, notify=notify,
                  timeout_s=timeout_s if timeout_s is not None else self.config.daemon.job_timeout_s)
        with self._lock:
            self._jobs[job.job_id] = job
            self._changed(job)
        log.info("job_queued", job_id=job.job_id, kind=job.kind, source=job.source, schedule=schedule,
                 priority=priority)
        self.wake.set()
        return job.to_wire()

    def pending_for_schedule(self, schedule: str) -> bool:
        with self._lock:
            return any(j.schedule == schedule and j.status in PENDING for j in self._jobs.values())

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.to_wire()
        stored = self.store.job(job_id)
        if stored is None:
            raise NotFound(f"no job {job_id}")
        return stored

    def list(self, *, status: str | None = None, source: str | None = None, kind: str | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            live = {j.job_id: j.to_wire() for j in self._jobs.values()}
        merged = {**{j["job_id"]: j for j in self.store.jobs(limit=max(limit * 4, 200))}, **live}
        out = [j for j in merged.values() if (status is None or j["status"] == status)
               and (source is None or j["source"] == source) and (kind is None or j["kind"] == kind)]
        out.sort(key=lambda j: j["created_at"], reverse=True)
        return out[:limit]

    def counts(self) -> dict[str, int]:
        with self._lock:
            statuses = [j.status for j in self._jobs.values()]
        return {s: statuses.count(s) for s in JOB_STATUSES if s in ACTIVE_STATUSES}

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return self.get(job_id)
            if job.status in PENDING:
                self._finish(job, JobStatus.CANCELLED, None,
                             {"code": "cancelled", "message": "cancelled before it started"})
            elif job.status == JobStatus.RUNNING:
                self._signal_cancel(job_id)
                job.reason = "cancelling"
                self._changed(job)
            return job.to_wire()

    # -- the loop (main thread) ------------------------------------------------------------------
    def tick(self) -> None:
        """Dispatch what may start; hold or skip the rest."""
        with self._lock:
            pending = [j for j in self._jobs.values() if j.status in PENDING]
            if not pending:
                return
            now = self.clock()
            due = [j for j in pending if j.not_before is None or j.not_before <= now]
            if not due:
                return
            load = self.probe.sample()
            last_good = self._last_good_backups()
            due.sort(key=lambda j: (j.priority != Priority.HIGH, j.created_at))
            for job in due:
                running_jobs = [j for j in self._jobs.values() if j.status == JobStatus.RUNNING]
                running = Running(total=len(running_jobs), sources=frozenset(j.source for j in running_jobs))
                request = JobRequest(source=job.source, priority=job.priority,
                                     conditions=job.conditions or Conditions(), max_staleness_s=job.max_staleness_s,
                                     last_good_backup_at=last_good.get(job.source), held_since=job.held_since)
                decision = decide(request, running, load, now, self.config.daemon.max_concurrent_jobs,
                                  max_hold_s=self.config.daemon.max_hold_s)
                if isinstance(decision, Dispatch):
                    self._start(job, decision.note if decision.note.startswith("running despite") else None)
                elif isinstance(decision, Skip):
                    log.warning("job_skipped", job_id=job.job_id, source=job.source, schedule=job.schedule,
                                reason=decision.reason)
                    self._finish(job, "skipped", None, None, reason=decision.reason)
                elif isinstance(decision, Hold) and (job.status != JobStatus.WAITING or job.reason != decision.reason):
                    job.held_since = job.held_since or now
                    job.move("waiting", decision.reason)
                    log.info("job_held", job_id=job.job_id, source=job.source, reason=decision.reason)
                    self._changed(job)

    def _last_good_backups(self) -> dict[str, datetime]:
        return {source: datetime.fromisoformat(at) for source, at in self.catalog.newest_per_source().items()}

    def _start(self, job: Job, note: str | None) -> None:
        receiver, sender = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(target=run_job, name=f"backupd-job-{job.job_id}",
                                args=(self.config, job.job_id, job.spec, sender, self.log_level))
        proc.start()
        sender.close()
        self._workers[job.job_id] = _Worker(proc)
        job.move("running", note)
        job.started_at = self.clock()
        job.progress = {}
        if note:
            log.warning("running_despite_load", job_id=job.job_id, source=job.source, reason=note)
        log.info("job_started", job_id=job.job_id, kind=job.kind, source=job.source, attempt=job.attempt,
                 pid=proc.pid)
        self._changed(job)
        threading.Thread(target=self._pump, args=(job.job_id, proc, receiver), daemon=True,
                         name=f"pump-{job.job_id}").start()

    def _pump(self, job_id: str, proc, receiver) -> None:
        """Follow one worker's pipe until it reports done or dies."""
        outcome = None
        last_note = 0.0
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        while outcome is None:
            try:
                msg = receiver.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "progress":
                with self._lock:
                    job = self._jobs[job_id]
                    job.progress = msg[1]
                    if time.monotonic() - last_note >= 0.2:
                        last_note = time.monotonic()
                        self._notify(job)
            elif msg[0] == "log":
                tail.append(msg[1])
            elif msg[0] == "done":
                outcome = msg[1:]
        receiver.close()
        proc.join()
        if outcome is None:
            outcome = (JobStatus.FAILED, None, {"code": "worker_died",
                                        "message": f"the job's process died (exit code {proc.exitcode})"})
        with self._lock:
            worker = self._workers.pop(job_id, None)
            job = self._jobs[job_id]
            if worker is not None and worker.timed_out and outcome[0] in (JobStatus.FAILED, JobStatus.CANCELLED):
                outcome = (JobStatus.TIMED_OUT, None, {"code": "timed_out", "message": (
                    f"the job did not finish within its timeout ({job.timeout_s:g}s) and was cancelled")})
            job.log_tail = list(tail) if outcome[0] in FAILED_STATUSES else []
            self._finish(job, *outcome)
        self.wake.set()

    def _finish(self, job: Job, status: str, result: Any, error: dict[str, Any] | None, reason: str | None = None) -> None:
        now = self.clock()
        if status == JobStatus.FAILED and (error or {}).get("code") == "source_busy" and self.state == "running":
            job.held_since = job.held_since or now
            if (now - job.held_since).total_seconds() < self.config.daemon.max_hold_s:
                # another process holds the source's lock (a one-shot `backupd`, or a worker of a daemon that
                # died): that is a busy source, not a failure — hold and re-check, like one job per source
                job.not_before = now + timedelta(seconds=min(self.config.daemon.recheck_interval_s, 5.0))
                why = f"source {job.source!r} is locked by another process; re-checking"
                job.move("waiting", why)
                log.info("job_held", job_id=job.job_id, source=job.source, reason=why)
                self._changed(job)
                self.wake.set()
                return
        if (status in (JobStatus.FAILED, JobStatus.TIMED_OUT) and job.retry is not None and job.attempt < job.max_attempts
                and _retryable(error) and self.state == "running"):
            delay = retry_delay(job.retry, job.attempt, random.random())
            if delay is not None:
                job.attempt += 1
                job.not_before = now + timedelta(seconds=delay)
                job.held_since = None
                job.error = error
                job.move("waiting", f"retry {job.attempt}/{job.max_attempts} in {delay:.0f}s after: "
                                    f"{(error or {}).get('message', 'failure')}")
                log.warning("job_retry_scheduled", job_id=job.job_id, attempt=job.attempt, delay_s=round(delay, 1),
                            error=error)
                self._changed(job)
                self.wake.set()
                return
        job.move(status, reason if reason is not None else job.reason)
        job.finished_at = now
        job.result = result
        job.error = error
        duration = (now - job.started_at).total_seconds() if job.started_at else None
        fields = dict(job_id=job.job_id, kind=job.kind, source=job.source, schedule=job.schedule, status=status,
                      attempt=job.attempt, duration_s=round(duration, 3) if duration is not None else None,
                      error=error)
        if status == JobStatus.FAILED:
            log.error("job_failed", **fields)
        elif status == JobStatus.TIMED_OUT:
            log.error("job_timed_out", **fields)
        elif status == JobStatus.CANCELLED:
            log.info("job_cancelled", **fields)
        elif status != JobStatus.SKIPPED:  # a skip was logged as job_skipped when decided
            log.info("job_completed", **fields)
        self._changed(job)
        self._trim()
        if job.kind == JobKind.BACKUP and isinstance(result, dict) and result.get("failed_destinations"):
            self._resync_later(job.source, now)

    def _resync_later(self, source: str, now: datetime) -> None:
        """Copies that failed are retried automatically: a resync job, after a delay, with backoff."""
        if self.state != "running" or any(j.kind == JobKind.RESYNC and j.source == source and j.status in PENDING
                                          for j in self._jobs.values()):
            return
        wire = self.submit(ResyncJob(source), retry=RESYNC_RETRY)
        self._jobs[wire["job_id"]].not_before = now + timedelta(seconds=RESYNC_RETRY.base_delay)

    def _trim(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.final]
        for k in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[k]

    def _changed(self, job: Job) -> None:
        self.store.save_job(job.to_wire())
        self._notify(job)

    def _notify(self, job: Job) -> None:
        wire = job.to_wire()
        for fn in self._listeners:
            fn(wire)

    def _signal_cancel(self, job_id: str) -> None:
        w = self._workers.get(job_id)
        if w is not None and w.process.is_alive():
            try:
                w.process.terminate()
            except (OSError, ValueError):
                pass
            w.cancel_sent = w.cancel_sent or time.monotonic()

    # -- shutdown ------------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        """From now on new jobs are refused and `status` says stopping; pending jobs are cancelled."""
        with self._lock:
            self.state = "stopping"
            for job in [j for j in self._jobs.values() if j.status in PENDING]:
                self._finish(job, JobStatus.CANCELLED, None, {"code": "shutting_down", "message": "the daemon stopped"})

    def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let running jobs finish up to `timeout_s`, cancel the rest."""
        self.stop_accepting()
        deadline = time.monotonic() + timeout_s
        while self._workers and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            for job_id in list(self._workers):
                log.warning("job_cancelled_at_shutdown", job_id=job_id)
                self._signal_cancel(job_id)
        hard = time.monotonic() + 10
        while self._workers and time.monotonic() < hard:
            time.sleep(0.05)
        with self._lock:
            for w in self._workers.values():
                w.process.kill()
        while self._workers and time.monotonic() < hard + 5:
            time.sleep(0.05)
        self.catalog.close()

    def prune_history(self) -> None:
        """Delete finished jobs older than `[daemon] job_history_days` (0 keeps them), at most hourly."""
        days = self.config.daemon.job_history_days
        if days == 0 or (self._history_pruned_at is not None
                         and time.monotonic() - self._history_pruned_at < HISTORY_PRUNE_EVERY_S):
            return
        self._history_pruned_at = time.monotonic()
        before = self.clock() - timedelta(days=days)
        removed = self.store.prune_jobs(before)
        if removed:
            log.info("job_history_pruned", removed=removed, before=before.isoformat(), days=days)

    def reap_overdue_cancels(self) -> None:
        """A worker that ignores SIGTERM for `[daemon] cancel_grace` is killed (a hung job, blocked where
        it cannot notice the cancel); the next run of its source removes the temp files it left."""
        grace_s = self.config.daemon.cancel_grace_s
        with self._lock:
            for w in self._workers.values():
                if w.cancel_sent and time.monotonic() - w.cancel_sent > grace_s and w.process.is_alive():
                    w.process.kill()

    def enforce_timeouts(self) -> None:
        """Cancel every running attempt that has run longer than its job's timeout; it ends timed_out."""
        with self._lock:
            for job_id, w in self._workers.items():
                job = self._jobs[job_id]
                if w.timed_out or job.timeout_s is None or time.monotonic() - w.started < job.timeout_s:
                    continue
                w.timed_out = True
                log.warning("job_timeout_reached", job_id=job_id, kind=job.kind, source=job.source,
                            attempt=job.attempt, timeout_s=job.timeout_s)
                self._signal_cancel(job_id)
                job.reason = f"timed out after {job.timeout_s:g}s; cancelling"
                self._changed(job)
