"""`catalog rebuild` racing a prune (issue 8, item 14): a backup the prune deleted is never re-added.

Rebuild reads every sidecar, then replaces the catalog's backups with what it read. A prune that deleted a
backup in between used to see it come back, listed but gone from the destination. Both tests force the
bad interleaving: the rebuild or the prune runs in a thread that stops at the chosen instant (a trace
hook on a real function, nothing replaced), while the other runs as a real `backupd` process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pytest

from backupd.destinations.local import LocalDestination
from backupd.engine.backup import run_backup
from backupd.engine.catalog import Catalog
from backupd.engine.inventory import rebuild_catalog
from backupd.engine.prune import run_prune

from .dbtools import BACKUPD, SOURCE, cli, create_db, engine, fill_text, make_env, sidecar_ids


class StopAt:
    """Runs a function in a thread that stops when it calls `where`, until `go()`."""

    def __init__(self, where: Callable[..., Any]):
        self._code = where.__code__
        self.reached = threading.Event()
        self._go = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def _trace(self, frame, event, _arg):
        if event == "call" and frame.f_code is self._code and not self.reached.is_set():
            self.reached.set()
            self._go.wait(60)

    def start(self, fn: Callable[[], Any]) -> threading.Thread:
        def body() -> None:
            sys.settrace(self._trace)
            try:
                self.result = fn()
            except BaseException as exc:  # handed to the test
                self.error = exc
            finally:
                sys.settrace(None)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        assert self.reached.wait(60), "the thread never reached the stopping point"
        return thread

    def go(self, thread: threading.Thread) -> Any:
        self._go.set()
        thread.join(60)
        assert not thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def four_fulls(tmp_path):
    """Four full backups, then a config whose retention keeps only the newest."""
    env = make_env(tmp_path / "env")
    conn = create_db(env.db)
    fill_text(conn, "notes", 0.2)
    conn.close()
    with engine(env) as ctx:
        ids = [run_backup(ctx, SOURCE, "full").backup_id for _ in range(4)]
    env.config.write_text(env.config.read_text() + "\n[retention]\nkeep_last = 1\n")
    return env, ids


def catalog_ids(env) -> set[str]:
    catalog = Catalog(env.state / "catalog.db")
    try:
        return {b.backup_id for b in catalog.backups()}
    finally:
        catalog.close()


def test_a_prune_between_the_scan_and_the_catalog_write_is_not_undone(four_fulls):
    env, ids = four_fulls
    with engine(env) as ctx:
        rebuild = StopAt(Catalog.replace_all)  # every sidecar read, nothing written yet
        thread = rebuild.start(lambda: rebuild_catalog(ctx))
        pruned = cli("prune", "-c", env.config, "--json")
        if pruned.code == 0:  # without the locks: the prune ran and deleted three backups
            assert sidecar_ids(env) == {ids[-1]}
        else:
            assert pruned.error()["code"] == "source_busy", pruned.stderr
        report = rebuild.go(thread)
    assert catalog_ids(env) == sidecar_ids(env), "the catalog lists backups that are gone from the destination"
    assert report["backups"] == len(sidecar_ids(env))
    assert cli("prune", "-c", env.config).code == 0
    assert catalog_ids(env) == sidecar_ids(env) == {ids[-1]}


def test_a_rebuild_started_during_a_prune_waits_for_it(four_fulls):
    env, ids = four_fulls
    with engine(env) as ctx:
        prune = StopAt(LocalDestination.delete)  # the plan is made; nothing deleted yet
        thread = prune.start(lambda: run_prune(ctx, SOURCE, dry_run=False))
        rebuild = subprocess.Popen([str(BACKUPD), "catalog", "rebuild", "-c", str(env.config), "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            assert rebuild.poll() is None, f"rebuild did not wait for the prune: {rebuild.communicate()}"
        finally:
            plan = prune.go(thread)
            out, err = rebuild.communicate(timeout=60)
    assert rebuild.returncode == 0, err
    assert sorted(d["id"] for d in plan["delete"]) == sorted(ids[:-1]) and plan["errors"] == []
    assert catalog_ids(env) == sidecar_ids(env) == {ids[-1]}
