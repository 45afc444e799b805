#!/usr/bin/env python3
"""Side-by-side benchmark of backupd against the tools a user would pick instead.

Not a test: it prints ratios measured in one run on one machine (absolute times
drift by 10% or more between runs; compare the ratios).  See bench/README.md.

Sections
  1. full backup     backupd (zstd-3 + encryption) vs `sqlite3 .backup` + `zstd -3 -T2`,
                     restic backup, borg create (zstd,3, repokey-blake2)
  2. incremental     UPDATE 1% of rows; backupd incremental vs the ideal (changed
                     pages, zstd-3 together) vs restic/borg second snapshot
  3. restore         full + 5 incrementals with backupd vs restic restore / borg extract
  4. summary         the SPEC.md quality bars, met or missed

Peak RSS is each child's own ru_maxrss from wait4().  Because Linux carries the
high-water RSS of the exec'ing process over into the new image, a child forked
straight from this (large) Python process would report this process's peak;
children are therefore started through a tiny launcher (C, compiled once into
bench/out/, or a `python -S` fallback with an ~8.5 MiB floor) that posix_spawns
the command, wait4()s it and hands the rusage back over a pipe.
"""
from __future__ import annotations

import argparse
import array
import datetime as _dt
import hashlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import zstandard
except ImportError:  # pragma: no cover - the venv has it (backupd depends on it)
    sys.exit("bench: the Python package `zstandard` is required (run inside .venv)")

try:
    import xxhash

    def _page_digest(b: bytes) -> int:
        return xxhash.xxh3_64_intdigest(b)
except ImportError:  # pragma: no cover
    def _page_digest(b: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little")

MiB = 1 << 20
KiB = 1 << 10
PAGE_SIZE = 4096
GEN_VERSION = 1  # bump when the generator changes: invalidates cached databases
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEBIAN_PKG = {"sqlite3": "sqlite3", "zstd": "zstd", "restic": "restic", "borg": "borgbackup"}
PASSWORD = "bench-not-a-secret"
INCR_SLACK = 8 * KiB  # "plus a few KiB"
RSS_LIMIT_MIB = 100.0


# --------------------------------------------------------------------------- launcher

_LAUNCHER_C = r"""
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
/* usage: rsslaunch FD CMD [ARGS...]  -> writes "maxrss_kib exitcode utime stime\n" to FD */
int main(int argc, char **argv) {
    if (argc < 3) return 125;
    int fd = atoi(argv[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fd);
    pid_t pid;
    if (posix_spawnp(&pid, argv[2], &fa, NULL, argv + 2, environ) != 0) {
        dprintf(fd, "0 127 0 0\n");
        return 127;
    }
    int st; struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0) return 126;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    dprintf(fd, "%ld %d %ld.%06ld %ld.%06ld\n", ru.ru_maxrss, code,
            (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    return code < 0 ? 128 : code;
}
"""

_LAUNCHER_PY = r"""
import os, sys
fd = int(sys.argv[1])
try:
    pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ, file_actions=[(os.POSIX_SPAWN_CLOSE, fd)])
except OSError:
    os.write(fd, b"0 127 0 0\n"); sys.exit(127)
_, st, ru = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(st)
os.write(fd, b"%d %d %f %f\n" % (ru.ru_maxrss, code, ru.ru_utime, ru.ru_stime))
sys.exit(code if code >= 0 else 128)
"""


class Launcher:
    def __init__(self, outdir: Path):
        self.prefix: list[str]
        self.kind: str
        h = hashlib.sha256(_LAUNCHER_C.encode()).hexdigest()[:12]
        exe = outdir / f"rsslaunch-{h}"
        cc = shutil.which("cc") or shutil.which("gcc")
        if not exe.exists() and cc:
            src = outdir / f"rsslaunch-{h}.c"
            src.write_text(_LAUNCHER_C)
            r = subprocess.run([cc, "-O2", "-o", str(exe) + ".tmp", str(src)], capture_output=True)
            if r.returncode == 0:
                os.replace(str(exe) + ".tmp", exe)
        if exe.exists():
            self.prefix, self.kind = [str(exe)], "C launcher (floor ~1 MiB)"
        else:
            py = outdir / "rsslaunch.py"
            py.write_text(_LAUNCHER_PY)
            self.prefix = [sys.executable, "-S", "-I", str(py)]
            self.kind = "python -S launcher (floor ~8.5 MiB: no C compiler found)"


@dataclass
class Run:
    argv: list[str]
    rc: int
    wall_s: float
    rss_mib: float
    cpu_s: float
    stdout: str
    stderr: str


class Runner:
    def __init__(self, launcher: Launcher, logdir: Path, verbose: bool = False):
        self.launcher = launcher
        self.logdir = logdir
        self.verbose = verbose
        self.n = 0

    def run(self, argv: list[str], *, env: dict | None = None, cwd: Path | None = None,
            label: str = "cmd", check: bool = True) -> Run:
        self.n += 1
        base = self.logdir / f"{self.n:03d}-{label}"
        r_fd, w_fd = os.pipe()
        with open(str(base) + ".out", "w+b") as out, open(str(base) + ".err", "w+b") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(self.launcher.prefix + [str(w_fd)] + [str(a) for a in argv],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(w_fd,),
                                 env=env, cwd=cwd)
            os.close(w_fd)
            p.wait()
            wall = time.perf_counter() - t0
            info = os.read(r_fd, 256).decode().split()
            os.close(r_fd)
            out.seek(0)
            err.seek(0)
            so, se = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if len(info) >= 4:
            rss_kib, rc, cpu = int(info[0]), int(info[1]), float(info[2]) + float(info[3])
        else:
            rss_kib, rc, cpu = 0, p.returncode, 0.0
        run = Run([str(a) for a in argv], rc, wall, rss_kib / 1024, cpu, so, se)
        if self.verbose:
            print(f"    [{label}] rc={rc} {wall:.2f}s {run.rss_mib:.1f} MiB  {' '.join(run.argv)[:120]}")
        if check and rc != 0:
            raise ToolError(f"{label}: `{' '.join(run.argv)}` exited {rc}\n"
                            f"--- stderr (tail) ---\n{se[-2000:]}\n--- stdout (tail) ---\n{so[-1000:]}")
        return run


class ToolError(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers

def warm(*paths: Path) -> None:
    """Read files (or every file under directories) once so they sit in the page cache."""
    buf = bytearray(4 * MiB)
    for p in paths:
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
        for f in files:
            try:
                with open(f, "rb", buffering=0) as fh:
                    while fh.readinto(buf):
                        pass
            except OSError:
                pass


def settle() -> None:
    """Flush dirty pages left by the previous step so it doesn't bill the next one."""
    os.sync()


def dir_bytes(p: Path) -> int:
    if not p.exists():
        return 0
    if p.is_file():
        return p.stat().st_size
    return sum(x.stat().st_size for x in p.rglob("*") if x.is_file() and not x.is_symlink())


def rmrf(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def mib(n: float) -> float:
    return n / MiB


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  " + "  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(headers)))
    lines.append("  " + "  ".join("-" * x for x in w))
    for r in cells:
        lines.append("  " + "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
    return "\n".join(lines)


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


def machine_info(path: Path) -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    fs, best = "?", ""
    try:
        rp = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and (rp == parts[1] or rp.startswith(parts[1].rstrip("/") + "/")) \
                    and len(parts[1]) >= len(best):
                best, fs = parts[1], f"{parts[2]} on {parts[0]} ({parts[1]})"
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem": mem, "kernel": platform.release(),
            "filesystem": fs, "python": platform.python_version(), "host": platform.node()}


# --------------------------------------------------------------------------- database

def _vocab(rng: random.Random, n: int) -> list[str]:
    """Deterministic pseudo-English words (no /usr/share/dict needed)."""
    cons = "bcdfghjklmnprstvwyz"
    vows = "aeiou"
    ends = ["", "", "", "s", "ed", "ing", "er", "ly", "tion", "ness"]
    onsets = list(cons) + ["br", "ch", "cl", "cr", "dr", "fl", "fr", "gr", "pl", "pr",
                           "sh", "sl", "st", "str", "th", "tr", "wh"]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vows) + (rng.choice(cons) if rng.random() < 0.4 else "")
                    for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))) + rng.choice(ends)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


