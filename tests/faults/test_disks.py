"""A local destination on a small tmpfs: the disk fills mid-artifact or mid-sidecar, or is remounted read-only
at a random instant of a backup.

After every fault: the backup fails with a clear error naming the destination and the cause (never a
traceback or an `internal error`); a full disk is cleaned at once (no temp file, no artifact without its
sidecar); the catalog agrees with the disk; every listed point restores exactly; once the disk has room
or is writable again, the next backup succeeds and leaves nothing behind.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.engine.dbtools import SOURCE, CliResult, file_digest

from .conftest import trials
from .tools import Installation, backup, check_agreement, committed, install, leftovers

PAGE = 4096


@contextmanager
def tmpfs(mountpoint: Path, size: int) -> Iterator[Path]:
    assert os.geteuid() == 0, "the disk faults mount a tmpfs: run the suite as root (CI does)"
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "backupd-faults", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


class Ext4:
    """An ext4 file system in a file, loop-mounted with errors=remount-ro: `fail()` raises a file-system error
    through the kernel's trigger, which turns it read-only at once, as a failing disk does; `repair()`
    unmounts, checks and mounts it writable again."""

    def __init__(self, image: Path, mountpoint: Path, size: int):
        assert os.geteuid() == 0, "the disk faults loop-mount a file system: run the suite as root (CI does)"
        self.image, self.mountpoint = image, mountpoint
        with open(image, "wb") as f:
            f.truncate(size)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mount()

    def mount(self) -> None:
        subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mountpoint)], check=True)
        device = subprocess.run(["findmnt", "-no", "SOURCE", str(self.mountpoint)], check=True, capture_output=True,
                                text=True).stdout.strip()
        self.trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"

    def fail(self) -> None:
        self.trigger.write_text("backupd fault injection\n")

    def repair(self) -> None:
        subprocess.run(["umount", str(self.mountpoint)], check=True)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True)
        self.mount()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mountpoint)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def sizes(inst: Installation, backup_id: str) -> tuple[int, int]:
    d = inst.dest_dir("local") / SOURCE
    return (d / f"{backup_id}.bkpd").stat().st_size, (d / f"{backup_id}.manifest").stat().st_size


def fails_cleanly(r, *causes: str) -> None:
    assert r.code == 1, f"exit {r.code}: {r.stdout.strip()[-200:]} {r.stderr.strip()[-200:]}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr.lower(), r.stderr.strip()[-300:]
    assert "local" in r.stderr and any(c in r.stderr.lower() for c in causes), \
        f"the error names neither the destination nor the cause ({' or '.join(causes)}): {r.stderr.strip()[-300:]}"


def test_disk_fills_mid_artifact_and_mid_sidecar(tmp_path, tally):
    rnd = random.Random(6)
    with tmpfs(tmp_path / "i" / "dest" / "local", 64 << 20) as disk:
        inst = install(tmp_path / "i", mib=6)
        first = backup(inst, "full")
        artifact, sidecar = sizes(inst, first)
        ballast = disk / "ballast"
        for n in range(trials(ci=8, long=30)):
            # room for part of the artifact, or for all of it and part of (or none of) its sidecar
            pages = -(-artifact // PAGE)
            room = rnd.randrange(0, pages) * PAGE if n % 2 else (pages + rnd.randrange(0, -(-sidecar // PAGE))) * PAGE
            where = "mid-artifact" if n % 2 else "mid-sidecar"

            def one():
                before = committed(inst, "local")
                with open(ballast, "wb") as f:
                    f.truncate(0)
                    f.write(b"\0" * max(0, free_bytes(disk) - room))
                r = inst.run("backup", "--source", SOURCE, "--strategy", "full", "--json")
                if r.code == 0:  # compression or page rounding left just enough room
                    inst.expected[r.json()["id"]] = file_digest(inst.db)
                    return f"{where}: fit"
                fails_cleanly(r, "space")
                assert committed(inst, "local") == before, "a failed backup published a sidecar"
                assert leftovers(inst) == [], f"a full disk kept {leftovers(inst)} after the failed backup"
                ballast.unlink()
                check_agreement(inst, rnd, before)
                backup(inst, rnd.choice(("incremental", "differential")))
                assert leftovers(inst) == [], f"the next backup left {leftovers(inst)}"
                return f"{where}: failed cleanly"

            try:
                tally.run(one)
            finally:
                ballast.unlink(missing_ok=True)
    assert any("failed cleanly" in k for k in tally.outcomes) or tally.failures, "no trial filled the disk"


def test_disk_turns_read_only_mid_backup(tmp_path, tally):
    rnd = random.Random(7)
    disk = Ext4(tmp_path / "ext4.img", tmp_path / "i" / "dest" / "local", 128 << 20)
    try:
        inst = install(tmp_path / "i", mib=8)
        start = time.monotonic()
        backup(inst, "full")
        took = time.monotonic() - start
        for _ in range(trials(ci=6, long=30)):
            strategy = rnd.choice(("full", "incremental", "differential"))

            def one():
                before = committed(inst, "local")
                digest = file_digest(inst.db)
                proc = subprocess.Popen(inst.argv("backup", "--source", SOURCE, "--strategy", strategy),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                time.sleep(rnd.uniform(0.1, took))
                disk.fail()
                try:
                    out, err = proc.communicate(timeout=120)
                finally:
                    disk.repair()
                appeared = committed(inst, "local") - before
                if proc.returncode == 0:
                    inst.expected.update(dict.fromkeys(appeared, digest))
                    seen = "finished first"
                else:  # a failing disk reports EROFS, or EIO for writes in flight when it turned read-only
                    fails_cleanly(CliResult(proc.returncode, out, err), "read-only", "input/output error")
                    # a sidecar written before the error hit its fsync is complete once the disk is back:
                    # the next run imports it, and it must restore exactly like any other
                    inst.expected.update(dict.fromkeys(appeared, digest))
                    seen = "failed cleanly" + (", its complete copy imported later" if appeared else "")
                check_agreement(inst, rnd, before)
                backup(inst, "incremental")
                assert leftovers(inst) == [], f"the next backup left {leftovers(inst)}"
                return f"{strategy}: {seen}"

            tally.run(one)
    finally:
        disk.close()
    assert any("failed cleanly" in k for k in tally.outcomes) or tally.failures, "no trial hit the read-only disk"
