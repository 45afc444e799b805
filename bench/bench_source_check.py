#!/usr/bin/env python3
"""Cost of the source check (`[sources.X] source_check`, issue 8 item 4) in a real full backup.

Times `PRAGMA quick_check` and `PRAGMA integrity_check` alone on the benchmark database, then a full
backupd backup (one local destination, unencrypted) with source_check = off, quick and full, and
prints each as a ratio to the backup without the check. Not a test; see bench/README.md.
"""
from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import BENCH_DIR, TextGen, cached_db, warm  # noqa: E402

BACKUPD = [sys.executable, "-m", "backupd.cli.main"]


def small_rows_db(out: Path, rows: int, seed: int) -> Path:
    """The check's hard case: many small rows and two indexes (integrity_check looks every row up in
    every index), built once and cached: 200,000 rows of ~300 B are ~78 MiB."""
    path = out / f"small-rows-{rows}-seed{seed}.db"
    if path.exists():
        return path
    rnd = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, k INTEGER, body BLOB)")
    conn.executemany("INSERT INTO t (name, k, body) VALUES (?, ?, ?)",
                     ((f"name-{rnd.random()}", rnd.randrange(10**9), rnd.randbytes(300)) for _ in range(rows)))
    conn.execute("CREATE INDEX t_k ON t (k)")
    conn.execute("CREATE INDEX t_name ON t (name)")
    conn.commit()
    conn.close()
    tmp.rename(path)
    return path


def time_pragma(db: Path, pragma: str) -> float:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        t0 = time.perf_counter()
        result = conn.execute(f"PRAGMA {pragma}").fetchall()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    assert result == [("ok",)], result
    return elapsed


def time_backup(db: Path, check: str, work: Path) -> float:
    root = Path(tempfile.mkdtemp(dir=work))
    cfg = root / "backupd.toml"
    cfg.write_text(f'[state]\ndir = "state"\n[[sources]]\nname = "bench"\nkind = "sqlite"\npath = "{db}"\n'
                   f'source_check = "{check}"\n[[destinations]]\nname = "local"\nkind = "local"\npath = "backups"\n')
    t0 = time.perf_counter()
    r = subprocess.run([*BACKUPD, "backup", "-c", str(cfg), "--source", "bench", "--strategy", "full", "--json"],
                       capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"backup with source_check={check} failed: {r.stderr}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="best of N")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--small-rows", type=int, default=None, metavar="N",
                    help="instead of the text database, N small rows with two indexes (200000: ~78 MiB)")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.small_rows:
        db = small_rows_db(args.out_dir, args.small_rows, args.seed)
    else:
        db = cached_db(args.out_dir, args.size_mib, args.seed, TextGen(args.seed))
    warm(db)
    pragmas = {p: min(time_pragma(db, p) for _ in range(args.repeat)) for p in ("quick_check", "integrity_check")}
    with tempfile.TemporaryDirectory(dir=args.out_dir) as work:
        times: dict[str, list[float]] = {"off": [], "quick": [], "full": []}
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits every mode alike
            for c in times:
                times[c].append(time_backup(db, c, Path(work)))
        backups = {c: min(t) for c, t in times.items()}
    what = f"{args.small_rows} small rows" if args.small_rows else "text"
    print(f"\n== source check on a {db.stat().st_size / 2**20:.0f} MiB database ({what}; best of {args.repeat})")
    for p, s in pragmas.items():
        print(f"  PRAGMA {p:<16} {s:7.2f} s")
    for c, s in backups.items():
        print(f"  full backup, source_check = {c:<5} {s:7.2f} s  ratio {s / backups['off']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
