"""`make run`: the daemon on the bundled config, with the demo database and key created if missing and a
writer that keeps changing it. `--tour` runs the one-shot commands instead (backup, list, verify, restore)."""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import threading
import tomllib
from pathlib import Path

from backupd.cli.main import main as backupd
from backupd.config import load_config
from backupd.config.schema import RESTORE_AREA
from backupd.daemon.main import run as run_daemon
from backupd.engine.context import open_context
from backupd.engine.crypto import keygen
from backupd.sqlite_uri import connect as sqlite_connect

WORDS = "backup restore chain page snapshot wal journal vacuum schema index table row key cipher block".split()


def prepare(config_path: Path) -> None:
    """Create the key files and databases the config names but that do not exist yet.

    Runs on the raw TOML, before validation, because validation requires the key files to exist."""
    raw = tomllib.loads(config_path.read_text())
    base = config_path.parent
    for d in raw.get("destinations", []):
        key_file = (d.get("encryption") or {}).get("key_file")
        if key_file and not (base / key_file).exists():
            path = (base / key_file).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"demo: created key file {path} (key id {keygen(path)})")
    for s in raw.get("sources", []):
        db = (base / s["path"]).resolve()
        if not db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite_connect(db, mode="rwc")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, updated_at INTEGER)")
            conn.execute("CREATE INDEX notes_by_title ON notes (title)")
            conn.commit()
            conn.close()
            print(f"demo: created database {db}")


def write_some(db: Path, rng: random.Random, n: int) -> None:
    """The application at work: insert and update a few notes."""
    conn = sqlite_connect(db, mode="rwc")
    with conn:
        for _ in range(n):
            conn.execute("INSERT INTO notes (title, body, updated_at) VALUES (?, ?, strftime('%s'))",
                         (" ".join(rng.choices(WORDS, k=3)), " ".join(rng.choices(WORDS, k=200))))
        conn.execute("UPDATE notes SET body = body || ' edited' WHERE id % 17 = ?", (rng.randrange(17),))
    conn.close()


def tour(config: Path) -> int:
    """The one-shot commands, in order: back up three times, list, verify deep, restore."""
    cfg = load_config(config)
    db, source = cfg.sources[0].path, cfg.sources[0].name
    rng = random.Random()
    for round_ in range(3):
        write_some(db, rng, 100)
        print(f"\n$ backupd backup -c {config} --source {source} --strategy auto")
        if backupd(["backup", "-c", str(config), "--source", source, "--strategy", "auto"]) != 0:
            return 1
    print(f"\n$ backupd list -c {config}")
    backupd(["list", "-c", str(config), "--source", source])
    ctx = open_context(cfg)
    newest = ctx.catalog.backups(source)[-1].backup_id
    ctx.close()
    print(f"\n$ backupd verify -c {config} --backup {newest} --level deep")
    if backupd(["verify", "-c", str(config), "--backup", newest, "--level", "deep"]) != 0:
        return 1
    restored = db.with_name("restored.db")
    print(f"\n$ backupd restore -c {config} --source {source} --backup {newest} --to {restored} --overwrite")
    return backupd(["restore", "-c", str(config), "--source", source, "--backup", newest, "--to", str(restored),
                    "--overwrite"])


def keep_writing(db: Path, stop: threading.Event, every_s: float = 5.0) -> None:
    """The demo application: a few notes every `every_s` seconds, so scheduled backups have changes."""
    rng = random.Random()
    while not stop.wait(every_s):
        try:
            write_some(db, rng, 20)
        except sqlite3.Error:
            pass  # busy for a moment: the next round writes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="backupd-demo", description="Run backupd on the bundled demo config.")
    p.add_argument("-c", "--config", type=Path, default=Path("config/backupd.toml"))
    p.add_argument("--tour", action="store_true", help="run the one-shot commands instead of the daemon")
    args = p.parse_args(argv)
    prepare(args.config)
    cfg = load_config(args.config)
    db = cfg.sources[0].path
    conn = sqlite_connect(db, mode="rwc")
    empty = conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    conn.close()
    if empty:
        write_some(db, random.Random(), 2000)
    if args.tour:
        return tour(args.config)
    sock = cfg.control.socket
    print(f"""backupd demo: the daemon runs on {args.config}; its schedules: {', '.join(s.name for s in cfg.schedules)}.
A writer adds notes to {db} every 5 s. In another terminal, try:

  export BACKUPD_SOCKET={sock}
  .venv/bin/backupctl status
  .venv/bin/backupctl schedule ls
  .venv/bin/backupctl backup --source {cfg.sources[0].name} --wait
  .venv/bin/backupctl ls
  .venv/bin/backupctl jobs
  .venv/bin/backupctl validate <BACKUP_ID> --level deep --wait
  .venv/bin/backupctl restore --source {cfg.sources[0].name} --at $(date -u +%Y-%m-%dT%H:%M:%SZ) --to {cfg.state.dir / RESTORE_AREA / "demo-restored.db"} --wait

Ctrl-C stops the daemon (running jobs finish first).
""", flush=True)
    stop = threading.Event()
    threading.Thread(target=keep_writing, args=(db, stop), daemon=True, name="demo-writer").start()
    try:
        return run_daemon(args.config)
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main())
