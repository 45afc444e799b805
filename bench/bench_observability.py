#!/usr/bin/env python3
"""What observability costs: a plain daemon against an observed one, side by side in one run.

Not a test: it prints ratios measured seconds apart on one machine. See bench/README.md
("Observability"). The bar: notifications, the event stream and metrics never change or delay a
job's outcome, so the observed daemon's backups take less than 2% longer and its `status` p99 stays
under 10 ms.

Two throwaway installations under /tmp/bkd-obs-* hold the same text database and one encrypted local
destination; both daemons run at once:
  plain     no notifiers, no metrics listener, nobody following events
  observed  5 notifiers with `events = ["*"]` (three webhooks, one signed; an ntfy topic; a ping
            check) delivering to real HTTP receivers in this process, the HTTP metrics listener
            scraped every second, and one `events.subscribe` stream followed throughout
Backups alternate between the two daemons (plain, observed, plain, ...), so drift on the machine
falls on both columns alike; the `status` round trip is timed on each daemon while its backup runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from backupd_client import Client

from backupd.core.vocab import FINAL_STATUSES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_control import percentile, text_db  # noqa: E402 - the control bench's helpers
from tests.servers import free_port  # noqa: E402
from tests.servers.receivers import HttpReceiver  # noqa: E402 - the tests' real HTTP receiver

BIN = Path(sys.executable).parent
MAX_OVERHEAD = 0.02
PARTS = ("notifiers", "scrape", "stream")
TARGET_P99_MS = 10.0


def notifiers(receiver: HttpReceiver, secret_file: Path) -> str:
    url = receiver.url
    return f"""
[[notifiers]]
name = "hook-signed"
kind = "webhook"
url = "{url}/hook/signed"
secret_file = "{secret_file}"
events = ["*"]

[[notifiers]]
name = "hook-a"
kind = "webhook"
url = "{url}/hook/a"
events = ["*"]

[[notifiers]]
name = "hook-b"
kind = "webhook"
url = "{url}/hook/b"
headers = {{ "X-Team" = "ops" }}
events = ["*"]

[[notifiers]]
name = "ntfy"
kind = "ntfy"
url = "{url}/ntfy/backups"
events = ["*"]

[[notifiers]]
name = "ping"
kind = "ping"
url = "{url}/ping/check-uuid"
events = ["*"]
"""


def write_install(root: Path, db: Path, level: int, extra: str) -> Path:
    shutil.copyfile(db, root / "app.db")
    key = root / "backup.key"
    key.write_bytes(os.urandom(32))
    os.chmod(key, 0o600)
    config = root / "backupd.toml"
    config.write_text(f"""
[state]
dir = "state"

[[sources]]
name = "app"
kind = "sqlite"
path = "app.db"

[[destinations]]
name = "local"
kind = "local"
path = "backups"
compression_level = {level}

[destinations.encryption]
key_file = "backup.key"

[control]
socket = "run/ctl.sock"

