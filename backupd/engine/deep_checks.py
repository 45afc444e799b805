"""The deep validation level: the chain is restored into a temporary database (removed afterwards),
then the checks of a restored database (engine/restored_checks.py: integrity_check, foreign_key_check,
schema hash, row counts) and the custom SQL rules run on it."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from backupd.core import validation_report as R
from backupd.core.validation_report import MAX_LISTED
from backupd.engine.progress import Reporter
from backupd.engine.restore import RestorePlan, materialize
from backupd.engine.restored_checks import RestoredDatabase
from backupd.sqlite_uri import connect as sqlite_connect

if TYPE_CHECKING:
    from backupd.engine.validate import Validation


def deep_checks(v: Validation) -> None:
    """Restore the chain into a temp dir in the state dir, then run the deep rules on it."""
    rules_cfg = getattr(getattr(v.ctx.config, "validation", None), "rules", []) or []
    custom = [r for r in rules_cfg if not r.sources or v.source in r.sources]
    deep = [R.RESTORE_COMPLETES, R.INTEGRITY_CHECK, R.FOREIGN_KEY_CHECK, R.SCHEMA_HASH, R.ROW_COUNTS,
            *(R.sql_rule(r.id, r.severity, r.description) for r in custom)]
    blocking = list(dict.fromkeys(c.rule.id for c in v.results
                                  if c.failed and c.rule.severity in ("error", "critical")))
    if blocking:
        for r in deep:
            v.skip(r, f"skipped: the chain failed {', '.join(blocking)}, so a restore is not attempted")
        return
    # in the state dir, not /tmp: a restored database can be large, and /tmp is often RAM
    with tempfile.TemporaryDirectory(prefix=".backupd-verify-", dir=v.ctx.state_dir,
                                     ignore_cleanup_errors=True) as tmp:
        path = Path(tmp) / f"{v.target.backup_id}.db"
        restored = v.run_check(R.RESTORE_COMPLETES, lambda: _restore(v, path),
                               prefix=f"restore of {v.target.backup_id}")
        if restored.failed:
            for r in deep[1:]:
                v.skip(r, "skipped: the chain did not restore (see restore_completes)")
            return
        conn = sqlite_connect(path, mode="rw", isolation_level=None)
        try:
            _database_checks(v, conn, custom)
        finally:
            conn.close()


def _restore(v: Validation, path: Path) -> R.Outcome:
    plan = RestorePlan(v.target, [m.backup for m in v.members], None)
    ctx = v.ctx.only([v.choice.destination]) if v.choice.destination else v.ctx  # read only the copies verified
    n = materialize(ctx, plan, path, Reporter(None))
    return R.Outcome.ok(f"chain of {len(v.members)} restored into a temporary database ({n} bytes)",
                        bytes=n)


def _database_checks(v: Validation, conn: sqlite3.Connection, custom: list[Any]) -> None:
    tid, man = v.target.backup_id, v.target.manifest
    db = RestoredDatabase(conn, man)

    def bad(check: str) -> str:
        return v.advice.new_full(f"the restored database of {tid} fails {check}; check the source database too")

    def integrity() -> R.Outcome:
        rows = db.integrity_problems()
        if not rows:
            return R.Outcome.ok("integrity_check: ok")
        return R.Outcome.fail(f"the restored database of {tid} fails integrity_check: {rows[0]}",
                              bad("integrity_check"), problems=rows[:MAX_LISTED], problem_count=len(rows))

    def foreign_keys() -> R.Outcome:
        found, n = db.foreign_key_violations()
        if not n:
            return R.Outcome.ok("foreign_key_check: no violation")
        return R.Outcome.fail(
            f"the restored database of {tid} has {n} foreign key violation(s) (first: {found[0]['table']} "
            f"row {found[0]['rowid']} -> {found[0]['parent']})",
            f"check the foreign keys of source {v.source!r}: its backup {tid} has {n} violation(s)",
            violations=found, violation_count=n)

    def schema() -> R.Outcome:
        schema_hash = db.shape()[0]
        if schema_hash == man.schema_hash:
            return R.Outcome.ok("schema hash equals the one recorded at backup time", schema_hash=man.schema_hash)
        return R.Outcome.fail(f"the restored database of {tid} has schema hash {schema_hash[:16]}…, "
                              f"{man.schema_hash[:16]}… was recorded at backup time", bad("schema_hash"),
                              schema_hash=schema_hash, recorded=man.schema_hash)

    def row_counts() -> R.Outcome:
        wrong = db.wrong_row_counts()
        if not wrong:
            return R.Outcome.ok(f"{len(db.shape()[1])} table(s) hold the row counts recorded at backup time",
                                tables=len(db.shape()[1]))
        text = "; ".join(f"{t}: {w['rows']} rows, {w['recorded']} recorded" for t, w in list(wrong.items())[:5])
        return R.Outcome.fail(f"the restored database of {tid} has other row counts than recorded: {text}",
                              bad("row_counts"), tables=wrong)

    for rule, fn in ((R.INTEGRITY_CHECK, integrity), (R.FOREIGN_KEY_CHECK, foreign_keys),
                     (R.SCHEMA_HASH, schema), (R.ROW_COUNTS, row_counts)):
        v.run_check(rule, _sql_errors_fail(fn, f"the restored database of {tid}", bad(rule.id)),
                    prefix=f"restored {tid}")
    for cfg_rule in custom:
        v.run_check(R.sql_rule(cfg_rule.id, cfg_rule.severity, cfg_rule.description),
                    partial(_sql_rule, v, conn, cfg_rule), prefix=f"restored {tid}")


def _sql_rule(v: Validation, conn: sqlite3.Connection, rule: Any) -> R.Outcome:
    tid = v.target.backup_id
    what = rule.description or rule.sql
    try:
        conn.execute("PRAGMA query_only = ON")  # custom rules only read (set again: a rule may be a PRAGMA)
        with closing(conn.execute(rule.sql)) as cur:
            row = cur.fetchone()
    except (sqlite3.Error, sqlite3.Warning) as exc:
        return R.Outcome.fail(f"custom rule {rule.id}: SQL error on the restored database of {tid}: {exc}",
                              f"fix validation rule {rule.id!r} in the config: {exc}",
                              code="sql_error", sql=rule.sql, error=str(exc))
    if row is None:
        return R.Outcome.fail(f"custom rule {rule.id} returned no row on backup {tid} ({what})",
                              f"make validation rule {rule.id!r} return one row",
                              sql=rule.sql, value=None)
    value = row[0] if row else None
    shown = value if isinstance(value, (int, float, str)) or value is None else repr(value)
    if value:
        return R.Outcome.ok(f"custom rule {rule.id} holds: {what}", sql=rule.sql, value=shown)
    return R.Outcome.fail(f"custom rule {rule.id} does not hold on backup {tid}: {what} (got {shown!r})",
                          f"investigate source {v.source!r}: custom rule {rule.id} ({what}) does not hold "
                          f"on backup {tid}", sql=rule.sql, value=shown)


def _sql_errors_fail(fn: Callable[[], R.Outcome], what: str, advice: str) -> Callable[[], R.Outcome]:
    def run() -> R.Outcome:
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            return R.Outcome.fail(f"{what}: {exc}", advice, code="corrupt_database", error=str(exc))

    return run
