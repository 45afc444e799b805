"""The schema of the state database, as an ordered list of steps: step N brings version N to N + 1.

A step is a function of the connection that runs its statements one by one (never `executescript`,
which would commit the transaction the steps run in). Steps are never edited once released: a change
of schema is a new step at the end. Version 0 is every file from before the steps existed (release
7c53354 and earlier), whose tables the catalog, the daemon's store and the run-time destinations each
created themselves; step 1 makes such a file whole, whatever subset of the tables it has.
"""

from __future__ import annotations

import json
from typing import Callable

from backupd.state.connection import StateConnection

Step = Callable[[StateConnection], None]

# The tables as release 7c53354 created them (catalog, daemon store, run-time destinations).
RELEASE_7C53354 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backups (
    backup_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    strategy TEXT NOT NULL,
    parent_id TEXT,
    base_id TEXT,
    created_at TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backups_by_source ON backups (source, created_at);
CREATE TABLE IF NOT EXISTS copies (
    backup_id TEXT NOT NULL REFERENCES backups (backup_id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    artifact_key TEXT NOT NULL,
    artifact_size INTEGER NOT NULL,
    sidecar_size INTEGER NOT NULL,
    artifact_digest TEXT NOT NULL,
    compression_level INTEGER NOT NULL,
    encrypted INTEGER NOT NULL,
    stored_at TEXT NOT NULL,
    verified_at TEXT,
    failed_at TEXT,
    sample_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (backup_id, destination)
);
CREATE TABLE IF NOT EXISTS deletions (
    backup_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    source TEXT NOT NULL,
    artifact_key TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    PRIMARY KEY (backup_id, destination)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT,
    status TEXT NOT NULL,
    pid INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT,
    result TEXT
);
CREATE TABLE IF NOT EXISTS daemon_jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT,
    schedule TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    job TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS daemon_jobs_by_schedule ON daemon_jobs (schedule, created_at);
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    origin TEXT NOT NULL,          -- 'config' or 'runtime'
    spec TEXT,                     -- the schedule as added at run time (JSON); NULL for config ones
    paused INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS schedule_fires (name TEXT PRIMARY KEY, last_fire TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runtime_destinations (
    name TEXT PRIMARY KEY,
    spec TEXT,            -- the [[destinations]] table added at run time (JSON); NULL for a config-file destination
    enabled INTEGER,      -- set by disable/enable; NULL keeps what the table says
    file_enabled INTEGER  -- for a config-file destination: what the file said when `enabled` was set
);
"""

# Columns added after the tables were first written, which CREATE TABLE IF NOT EXISTS leaves out of an
# existing table.
_COLUMNS_ADDED = {
    "copies": {"failed_at": "TEXT", "sample_offset": "INTEGER NOT NULL DEFAULT 0"},
    "runtime_destinations": {"file_enabled": "INTEGER"},
}


def statements(script: str) -> list[str]:
    """The statements of a script of DDL (one per `;` at a line's end)."""
    return [s.strip() for s in script.split(";\n") if s.strip()]


def release_7c53354_made_whole(db: StateConnection) -> None:
    """Step 1: every table of release 7c53354, with the columns added to them over time."""
    for statement in statements(RELEASE_7C53354):
        db.execute(statement)
    for table, columns in _COLUMNS_ADDED.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


JOBS = """
CREATE TABLE one_job_table (
    job_id TEXT NOT NULL,
    runner TEXT NOT NULL CHECK (runner IN ('daemon', 'process')),
    kind TEXT NOT NULL,
    source TEXT,
    schedule TEXT,
    status TEXT NOT NULL,
    pid INTEGER,             -- runner 'process': the one-shot `backupd` process running it
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    job TEXT NOT NULL,       -- the whole record (JSON)
    PRIMARY KEY (runner, job_id)
)
"""


def one_job_table(db: StateConnection) -> None:
    """Step 2: the daemon's jobs (`daemon_jobs`) and the one-shot commands' (`jobs`) in one table.

    Both are the record of one run of a job kind on a source; `runner` says who runs it, so that each
    recovers only its own after a crash (the daemon at its start, a one-shot run by its pid), and a
    record is keyed by runner and id, so an id both runners drew (one chance in 16 million a second)
    never overwrites the other's. A one-shot run's record keeps its columns (its `error` the message,
    its `result` decoded)."""
    db.execute(JOBS)
    db.execute("INSERT INTO one_job_table SELECT job_id, 'daemon', kind, source, schedule, status, NULL, created_at,"
               " started_at, finished_at, job FROM daemon_jobs")
    rows = db.execute("SELECT job_id, kind, source, status, pid, started_at, finished_at, error, result FROM jobs")
    for job_id, kind, source, status, pid, started_at, finished_at, error, result in rows:
        record = {"job_id": job_id, "kind": kind, "source": source, "schedule": None, "status": status, "pid": pid,
                  "created_at": started_at, "started_at": started_at, "finished_at": finished_at, "error": error,
                  "result": json.loads(result) if result is not None else None}
        db.execute("INSERT INTO one_job_table VALUES (?, 'process', ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                   (job_id, kind, source, status, pid, started_at, started_at, finished_at, json.dumps(record)))
    db.execute("DROP TABLE jobs")
    db.execute("DROP TABLE daemon_jobs")
    db.execute("ALTER TABLE one_job_table RENAME TO jobs")
    db.execute("CREATE INDEX jobs_by_runner ON jobs (runner, created_at)")
    db.execute("CREATE INDEX jobs_by_schedule ON jobs (schedule, created_at)")


def version_in_the_header(db: StateConnection) -> None:
    """Step 3: `PRAGMA user_version` is the schema version; the catalog's `meta` row of it goes."""
    db.execute("DROP TABLE meta")


def active_alerts(db: StateConnection) -> None:
    """Step 4: the alerts active now (the daemon's watchdog), so a restart neither raises them again nor
    misses the clearing of one that ended while the daemon was down."""
    db.execute("CREATE TABLE alerts (key TEXT PRIMARY KEY, alert TEXT NOT NULL, raised_at TEXT NOT NULL)")


def notification_outbox(db: StateConnection) -> None:
    """Step 5: the notifications still to deliver (one row per event and notifier), each notifier's
    delivery figures, and the events already routed (so a restart routes a missed job outcome once,
    and only the outcomes of jobs that ended after this step: an upgrade does not replay history)."""
    db.execute("CREATE TABLE outbox (event_id TEXT NOT NULL, notifier TEXT NOT NULL, event TEXT NOT NULL,"
               " enqueued_at TEXT NOT NULL, next_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
               " last_error TEXT, PRIMARY KEY (event_id, notifier))")
    db.execute("CREATE INDEX outbox_due ON outbox (notifier, next_at)")
    db.execute("CREATE TABLE notifier_figures (notifier TEXT PRIMARY KEY, delivered INTEGER NOT NULL DEFAULT 0,"
               " failed INTEGER NOT NULL DEFAULT 0, expired INTEGER NOT NULL DEFAULT 0, last_result TEXT,"
               " last_at TEXT, last_event_id TEXT, last_error TEXT)")
    db.execute("CREATE TABLE routed_events (event_id TEXT PRIMARY KEY, routed_at TEXT NOT NULL)")
    db.execute("INSERT INTO routed_events VALUES ('', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))")


MIGRATIONS: tuple[Step, ...] = (release_7c53354_made_whole, one_job_table, version_in_the_header, active_alerts,
                                notification_outbox)
