#!/usr/bin/env python3
"""Backups to SFTP and SMB on loopback, side by side with the local destination, in one run.

Not a test: it prints ratios measured seconds apart on one machine (absolute times drift by 10% or
more between runs; compare the ratios). See bench/README.md ("Destinations").

Three installations (config, state dir, one destination each: local, sftp, smb), so every
`backupd backup` is timed alone; the same key file and zstd level 3 everywhere. The servers are the
tests' real OpenSSH sshd and Samba smbd (tests/servers) on 127.0.0.1, storing on the same disk as
the local destination. Each repetition starts from fresh installations and runs, kind after kind
(the order rotates between repetitions):
  1. full          `backupd backup --strategy full`
  2. incremental   after an UPDATE of 1% of the rows, `--strategy incremental`
  3. restore       `backupd restore` of that incremental (its chain: the full + it)
and reports the median wall, MiB/s of the database, backupd's CPU and peak RSS, the server's CPU (sshd
or smbd with the children that served the run: on loopback it runs on the same cores as backupd),
stored bytes, and each kind's ratio to local: of the medians, and per repetition (kinds run seconds
apart, so these show the noise). Target: SFTP backups within 1.5x of local.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench_engine import (BENCH_DIR, KiB, REPO_ROOT, Launcher, Row, Runner, TextGen, cached_db, db_stats,
                          dir_bytes, machine_info, mib, parse_json_out, rmrf, settle, table, tool_version,
                          update_rows, warm)

sys.path.insert(0, str(REPO_ROOT))
from tests.servers.smbd import SmbServer, running_smbd  # noqa: E402 - needs the repository on sys.path
from tests.servers.sshd import SshServer, running_sshd  # noqa: E402

KINDS = ("local", "sftp", "smb")
TARGET_RATIO = 1.5  # SFTP backup wall / local backup wall
PASSWORD_ENV = "BACKUPD_BENCH_SMB_PASSWORD"


@dataclass
class Install:
    """One backupd installation whose only destination is of `kind`; `store` is where its artifacts land
    on this machine (the server's directory for sftp and smb)."""

    kind: str
    root: Path
    store: Path
    destination: str
    server: psutil.Process | None = None
    helpers: set[int] = field(default_factory=set)  # the server's children that outlive connections

    @property
    def cfg(self) -> Path:
        return self.root / "backupd.toml"

    def reset(self, db: Path, key: Path) -> None:
        rmrf(self.root)
        rmrf(self.store)
        (self.root / "state").mkdir(parents=True)
        self.cfg.write_text(
            f'[state]\ndir = "{self.root / "state"}"\n\n'
            f'[[sources]]\nname = "bench"\nkind = "sqlite"\npath = "{db}"\n\n'
            f'[[destinations]]\nname = "{self.kind}"\n{self.destination}compression_level = 3\n\n'
            f'[destinations.encryption]\nkey_file = "{key}"\n')

    def server_cpu(self) -> float | None:
        """CPU seconds the server has used, with its exited children (None: no server); waits for the
        children that served the last run to be reaped (they are counted only then)."""
        if self.server is None:
            return None
        deadline = time.monotonic() + 10
        while {c.pid for c in self.server.children()} - self.helpers and time.monotonic() < deadline:
            time.sleep(0.01)
        t = self.server.cpu_times()
        return t.user + t.system + t.children_user + t.children_system


def listener(port: int) -> psutil.Process:
    """The process listening on 127.0.0.1:`port` (sshd runs in its own pid namespace: found by its socket)."""
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
            return psutil.Process(c.pid)
    raise RuntimeError(f"no process listens on port {port}")


def installs(run_dir: Path, ssh: SshServer, smb: SmbServer) -> dict[str, Install]:
    local = run_dir / "local-backups"
    sftp = ssh.root / "bench"
    every = {
        "local": Install("local", run_dir / "local", local, f'kind = "local"\npath = "{local}"\n'),
        "sftp": Install("sftp", run_dir / "sftp", sftp,
                        f'kind = "sftp"\nhost = "{ssh.host}"\nport = {ssh.port}\nuser = "{ssh.user}"\n'
                        f'key_file = "{ssh.client_key_file}"\nknown_hosts = "{ssh.known_hosts}"\npath = "{sftp}"\n',
                        listener(ssh.port)),
        "smb": Install("smb", run_dir / "smb", smb.share_dir / "bench",
                       f'kind = "smb"\nserver = "{smb.host}"\nport = {smb.port}\nshare = "{smb.share}"\n'
                       f'path = "bench"\nuser = "{smb.user}"\npassword_env = "{PASSWORD_ENV}"\n',
                       listener(smb.port)),
    }
    for inst in every.values():
        if inst.server is not None:
            inst.helpers = {c.pid for c in inst.server.children()}
    return every


def versions() -> dict[str, str]:
    out = {k: importlib.metadata.version(k) for k in ("paramiko", "smbprotocol", "cryptography")}
    out["sshd"] = tool_version([shutil.which("sshd", path="/usr/sbin:/usr/bin") or "sshd", "-V"])
    out["smbd"] = tool_version([shutil.which("smbd", path="/usr/sbin:/usr/bin") or "smbd", "--version"])
    out["backupd"] = tool_version(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
    return out


def print_section(rows: dict[str, Row], server_cpu: dict[str, list[float]], logical: int,
                  stored_unit: str | None) -> dict:
    """Print one section's table (ratios to local) and return its figures."""
    figures = {}
    t = []
    local = rows.get("local")
    for kind, row in rows.items():
        s = row.summary(logical)
        s["server_cpu_s"] = round(statistics.median(server_cpu[kind]), 2) if server_cpu.get(kind) else None
        line = [row.tool, f"{row.wall:.2f}", " ".join(f"{x:.2f}" for x in row.wall_s), f"{s['mib_per_s']:.0f}",
                f"{row.cpu:.2f}", "" if s["server_cpu_s"] is None else f"{s['server_cpu_s']:.2f}", f"{row.rss:.1f}"]
        if stored_unit:
            line.append(f"{row.stored / (KiB if stored_unit == 'KiB' else 1 << 20):,.1f}")
        if local is not None and kind != "local":
            s["ratio_to_local"] = round(row.wall / local.wall, 2)
            s["ratios_per_run"] = [round(w / lw, 2) for w, lw in zip(row.wall_s, local.wall_s)]
            line += [f"{s['ratio_to_local']:.2f}x", " ".join(f"{x:.2f}" for x in s["ratios_per_run"])]
        else:
            line += ["", ""]
        figures[kind] = s
        t.append(line)
    headers = ["destination", "wall s", "all runs", "MiB/s", "cpu s", "server cpu s", "peak RSS MiB"]
    headers += [f"stored {stored_unit}"] if stored_unit else []
    print(table(headers + ["/ local", "per run"], t))
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=None, help="database size (default 512; --quick: 64)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 MiB, one repetition")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=None, help="repetitions, median reported (default 3; --quick: 1)")
    ap.add_argument("--update-pct", type=float, default=1.0, help="percentage of rows updated before the incremental")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of local,sftp,smb")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--json-out", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached database")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every child process")
    args = ap.parse_args()
    size = args.size_mib or (64 if args.quick else 512)
    repeat = args.repeat or (1 if args.quick else 3)
    kinds = [k for k in KINDS if k in args.kinds.split(",")]
    backupd = Path(sys.executable).with_name("backupd")
    if not backupd.exists():
        sys.exit(f"bench: {backupd} not found: run with the venv's python (make venv)")

    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "destinations-run"  # apart from bench_engine.py's run/, so both can run at once
    rmrf(run_dir)
    (run_dir / "logs").mkdir(parents=True)
    launcher = Launcher(out)
    runner = Runner(launcher, run_dir / "logs", args.verbose)
    report: dict = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "machine": machine_info(out), "versions": versions(), "rss_method": launcher.kind,
                    "params": {"size_mib": size, "seed": args.seed, "repeat": repeat, "update_pct": args.update_pct,
                               "kinds": kinds}}
    m, v = report["machine"], report["versions"]
    print(f"backupd destinations benchmark  {report['date']}")
    print(f"  machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem']} RAM, kernel {m['kernel']}, {m['filesystem']}")
    print(f"  python {m['python']}; paramiko {v['paramiko']}, smbprotocol {v['smbprotocol']}; {v['sshd']}; "
          f"smbd {v['smbd']}; backupd tree {v['backupd']}")
    la = os.getloadavg()
    report["loadavg_start"] = la
    print(f"  load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
          + ("  (other work is running: expect noisy times; compare ratios)" if la[0] > 0.5 else ""))

    gen = TextGen(args.seed)
    db = run_dir / "bench.db"
    shutil.copyfile(cached_db(out, size, args.seed, gen, rebuild=args.rebuild), db)
    st = db_stats(db)
    logical = st["bytes"]
    report["database"] = st
    print(f"\n== database: {mib(logical):.1f} MiB, {st['pages']} pages, {st['rows']} rows; "
          f"{repeat} repetition{'s' if repeat > 1 else ''}, kinds in rotating order")
    key = run_dir / "backup.key"
    runner.run([backupd, "keygen", key], label="keygen")
    rng = random.Random(f"destinations-{args.seed}")

    full: dict[str, Row] = {}
    incr: dict[str, Row] = {}
    restore: dict[str, Row] = {}
    server_cpu: dict[str, dict[str, list[float]]] = {"full": {}, "incremental": {}, "restore": {}}
    notes: list[str] = []
    with running_sshd() as ssh, running_smbd() as smb:
        env = dict(os.environ, **{PASSWORD_ENV: smb.password})
        every = installs(run_dir, ssh, smb)

        def timed(inst: Install, step: str, argv: list, label: str):
            cpu = inst.server_cpu()
            r = runner.run([backupd, *argv, "-c", inst.cfg, "--source", "bench", "--json"], env=env, label=label,
                           cwd=REPO_ROOT)
            if cpu is not None:
                server_cpu[step].setdefault(inst.kind, []).append(inst.server_cpu() - cpu)
            return r

        def backup(inst: Install, strategy: str, rows: dict[str, Row], label: str) -> str:
            settle()
            warm(db)
            before = dir_bytes(inst.store)
            r = timed(inst, strategy, ["backup", "--strategy", strategy], label)
            meta = parse_json_out(r.stdout)
            grown = dir_bytes(inst.store) - before
            stored = int(meta.get("stored_bytes", grown))
            if abs(stored - grown) > max(4096, grown // 100):
                notes.append(f"{label}: backupd reports stored_bytes {stored} but {inst.store} grew by {grown}")
            rows.setdefault(inst.kind, Row(f"{inst.kind} {strategy}")).add(r.wall_s, r.rss_mib, r.cpu_s, stored)
            return meta["id"]

        for i in range(repeat):
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
            for kind in order:
                every[kind].reset(db, key)
            for kind in order:
                backup(every[kind], "full", full, f"{kind}-full{i}")
            update_rows(db, args.update_pct, rng, gen)
            latest = {kind: backup(every[kind], "incremental", incr, f"{kind}-incr{i}") for kind in order}
            for kind in order:
                to = run_dir / "restored.db"
                rmrf(to)
                settle()
                warm(every[kind].store)
                r = timed(every[kind], "restore", ["restore", "--backup", latest[kind], "--to", to],
                          f"{kind}-restore{i}")
                restore.setdefault(kind, Row(f"{kind} restore (full + incremental)")).add(
                    r.wall_s, r.rss_mib, r.cpu_s, None)
                rmrf(to)
        for inst in every.values():
            rmrf(inst.store)
    rmrf(db)

    results: dict = {}
    print("\n== 1. full backup (zstd-3 + encryption)")
    results["full"] = print_section(full, server_cpu["full"], logical, "MiB")
    print(f"\n== 2. incremental after an UPDATE of {args.update_pct:g}% of the rows")
    results["incremental"] = print_section(incr, server_cpu["incremental"], logical, "KiB")
    print("\n== 3. restore of the incremental (full + incremental, fsynced, integrity-checked)")
    results["restore"] = print_section(restore, server_cpu["restore"], logical, None)

    print(f"\n== 4. target: SFTP backups within {TARGET_RATIO}x of local")
    targets = []
    for step in ("full", "incremental"):
        fig = results[step]
        if "sftp" in fig and "local" in fig:
            ratio = fig["sftp"]["ratio_to_local"]
            ok = ratio <= TARGET_RATIO
            targets.append({"target": f"sftp {step} <= {TARGET_RATIO}x local", "met": ok, "ratio": ratio})
            smb_part = f"; smb {fig['smb']['ratio_to_local']:.2f}x" if "smb" in fig else ""
            print(f"  [{'MET   ' if ok else 'MISSED'}] {step}: sftp {fig['sftp']['wall_s']:.2f} s vs local "
                  f"{fig['local']['wall_s']:.2f} s = {ratio:.2f}x{smb_part}")
    for n in notes:
        print(f"  NOTE: {n}")
    la = os.getloadavg()
    report["loadavg_end"] = la
    print(f"  load average at end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    report["results"] = dict(results, targets=targets, notes=notes)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\n  figures written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