class TextGen:
    """Word-list text: 50k words drawn with a Zipf(1.0) law, which compresses like
    real prose (zstd-3 ~4.1x on the finished database, as in ANCHORS.md)."""
    VOCAB = 50_000
    BODY_WORDS = (40, 480)  # ~2.9 KB bodies on average -> ~297 rows per MiB, like ANCHORS

    def __init__(self, seed: int):
        vr = random.Random(f"vocab-{seed}")
        self.words = _vocab(vr, self.VOCAB)
        self.cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(self.VOCAB)))
        self.tags = _vocab(random.Random(f"tags-{seed}"), 200)

    def body(self, rng: random.Random) -> str:
        return " ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randint(*self.BODY_WORDS)))

    def title(self, rng: random.Random) -> str:
        return " ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randint(3, 9))).capitalize()

    def tagstr(self, rng: random.Random) -> str:
        return ",".join(rng.sample(self.tags, rng.randint(1, 4)))


T0 = 1_700_000_000


def build_db(path: Path, size_mib: int, seed: int, gen: TextGen) -> dict:
    tmp = path.with_name(path.name + ".building")
    for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm"), Path(str(tmp) + "-journal")):
        rmrf(p)
    rng = random.Random(f"rows-{seed}")
    target = size_mib * MiB * 0.984  # the two indexes add ~1.6%
    t0 = time.perf_counter()
    con = sqlite3.connect(tmp, isolation_level=None)
    con.execute(f"PRAGMA page_size={PAGE_SIZE}")
    con.execute("PRAGMA journal_mode=OFF")  # switched to WAL at the end
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE kb_entries (id INTEGER PRIMARY KEY, title TEXT, body TEXT, "
                "tags TEXT, updated_at INTEGER)")
    rid = 0
    batch_rows = 2000 if size_mib >= 256 else 500
    while True:
        batch = []
        for _ in range(batch_rows):
            rid += 1
            batch.append((rid, gen.title(rng), gen.body(rng), gen.tagstr(rng), T0 + rng.randrange(63_000_000)))
        con.execute("BEGIN")
        con.executemany("INSERT INTO kb_entries VALUES (?,?,?,?,?)", batch)
        con.execute("COMMIT")
        if con.execute("PRAGMA page_count").fetchone()[0] * PAGE_SIZE >= target:
            break
        if rid % 50_000 < batch_rows:
            print(f"    ... {rid} rows, {mib(con.execute('PRAGMA page_count').fetchone()[0] * PAGE_SIZE):.0f} MiB")
    con.execute("CREATE INDEX idx_kb_entries_updated_at ON kb_entries(updated_at)")
    con.execute("CREATE INDEX idx_kb_entries_tags ON kb_entries(tags)")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for p in (Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
        rmrf(p)
    os.replace(tmp, path)
    return {"rows": rid, "build_s": time.perf_counter() - t0}


def cached_db(out: Path, size_mib: int, seed: int, gen: TextGen, rebuild: bool = False) -> Path:
    """The benchmark database of `size_mib` and `seed` in `out`, built on first use and reused."""
    cached = out / f"kb-{size_mib}MiB-seed{seed}-v{GEN_VERSION}.db"
    if rebuild or not cached.exists():
        print(f"\n== building {size_mib} MiB database -> {cached}")
        info = build_db(cached, size_mib, seed, gen)
        print(f"  {info['rows']} rows in {info['build_s']:.1f} s")
    return cached


def db_stats(path: Path) -> dict:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT count(*), max(id), max(updated_at) FROM kb_entries").fetchone()
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        jm = con.execute("PRAGMA journal_mode").fetchone()[0]
        ps = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    return {"rows": rows[0], "max_id": rows[1], "max_updated_at": rows[2], "pages": pages,
            "page_size": ps, "journal_mode": jm, "bytes": path.stat().st_size}


def checkpoint(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        con.close()


def update_rows(path: Path, pct: float, rng: random.Random, gen: TextGen) -> int:
    """UPDATE pct% of the rows, chosen at random: new body text and a new updated_at."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        max_id, max_ts = con.execute("SELECT max(id), max(updated_at) FROM kb_entries").fetchone()
        k = max(1, round(max_id * pct / 100))
        ids = rng.sample(range(1, max_id + 1), k)
        params = [(gen.body(rng), max_ts + 1 + j, rid) for j, rid in enumerate(ids)]
        con.execute("BEGIN")
        con.executemany("UPDATE kb_entries SET body=?, updated_at=? WHERE id=?", params)
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        con.close()
    return k


def page_digests(path: Path) -> array.array:
    d = array.array("Q")
    chunk = 256 * PAGE_SIZE
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            for off in range(0, len(b), PAGE_SIZE):
                d.append(_page_digest(b[off:off + PAGE_SIZE]))
    return d


def ideal_delta(path: Path, before: array.array, level: int = 3) -> tuple[dict, array.array]:
    """Pages of `path` that differ from `before` (or are new), compressed together with
    zstd at `level` (single thread, one stream).  Returns the figures and the new digests."""
    after = array.array("Q")
    cobj = zstandard.ZstdCompressor(level=level).compressobj()
    comp = changed = 0
    blocks: set[int] = set()
    chunk = 256 * PAGE_SIZE
    pgno = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            for off in range(0, len(b), PAGE_SIZE):
                page = b[off:off + PAGE_SIZE]
                dg = _page_digest(page)
                after.append(dg)
                if pgno >= len(before) or before[pgno] != dg:
                    changed += 1
                    blocks.add(pgno * PAGE_SIZE // MiB)
                    comp += len(cobj.compress(page))
                pgno += 1
    comp += len(cobj.flush())
    return ({"changed_pages": changed, "pages": len(after), "changed_bytes": changed * PAGE_SIZE,
             "ideal_bytes": comp, "mib_blocks_touched": len(blocks),
             "mib_blocks": (len(after) * PAGE_SIZE + MiB - 1) // MiB}, after)


def compare_pages(a: Path, b: Path) -> dict:
    """Page-by-page comparison (page 1's file-change counter / version bytes masked)."""
    differ = 0
    na = nb = 0
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        first = True
        while True:
            x, y = fa.read(256 * PAGE_SIZE), fb.read(256 * PAGE_SIZE)
            if not x and not y:
                break
            if first:
                def mask(p: bytes) -> bytes:
                    p = bytearray(p)
                    for lo, hi in ((18, 20), (24, 28), (92, 100)):
                        p[lo:hi] = b"\0" * (hi - lo)
                    return bytes(p)
                x, y = mask(x[:PAGE_SIZE]) + x[PAGE_SIZE:], mask(y[:PAGE_SIZE]) + y[PAGE_SIZE:]
                first = False
            na += len(x) // PAGE_SIZE
            nb += len(y) // PAGE_SIZE
            if x != y:
                for off in range(0, max(len(x), len(y)), PAGE_SIZE):
                    if x[off:off + PAGE_SIZE] != y[off:off + PAGE_SIZE]:
                        differ += 1
    return {"pages_a": na, "pages_b": nb, "pages_differ": differ, "identical": differ == 0 and na == nb}


def logical_check(path: Path) -> dict:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        qc = con.execute("PRAGMA quick_check").fetchone()[0]
        rows, bodies = con.execute("SELECT count(*), total(length(body)) FROM kb_entries").fetchone()
    finally:
        con.close()
    return {"quick_check": qc, "rows": rows, "body_chars": int(bodies)}


# --------------------------------------------------------------------------- tools

class Tools:
    def __init__(self, args):
        self.avail: dict[str, str | None] = {}
        for name in ("sqlite3", "zstd", "restic", "borg"):
            self.avail[name] = shutil.which(name)
        self.skip = set(args.skip)
        self.backupd: list[str] | None = None
        self.backupd_why = ""

    def has(self, name: str) -> bool:
        return bool(self.avail.get(name)) and name not in self.skip

    def report_missing(self) -> list[str]:
        lines = []
        for name, path in self.avail.items():
            if not path:
                lines.append(f"  MISSING: `{name}` not found -> skipping its column; install it with "
                             f"`apt-get install -y {DEBIAN_PKG[name]}`")
        return lines

    def probe_backupd(self, explicit: str | None) -> None:
        if "backupd" in self.skip:
            self.backupd_why = "skipped by --skip"
            return
        cands = [explicit.split()] if explicit else []
        venv_bin = REPO_ROOT / ".venv" / "bin" / "backupd"
        if venv_bin.exists():
            cands.append([str(venv_bin)])
        cands.append([sys.executable, "-m", "backupd.cli.main"])
        for c in cands:
            try:
                r = subprocess.run(c + ["backup", "--help"], capture_output=True, text=True, timeout=60,
                                   cwd=REPO_ROOT)
            except (OSError, subprocess.TimeoutExpired) as e:
                self.backupd_why = str(e)
                continue
            if r.returncode == 0:
                self.backupd = c
                return
            lines = (r.stderr or r.stdout).strip().splitlines()
            self.backupd_why = lines[-1] if lines else f"exit status {r.returncode}"
        self.backupd = None


def parse_json_out(text: str) -> dict:
    text = text.strip()
    try:
        v = json.loads(text)
        if isinstance(v, dict):
            return v
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ToolError(f"could not find a JSON object in output: {text[-500:]!r}")


class Backupd:
    def __init__(self, cmd: list[str], root: Path, db: Path, runner: Runner):
        self.cmd, self.root, self.db, self.runner = cmd, root, db, runner
        self.backups = root / "backups"
        self.state = root / "state"
        self.key = root / "backup.key"
        self.cfg = root / "backupd.toml"
        rmrf(root)
        root.mkdir(parents=True)
        self.backups.mkdir()
        self.state.mkdir()
        fd = os.open(self.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        self.cfg.write_text(
            f'[state]\ndir = "{self.state}"\n\n'
            f'[[sources]]\nname = "bench"\nkind = "sqlite"\npath = "{db}"\n\n'
            f'[[destinations]]\nname = "local"\nkind = "local"\npath = "{self.backups}"\n'
            f'compression_level = 3\n\n'
            f'[destinations.encryption]\nkey_file = "{self.key}"\n')

    def backup(self, strategy: str, label: str) -> tuple[Run, dict, int]:
        before = dir_bytes(self.backups)
        r = self.runner.run(self.cmd + ["backup", "-c", self.cfg, "--source", "bench", "--strategy", strategy,
                                        "--json"], label=label, cwd=REPO_ROOT)
        meta = parse_json_out(r.stdout)
        return r, meta, dir_bytes(self.backups) - before

    def restore(self, backup_id: str, to: Path, label: str) -> Run:
        rmrf(to)
        return self.runner.run(self.cmd + ["restore", "-c", self.cfg, "--source", "bench", "--backup", backup_id,
                                           "--to", to, "--json"], label=label, cwd=REPO_ROOT)


class Restic:
    def __init__(self, root: Path, runner: Runner):
        self.root, self.runner = root, runner
        self.repo = root / "repo"
        self.env = dict(os.environ, RESTIC_REPOSITORY=str(self.repo), RESTIC_PASSWORD=PASSWORD,
                        RESTIC_CACHE_DIR=str(root / "cache"))

    def init(self) -> None:
        rmrf(self.root)
        self.root.mkdir(parents=True)
        self.runner.run(["restic", "init", "--repository-version", "2"], env=self.env, label="restic-init")

    def backup(self, path: Path, label: str) -> tuple[Run, int]:
        before = dir_bytes(self.repo)
        r = self.runner.run(["restic", "backup", "-q", "--host", "bench", path], env=self.env, label=label)
        return r, dir_bytes(self.repo) - before

    def restore(self, target: Path, label: str) -> tuple[Run, Path]:
        rmrf(target)
        target.mkdir(parents=True)
        r = self.runner.run(["restic", "restore", "latest", "--target", target], env=self.env, label=label)
        return r, target


class Borg:
    def __init__(self, root: Path, runner: Runner):
        self.root, self.runner = root, runner
        self.repo = root / "repo"
        self.env = dict(os.environ, BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=str(root / "base"),
                        BORG_DISPLAY_PASSPHRASE="no", BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        self.n = 0

    def init(self) -> None:
        rmrf(self.root)
        self.root.mkdir(parents=True)
        self.runner.run(["borg", "init", "--encryption=repokey-blake2", self.repo], env=self.env, label="borg-init")

    def create(self, path: Path, label: str) -> tuple[Run, int]:
        before = dir_bytes(self.repo)
        self.n += 1
        r = self.runner.run(["borg", "create", "--compression", "zstd,3", f"{self.repo}::a{self.n}", path],
                            env=self.env, label=label)
        return r, dir_bytes(self.repo) - before

    def extract(self, target: Path, label: str) -> Run:
        rmrf(target)
        target.mkdir(parents=True)
        return self.runner.run(["borg", "extract", f"{self.repo}::a{self.n}"], env=self.env, cwd=target,
                               label=label)


def find_file(root: Path, name: str) -> Path | None:
    for p in root.rglob(name):
        if p.is_file():
            return p
    return None


# --------------------------------------------------------------------------- benchmark

@dataclass
class Row:
    tool: str
    wall_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    stored_bytes: list[int] = field(default_factory=list)

    def add(self, wall: float, rss: float, cpu: float, stored: int | None) -> None:
        self.wall_s.append(wall)
        self.rss_mib.append(rss)
        self.cpu_s.append(cpu)
        if stored is not None:
            self.stored_bytes.append(stored)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def rss(self) -> float:
        return max(self.rss_mib)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s)

    @property
    def stored(self) -> int | None:
        return int(statistics.median(self.stored_bytes)) if self.stored_bytes else None

    def summary(self, logical: int) -> dict:
        return {"tool": self.tool, "wall_s": round(self.wall, 3), "wall_s_all": [round(x, 3) for x in self.wall_s],
                "mib_per_s": round(mib(logical) / self.wall, 1), "peak_rss_mib": round(self.rss, 1),
                "cpu_s": round(self.cpu, 2),
                "stored_bytes": self.stored, "stored_mib": None if self.stored is None else round(mib(self.stored), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=None, help="database size (default 512; --quick: 64)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 MiB, one repetition")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=None,
                    help="full-backup repetitions, median reported (default 3; --quick: 1)")
    ap.add_argument("--update-pct", type=float, default=1.0, help="percentage of rows updated per round")
    ap.add_argument("--incrementals", type=int, default=5, help="incrementals before the restore (>=1)")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--json-out", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached database")
    ap.add_argument("--skip", action="append", default=[], choices=["backupd", "pipeline", "restic", "borg"],
                    help="leave a column out (repeatable)")
    ap.add_argument("--backupd", default=None, help="command to run backupd (default .venv/bin/backupd)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (repos, restores)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every child process")
    args = ap.parse_args()
    size = args.size_mib or (64 if args.quick else 512)
    repeat = args.repeat or (1 if args.quick else 3)
    args.incrementals = max(1, args.incrementals)

    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    rmrf(run_dir)
    run_dir.mkdir()
    logdir = run_dir / "logs"
    logdir.mkdir()
    launcher = Launcher(out)
    runner = Runner(launcher, logdir, args.verbose)
    tools = Tools(args)
    tools.probe_backupd(args.backupd)

    report: dict = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "machine": machine_info(out), "params": {"size_mib": size, "seed": args.seed,
                                                             "repeat": repeat, "update_pct": args.update_pct,
                                                             "incrementals": args.incrementals},
                    "rss_method": launcher.kind}
    vers = {"sqlite3": ["sqlite3", "--version"], "zstd": ["zstd", "--version"],
            "restic": ["restic", "version"], "borg": ["borg", "--version"]}
    report["versions"] = {k: tool_version(v) for k, v in vers.items() if tools.avail[k]}
    short = {"sqlite3": lambda v: "sqlite3 " + v.split()[0],
             "zstd": lambda v: "zstd " + (re.findall(r"v\d[\d.]*", v) or ["?"])[0].lstrip("v"),
             "restic": lambda v: " ".join(v.split()[:2]), "borg": lambda v: v}
    m = report["machine"]
    print(f"backupd benchmark  {report['date']}")
    print(f"  machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem']} RAM, kernel {m['kernel']}, {m['filesystem']}")
    print(f"  python {m['python']}; " + ", ".join(short[k](v) for k, v in report["versions"].items()))
    print(f"  peak RSS via wait4() in a {launcher.kind}")
    la = os.getloadavg()
    report["loadavg_start"] = la
    print(f"  load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
          + ("  (other work is running: expect noisy times; compare ratios)" if la[0] > 0.5 else ""))
    for line in tools.report_missing():
        print(line)
    if tools.backupd:
        rev = tool_version(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
        report["versions"]["backupd"] = rev
        print(f"  backupd: {' '.join(tools.backupd)} (tree {rev})")
    else:
        print(f"  backupd: NOT AVAILABLE ({tools.backupd_why}) -> backupd columns skipped")

    # ---------------------------------------------------------------- database
    gen = TextGen(args.seed)
    cached = cached_db(out, size, args.seed, gen, rebuild=args.rebuild)
    db = run_dir / "bench.db"
    shutil.copyfile(cached, db)
    st0 = db_stats(db)
    logical = st0["bytes"]
    report["database"] = {**st0, "cached": str(cached)}
    print(f"\n== database: {mib(logical):.1f} MiB, {st0['pages']} pages of {st0['page_size']} B, "
          f"{st0['rows']} kb_entries rows, journal_mode={st0['journal_mode']}")

    results: dict = {}
    notes: list[str] = []

    # ---------------------------------------------------------------- 1. full
    print(f"\n== 1. full backup ({repeat} run{'s' if repeat > 1 else ''} each, median wall; warm cache)")
    rows: dict[str, Row] = {}
    bd = rs = bg = None
    if tools.backupd:
        bd = Backupd(tools.backupd, run_dir / "backupd", db, runner)
    if tools.has("restic"):
        rs = Restic(run_dir / "restic", runner)
    if tools.has("borg"):
        bg = Borg(run_dir / "borg", runner)
    do_pipe = tools.has("sqlite3") and tools.has("zstd") and "pipeline" not in args.skip
    last_full_id = None
    for i in range(repeat):
        if bd:
            settle()
            warm(db)
            try:
                r, meta, delta = bd.backup("full", f"backupd-full{i}")
                rows.setdefault("backupd", Row("backupd full (zstd-3 + encryption, fsync)")).add(
                    r.wall_s, r.rss_mib, r.cpu_s, int(meta.get("stored_bytes", delta)))
                last_full_id = meta.get("id")
                if abs(int(meta.get("stored_bytes", delta)) - delta) > max(4096, delta // 100):
                    notes.append(f"backupd full: reported stored_bytes {meta.get('stored_bytes')} but the "
                                 f"destination grew by {delta} bytes")
            except ToolError as e:
                print(f"  backupd full backup FAILED: {e}")
                bd = None
        if do_pipe:
            pdir = run_dir / "pipeline"
            rmrf(pdir)
            pdir.mkdir()
            snap, zst = pdir / "snap.db", pdir / "snap.db.zst"
            settle()
            warm(db)
            r1 = runner.run(["sqlite3", db, f".backup '{snap}'"], label=f"sqlite3-backup{i}")
            r2 = runner.run(["zstd", "-3", "-T2", "-q", "-f", snap, "-o", zst], label=f"zstd{i}")
            stored = zst.stat().st_size
            rows.setdefault("pipeline", Row("sqlite3 .backup then zstd -3 -T2 (no encryption)")).add(
                r1.wall_s + r2.wall_s, max(r1.rss_mib, r2.rss_mib), r1.cpu_s + r2.cpu_s, stored)
            rows.setdefault("snap", Row("  of which sqlite3 .backup (snapshot)")).add(
                r1.wall_s, r1.rss_mib, r1.cpu_s, snap.stat().st_size)
            rows.setdefault("zstdonly", Row("  of which zstd -3 -T2 of the snapshot")).add(
                r2.wall_s, r2.rss_mib, r2.cpu_s, stored)
            rmrf(pdir)
        if rs:
            rs.init()
            settle()
            warm(db)
            r, delta = rs.backup(db, f"restic-full{i}")
            rows.setdefault("restic", Row("restic backup (encrypted, repo v2)")).add(r.wall_s, r.rss_mib, r.cpu_s,
                                                                                     delta)
        if bg:
            bg.init()
            settle()
            warm(db)
            r, delta = bg.create(db, f"borg-full{i}")
            rows.setdefault("borg", Row("borg create zstd,3 repokey-blake2")).add(r.wall_s, r.rss_mib, r.cpu_s,
                                                                                delta)
    full = {k: v.summary(logical) for k, v in rows.items()}
    results["full"] = full
    b = rows.get("backupd")
    hdr = ["what", "wall s", "MiB/s", "cpu s", "peak RSS MiB", "stored MiB"]
    trows = []
    for k, v in rows.items():
        s = v.summary(logical)
        trows.append([v.tool, f"{s['wall_s']:.2f}", f"{s['mib_per_s']:.0f}", f"{s['cpu_s']:.2f}",
                      f"{s['peak_rss_mib']:.1f}", "" if s["stored_mib"] is None else f"{s['stored_mib']:.1f}"])
    print(table(hdr, trows))
    if b:
        rat = []
        for k in ("pipeline", "restic", "borg", "zstdonly"):
            if k in rows:
                o = rows[k]
                rw = b.wall / o.wall
                rr = b.rss / o.rss if o.rss else None
                rst = b.stored / o.stored if o.stored else None
                rat.append([f"backupd / {o.tool.strip()}", fmt_ratio(rw), fmt_ratio(rr), fmt_ratio(rst)])
                full[k]["backupd_ratio"] = {"wall": round(rw, 3), "rss": rr and round(rr, 3),
                                            "stored": rst and round(rst, 3)}
        if rat:
            print(table(["ratio (lower = backupd better)", "wall", "peak RSS", "stored"], rat))
        if "pipeline" in rows:
            print(f"  backupd / sqlite3+zstd = {b.wall / rows['pipeline'].wall:.2f}x wall")

    # ---------------------------------------------------------------- 2. incremental
    print(f"\n== 2. incremental after UPDATE of {args.update_pct:g}% of rows (scattered, new body text)")
    digests = page_digests(db)
    rng = random.Random(f"updates-{args.seed}")
    rounds = []
    incr_rows: dict[str, Row] = {}
    last_incr_id = None
    restore_ok = bd is not None and last_full_id is not None
    for rnd in range(1, args.incrementals + 1):
        k = update_rows(db, args.update_pct, rng, gen)
        ideal, digests = ideal_delta(db, digests)
        rec = {"round": rnd, "rows_updated": k, **ideal}
        if bd:
            settle()
            warm(db)
            try:
                r, meta, delta = bd.backup("incremental", f"backupd-incr{rnd}")
                stored = int(meta.get("stored_bytes", delta))
                rec["backupd"] = {"wall_s": round(r.wall_s, 3), "peak_rss_mib": round(r.rss_mib, 1),
                                  "cpu_s": round(r.cpu_s, 2), "stored_bytes": stored, "dest_growth_bytes": delta,
                                  "changed_pages": meta.get("changed_pages"), "page_count": meta.get("page_count"),
                                  "strategy": meta.get("strategy"), "parent_id": meta.get("parent_id"),
                                  "id": meta.get("id"),
                                  "ratio_to_ideal": round(stored / ideal["ideal_bytes"], 3),
                                  "target_bytes": int(1.25 * ideal["ideal_bytes"] + INCR_SLACK)}
                incr_rows.setdefault("backupd", Row("backupd incremental")).add(r.wall_s, r.rss_mib, r.cpu_s, stored)
                last_incr_id = meta.get("id")
                if meta.get("strategy") not in (None, "incremental"):
                    notes.append(f"round {rnd}: backupd returned strategy {meta.get('strategy')!r} "
                                 f"for --strategy incremental")
                if abs(stored - delta) > max(4096, delta // 100):
                    notes.append(f"round {rnd}: backupd stored_bytes {stored} but the destination grew by "
                                 f"{delta} bytes")
                cp = meta.get("changed_pages")
                if isinstance(cp, int) and abs(cp - ideal["changed_pages"]) > 2:
                    notes.append(f"round {rnd}: backupd says {cp} changed pages, file comparison says "
                                 f"{ideal['changed_pages']}")
            except ToolError as e:
                print(f"  backupd incremental FAILED: {e}")
                bd = None
                restore_ok = False
        # restic/borg: every round (their latest snapshot is what gets restored), timed on round 1
        if rs:
            settle()
            warm(db)
            r, delta = rs.backup(db, f"restic-incr{rnd}")
            rec["restic"] = {"wall_s": round(r.wall_s, 3), "peak_rss_mib": round(r.rss_mib, 1),
                             "stored_bytes": delta, "ratio_to_ideal": round(delta / ideal["ideal_bytes"], 2)}
            incr_rows.setdefault("restic", Row("restic backup (2nd snapshot)")).add(r.wall_s, r.rss_mib, r.cpu_s,
                                                                                    delta)
        if bg:
            settle()
            warm(db)
            r, delta = bg.create(db, f"borg-incr{rnd}")
            rec["borg"] = {"wall_s": round(r.wall_s, 3), "peak_rss_mib": round(r.rss_mib, 1),
                           "stored_bytes": delta, "ratio_to_ideal": round(delta / ideal["ideal_bytes"], 2)}
            incr_rows.setdefault("borg", Row("borg create (2nd archive)")).add(r.wall_s, r.rss_mib, r.cpu_s, delta)
        rounds.append(rec)
        if rnd == 1:
            print(f"  {k} rows updated; {ideal['changed_pages']} of {ideal['pages']} pages changed "
                  f"({100 * ideal['changed_pages'] / ideal['pages']:.1f}%), spread over "
                  f"{ideal['mib_blocks_touched']} of {ideal['mib_blocks']} 1-MiB blocks")
            print(f"  ideal (changed pages, zstd-3 together): {ideal['ideal_bytes'] / KiB:.1f} KiB "
                  f"(uncompressed {ideal['changed_bytes'] / MiB:.1f} MiB)")
            t = []
            for name in ("backupd", "restic", "borg"):
                if name in rec:
                    x = rec[name]
                    t.append([name, f"{x['wall_s']:.2f}", f"{x['peak_rss_mib']:.1f}",
                              f"{x['stored_bytes'] / KiB:.1f}", fmt_ratio(x["ratio_to_ideal"])])
            t.append(["ideal", "", "", f"{ideal['ideal_bytes'] / KiB:.1f}", "1.00x"])
            print(table(["first incremental", "wall s", "peak RSS MiB", "stored KiB", "/ ideal"], t))
            if "backupd" in rec:
                x = rec["backupd"]
                print(f"  backupd / ideal = {x['ratio_to_ideal']:.2f}x  (target <= 1.25x + 8 KiB = "
                      f"{x['target_bytes'] / KiB:.1f} KiB); backupd reports {x['changed_pages']} changed pages")
                for name in ("restic", "borg"):
                    if name in rec:
                        print(f"  {name} / backupd = {rec[name]['stored_bytes'] / x['stored_bytes']:.1f}x stored")
    if len(rounds) > 1:
        t = []
        for rec in rounds:
            line = [str(rec["round"]), str(rec["changed_pages"]), f"{rec['ideal_bytes'] / KiB:.1f}"]
            for name in ("backupd", "restic", "borg"):
                line.append(f"{rec[name]['stored_bytes'] / KiB:.1f} ({rec[name]['ratio_to_ideal']:.2f}x)"
                            if name in rec else "-")
            line.append(f"{rec['backupd']['wall_s']:.2f}" if "backupd" in rec else "-")
            t.append(line)
        print(table(["round", "pages changed", "ideal KiB", "backupd KiB (/ideal)", "restic KiB (/ideal)",
                     "borg KiB (/ideal)", "backupd wall s"], t, title="  every round:"))
    results["incremental"] = {"rounds": rounds,
                              "summary": {k: v.summary(logical) for k, v in incr_rows.items()}}

    # ---------------------------------------------------------------- 3. restore
    print(f"\n== 3. restore of the latest state (full + {args.incrementals} incrementals for backupd; "
          f"latest snapshot for restic/borg; {repeat} run{'s' if repeat > 1 else ''} each, median wall)")
    checkpoint(db)
    src_check = logical_check(db)
    rbytes = db.stat().st_size
    restore: dict = {"source": src_check, "bytes": rbytes}
    rdir = run_dir / "restore"
    rdir.mkdir()
    rrows: dict[str, Row] = {}
    extra: dict[str, dict] = {}
    do_bd = bool(bd and restore_ok and last_incr_id)
    for i in range(repeat):
        if do_bd:
            settle()
            warm(bd.backups)
            to = rdir / "backupd.db"
            try:
                r = bd.restore(last_incr_id, to, f"backupd-restore{i}")
                rrows.setdefault("backupd", Row("backupd restore (full + incrementals, fsynced)")).add(
                    r.wall_s, r.rss_mib, r.cpu_s, None)
                if i == 0:
                    cmpr = compare_pages(db, to) if to.exists() else {"identical": False, "error": "no output"}
                    chk = logical_check(to) if to.exists() else {}
                    extra["backupd"] = {"fsync": True, "pages": cmpr, "check": chk}
                    if not cmpr.get("identical"):
                        notes.append(f"backupd restore is not page-identical to the source: {cmpr}")
                    if chk.get("quick_check") != "ok" or chk.get("rows") != src_check["rows"] \
                            or chk.get("body_chars") != src_check["body_chars"]:
                        notes.append(f"backupd restore content check failed: {chk} vs source {src_check}")
                rmrf(to)
            except ToolError as e:
                print(f"  backupd restore FAILED: {e}")
                do_bd = False
        if rs:
            settle()
            warm(rs.repo)
            r, target = rs.restore(rdir / "restic", f"restic-restore{i}")
            f = find_file(target, db.name)
            t0 = time.perf_counter()
            if f:
                fd = os.open(f, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            fs = time.perf_counter() - t0
            rrows.setdefault("restic", Row("restic restore latest (no fsync)")).add(r.wall_s, r.rss_mib, r.cpu_s,
                                                                                   None)
            rrows.setdefault("restic_fsync", Row("  restic restore + fsync of the file")).add(
                r.wall_s + fs, r.rss_mib, r.cpu_s, None)
            if i == 0:
                extra["restic"] = {"fsync": False, "pages": compare_pages(db, f) if f else {"identical": False}}
            rmrf(target)
        if bg:
            settle()
            warm(bg.repo)
            r = bg.extract(rdir / "borg", f"borg-extract{i}")
            f = find_file(rdir / "borg", db.name)
            rrows.setdefault("borg", Row("borg extract (no fsync)")).add(r.wall_s, r.rss_mib, r.cpu_s, None)
            if i == 0:
                extra["borg"] = {"fsync": False, "pages": compare_pages(db, f) if f else {"identical": False}}
            rmrf(rdir / "borg")
    t = []
    for k, v in rrows.items():
        s = v.summary(rbytes)
        s.pop("stored_bytes"), s.pop("stored_mib")
        restore[k] = {**s, **extra.get(k, {})}
        same = extra.get(k, {}).get("pages", {})
        t.append([v.tool, f"{s['wall_s']:.2f}", f"{s['mib_per_s']:.0f}", f"{s['cpu_s']:.2f}",
                  f"{s['peak_rss_mib']:.1f}" if k != "restic_fsync" else "",
                  ("identical" if same.get("identical") else f"DIFFERS {same}") if same else ""])
    if t:
        print(table(["what", "wall s", "MiB/s", "cpu s", "peak RSS MiB", "vs source pages"], t))
    if "backupd" in restore and "restic" in restore:
        bw, rw = restore["backupd"]["wall_s"], restore["restic"]["wall_s"]
        print(f"  backupd / restic restore = {bw / rw:.2f}x wall (backupd fsyncs its output; restic does not; "
              f"with an fsync added restic takes {restore['restic_fsync']['wall_s']:.2f} s -> "
              f"{bw / restore['restic_fsync']['wall_s']:.2f}x)")
    results["restore"] = restore

    # ---------------------------------------------------------------- 4. summary
    print("\n== 4. targets (SPEC.md quality bars)")
    targets = []

    def target(name: str, ok: bool | None, detail: str) -> None:
        targets.append({"target": name, "met": ok, "detail": detail})
        mark = "MET   " if ok else ("n/a   " if ok is None else "MISSED")
        print(f"  [{mark}] {name}: {detail}")

    if b and "pipeline" in rows:
        p = rows["pipeline"]
        target("full backup no slower than sqlite3 .backup + zstd -3 -T2", b.wall <= p.wall,
               f"{b.wall:.2f} s vs {p.wall:.2f} s = {b.wall / p.wall:.2f}x")
    else:
        target("full backup no slower than sqlite3 .backup + zstd -3 -T2", None, "not measured")
    for k in ("restic", "borg"):
        if b and k in rows:
            print(f"           (full backup vs {k}: {b.wall / rows[k].wall:.2f}x wall, "
                  f"{b.stored / rows[k].stored:.2f}x stored)")
    bi = [r for r in rounds if "backupd" in r]
    if bi:
        worst = max(bi, key=lambda r: r["backupd"]["stored_bytes"] / r["backupd"]["target_bytes"])
        ok = all(r["backupd"]["stored_bytes"] <= r["backupd"]["target_bytes"] for r in bi)
        f1 = bi[0]["backupd"]
        target("incremental <= 1.25x ideal + 8 KiB", ok,
               f"first {f1['stored_bytes'] / KiB:.1f} KiB = {f1['ratio_to_ideal']:.2f}x ideal "
               f"(limit {f1['target_bytes'] / KiB:.1f} KiB); worst of {len(bi)}: round {worst['round']} "
               f"{worst['backupd']['ratio_to_ideal']:.2f}x")
        if "restic" in bi[0]:
            print(f"           (restic stores {bi[0]['restic']['stored_bytes'] / f1['stored_bytes']:.1f}x what "
                  f"backupd stores for the same change"
                  + (f", borg {bi[0]['borg']['stored_bytes'] / f1['stored_bytes']:.1f}x)" if "borg" in bi[0]
                     else ")"))
    else:
        target("incremental <= 1.25x ideal + 8 KiB", None, "not measured")
    if "backupd" in restore and "restic" in restore:
        bw, rw = restore["backupd"]["wall_s"], restore["restic"]["wall_s"]
        target("restore (full + incrementals, fsynced) faster than restic restore", bw < rw,
               f"{bw:.2f} s vs {rw:.2f} s = {bw / rw:.2f}x")
    else:
        target("restore (full + incrementals, fsynced) faster than restic restore", None, "not measured")
    rss = []
    if b:
        rss += [("full", b.rss)]
    if "backupd" in incr_rows:
        rss += [("incremental", incr_rows["backupd"].rss)]
    if "backupd" in restore:
        rss += [("restore", restore["backupd"]["peak_rss_mib"])]
    if rss:
        mx = max(v for _, v in rss)
        target(f"backupd peak RSS < {RSS_LIMIT_MIB:.0f} MiB ({mib(logical):.0f} MiB database)",
               mx < RSS_LIMIT_MIB, ", ".join(f"{n} {v:.1f} MiB" for n, v in rss))
    else:
        target(f"backupd peak RSS < {RSS_LIMIT_MIB:.0f} MiB", None, "not measured")
    if not tools.backupd:
        print(f"  backupd was not available: {tools.backupd_why}")
    for n in notes:
        print(f"  NOTE: {n}")
    la = os.getloadavg()
    report["loadavg_end"] = la
    print(f"  load average at end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    results["targets"] = targets
    results["notes"] = notes
    report["results"] = results

    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\n  figures written to {args.json_out}")
    if not args.keep:
        for p in run_dir.iterdir():
            if p.name != "logs":
                rmrf(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
