"""`make run`: the main job on the bundled config — create the demo database and key if missing, let a
writer change it, back it up (auto strategy) a few times, verify and restore the newest backup."""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tomllib
from pathlib import Path

from backupd.cli.main import main as backupd
from backupd.config import load_config
from backupd.engine.context import open_context
from backupd.engine.crypto import keygen

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
            conn = sqlite3.connect(db)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, updated_at INTEGER)")
            conn.execute("CREATE INDEX notes_by_title ON notes (title)")
            conn.commit()
            conn.close()
            print(f"demo: created database {db}")


def write_some(db: Path, rng: random.Random, n: int) -> None:
    """The application at work: insert and update a few notes."""
    conn = sqlite3.connect(db)
    with conn:
        for _ in range(n):
            conn.execute("INSERT INTO notes (title, body, updated_at) VALUES (?, ?, strftime('%s'))",
                         (" ".join(rng.choices(WORDS, k=3)), " ".join(rng.choices(WORDS, k=200))))
        conn.execute("UPDATE notes SET body = body || ' edited' WHERE id % 17 = ?", (rng.randrange(17),))
    conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="backupd-demo")
    p.add_argument("-c", "--config", type=Path, default=Path("config/backupd.toml"))
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    config = str(args.config)
    prepare(args.config)
    cfg = load_config(args.config)
    db, source = cfg.sources[0].path, cfg.sources[0].name
    rng = random.Random()
    for round_ in range(args.rounds):
        write_some(db, rng, 2000 if round_ == 0 else 100)
        print(f"\n$ backupd backup -c {config} --source {source} --strategy auto")
        if backupd(["backup", "-c", config, "--source", source, "--strategy", "auto"]) != 0:
            return 1
    print(f"\n$ backupd list -c {config}")
    backupd(["list", "-c", config, "--source", source])
    ctx = open_context(cfg)
    newest = ctx.catalog.backups(source)[-1].backup_id
    ctx.close()
    print(f"\n$ backupd verify -c {config} --backup {newest} --level deep")
    if backupd(["verify", "-c", config, "--backup", newest, "--level", "deep"]) != 0:
        return 1
    restored = db.with_name("restored.db")
    print(f"\n$ backupd restore -c {config} --source {source} --backup {newest} --to {restored} --overwrite")
    return backupd(["restore", "-c", config, "--source", source, "--backup", newest, "--to", str(restored),
                    "--overwrite"])


if __name__ == "__main__":
    sys.exit(main())