[daemon]
shutdown_timeout = "5s"
{extra}
""")
    return config


def start(root: Path, config: Path) -> subprocess.Popen:
    log = open(root / "daemon.jsonl", "wb")
    proc = subprocess.Popen([str(BIN / "backupd"), "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=root)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"bench: a daemon did not start; see {root / 'daemon.jsonl'}")
        try:
            with Client(root / "run" / "ctl.sock", timeout=1, retries=0) as c:
                c.status()
            return proc
        except Exception:
            time.sleep(0.1)


def timed_backup(c: Client) -> tuple[float, list[float]]:
    """One full backup's wall time (queued to finished, by the daemon's own clock: the bench's polling
    and its receiver, in this process, do not blur it), and the `status` round trips timed while it ran."""
    job_id = c.backup_create("app", strategy="full")["job_id"]
    ms: list[float] = []
    while True:
        t = time.perf_counter()
        job = c.job_get(job_id)
        c.status()
        ms.append((time.perf_counter() - t) * 1000.0 / 2)
        if job["status"] in FINAL_STATUSES:
            break
        time.sleep(0.005)
    if job["status"] != "completed":
        sys.exit(f"bench: a backup ended {job['status']}")
    wall = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    return wall.total_seconds(), ms


class Observer:
    """Scrapes the metrics listener every second and follows the event stream, until stopped."""

    def __init__(self, sock: Path, listen: str, parts: set[str]):
        self.sock, self.listen = sock, listen
        self.stop = threading.Event()
        self.scrapes = 0
        self.events = 0
        self.threads = [threading.Thread(target=target, daemon=True) for part, target in
                        (("scrape", self._scrape), ("stream", self._follow)) if part in parts]
        for t in self.threads:
            t.start()

    def _scrape(self) -> None:
        while not self.stop.wait(1.0):
            with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=5) as r:
                r.read()
            self.scrapes += 1

    def _follow(self) -> None:
        try:
            with Client(self.sock, timeout=10, retries=0) as c:
                for _ in c.events(follow=True, timeout_s=None):
                    self.events += 1
                    if self.stop.is_set():
                        return
        except Exception:  # the daemon stopping ends the stream; only an early end is worth a word
            if not self.stop.is_set():
                raise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8, help="backups per daemon (default 8)")
    ap.add_argument("--size-mib", type=int, default=64, help="size of the source database (default 64)")
    ap.add_argument("--level", type=int, default=3, help="zstd level of the destination (default 3)")
    ap.add_argument("--json-out", type=Path, help="write the figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp installations")
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="observe with only this part (repeatable; to see what each costs); default: all")
    args = ap.parse_args()
    parts = set(args.only or PARTS)
    expected = args.runs * 2 * 5 if "notifiers" in parts else 0

    root = Path(tempfile.mkdtemp(prefix="bkd-obs-", dir="/tmp"))
    procs: list[subprocess.Popen] = []
    receiver = HttpReceiver().start()
    try:
        db = text_db(root / "template.db", args.size_mib)
        secret = root / "webhook.secret"
        secret.write_text("whsec_" + base64.b64encode(os.urandom(24)).decode() + "\n")
        os.chmod(secret, 0o600)
        listen = f"127.0.0.1:{free_port()}"
        plain_root, obs_root = root / "plain", root / "observed"
        plain_root.mkdir()
        obs_root.mkdir()
        obs_extra = (notifiers(receiver, secret) if "notifiers" in parts else "") + f'\n[monitoring]\nlisten = "{listen}"\n'
        procs.append(start(plain_root, write_install(plain_root, db, args.level, "")))
        procs.append(start(obs_root, write_install(obs_root, db, args.level, obs_extra)))
        observer = Observer(obs_root / "run" / "ctl.sock", listen, parts)
        walls: dict[str, list[float]] = {"plain": [], "observed": []}
        status_ms: dict[str, list[float]] = {"plain": [], "observed": []}
        load_before = os.getloadavg()
        with Client(plain_root / "run" / "ctl.sock", timeout=10, retries=0) as plain, \
                Client(obs_root / "run" / "ctl.sock", timeout=10, retries=0) as observed:
            timed_backup(plain)  # warm-up: page cache, first chain
            timed_backup(observed)
            settle = time.monotonic() + 30  # the warm-up's notifications arrive before the count starts
            while len(receiver.requests) < expected // args.runs and time.monotonic() < settle:
                time.sleep(0.05)
            sent_before = len(receiver.requests)
            for i in range(args.runs):
                order = [("plain", plain), ("observed", observed)]
                for name, c in order if i % 2 == 0 else order[::-1]:
                    wall, ms = timed_backup(c)
                    walls[name].append(wall)
                    status_ms[name] += ms
        deadline = time.monotonic() + 30  # each backup is 2 events (started, succeeded) x 5 notifiers
        while len(receiver.requests) - sent_before < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        delivered = len(receiver.requests) - sent_before
        observer.stop.set()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
    finally:
        receiver.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    plain_wall, obs_wall = statistics.median(walls["plain"]), statistics.median(walls["observed"])
    overhead = obs_wall / plain_wall - 1
    p99 = {k: percentile(sorted(v), 99) for k, v in status_ms.items()}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("observability overhead: plain daemon vs " + " + ".join(
        {"notifiers": "5 notifiers (events *)", "scrape": "metrics scraped 1/s", "stream": "1 event stream"}[p]
        for p in PARTS if p in parts))
    print(f"{now}; {platform.node()}; {os.cpu_count()} CPUs; Python {platform.python_version()}; source {args.size_mib}"
          f" MiB, zstd level {args.level}; {args.runs} full backups each, alternating; load before {load_before[0]:.2f}")
    print()
    print(f"{'daemon':<10} {'backup median s':>15} {'min s':>7} {'max s':>7} {'status p50 ms':>13} {'status p99 ms':>13}")
    for name in ("plain", "observed"):
        w, s = walls[name], sorted(status_ms[name])
        print(f"{name:<10} {statistics.median(w):>15.3f} {min(w):>7.3f} {max(w):>7.3f} {percentile(s, 50):>13.3f}"
              f" {p99[name]:>13.3f}")
    print()
    print(f"observed/plain backup wall: {obs_wall / plain_wall:.4f} ({overhead * 100:+.2f}%); notifications delivered"
          f" {delivered}/{expected}; metrics scrapes {observer.scrapes}; streamed events {observer.events}")
    met = overhead < MAX_OVERHEAD and p99["observed"] < TARGET_P99_MS and delivered == expected
    print(f"target: overhead under {MAX_OVERHEAD * 100:g}%, observed status p99 under {TARGET_P99_MS:g} ms, every"
          f" notification delivered -> {'met' if met else 'MISSED'}")
    if any(codes):
        print(f"WARNING: daemon exit codes {codes}", file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps({"date": now, "walls": walls, "status_p99_ms": p99, "overhead": overhead,
                                             "delivered": delivered, "scrapes": observer.scrapes,
                                             "events": observer.events}, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
