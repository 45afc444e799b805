"""Hostile path names: restore targets under directories named with any byte but `/` and NUL (`#`, `?`, `%`,
quotes, newlines, bytes that are not UTF-8), names longer than NAME_MAX and paths longer than PATH_MAX, and
sources whose directory names are SQLite URI syntax.

Every trial: a legal path restores exactly and creates nothing outside its directory; an impossible one gets
one clear error (never a traceback or an `internal error`) and creates nothing at all.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

from tests.engine.dbtools import BACKUPD, SOURCE, file_digest

from .conftest import trials
from .tools import backup, change_source, install

URI_BYTES = b"#?%&=;:@+ '\"\\\n\t*[]{}"


def hostile_name(rnd: random.Random, *, text: bool) -> bytes:
    """1..40 bytes, none `/` or NUL, rich in what URIs and shells treat specially; valid UTF-8 if `text`."""
    pool = URI_BYTES + bytes(range(1, 128)).replace(b"/", b"")
    out = bytearray()
    for _ in range(rnd.randint(1, 40)):
        if not text and rnd.random() < 0.15:
            out.append(rnd.randint(128, 255))
        else:
            out.append(rnd.choice(pool))
    name = bytes(out)
    return name if name not in (b".", b"..") else b"%25" + name


def tree(base: bytes) -> set[bytes]:
    return {os.path.join(d, n) for d, dirs, names in os.walk(base) for n in dirs + names}


def restore_to(inst, backup_id: str, target: bytes) -> subprocess.CompletedProcess:
    argv = [os.fsencode(BACKUPD), b"restore", b"-c", os.fsencode(inst.config), b"--source", SOURCE.encode(),
            b"--backup", backup_id.encode(), b"--to", target, b"--json"]
    return subprocess.run(argv, capture_output=True, timeout=120)


def clean_error(r: subprocess.CompletedProcess) -> None:
    err = r.stderr.decode(errors="replace")
    assert r.returncode in (1, 2), f"exit {r.returncode}: {err.strip()[-300:]}"  # 2: bad usage, as a too-long --to
    assert "Traceback" not in err and "internal error" not in err, err.strip()[-300:]


def test_restore_targets_with_hostile_names(tmp_path, tally):
    rnd = random.Random(9)
    inst = install(tmp_path / "i", mib=1)
    backup_id = backup(inst, "full")
    base = os.fsencode(tmp_path / "targets")
    for n in range(trials(ci=60, long=400)):
        shutil.rmtree(base, ignore_errors=True)
        os.mkdir(base)
        try:
            if n % 10 == 9:  # impossible: one name over NAME_MAX, or a path over PATH_MAX
                long_name = n % 20 == 9
                target = os.path.join(base, b"x" * 256, b"r.db") if long_name else \
                    os.path.join(base, *[b"d" * 200] * 21, b"r.db")
                if not long_name:
                    os.makedirs(os.path.dirname(target)[: 4000].rsplit(b"/", 1)[0], exist_ok=True)
                before = tree(base)
                r = restore_to(inst, backup_id, target)
                clean_error(r)
                assert tree(base) == before, "a refused restore created files"
                tally.trial("too long: refused cleanly")
                continue
            directory = os.path.join(base, hostile_name(rnd, text=False))
            os.mkdir(directory)
            target = os.path.join(directory, hostile_name(rnd, text=False))
            r = restore_to(inst, backup_id, target)
            assert r.returncode == 0, f"{target!r}: {r.stderr.decode(errors='replace').strip()[-300:]}"
            assert file_digest(Path(os.fsdecode(target))) == inst.expected[backup_id], "other bytes restored"
            assert tree(base) == {directory, target}, f"stray files: {sorted(tree(base) - {directory, target})}"
            tally.trial("restored exactly")
        except AssertionError as e:
            tally.fail(str(e).splitlines()[0])


def test_sources_under_hostile_directories(tmp_path, tally):
    rnd = random.Random(10)
    for n in range(trials(ci=6, long=40)):
        root = tmp_path / f"t{n}"
        try:
            inst = install(root / "i", mib=0.5)
            name = hostile_name(rnd, text=True).decode()
            home = root / "i" / name
            home.mkdir()
            shutil.move(inst.db, home / "src.db")
            text = inst.config.read_text().replace('path = "src.db"', f"path = {json.dumps(str(home / 'src.db'))}")
            inst.config.write_text(text)
            inst.db.symlink_to(home / "src.db")  # the helpers read the source through `inst.db`
            backup_id = backup(inst, "full")
            change_source(inst, rnd)
            later = backup(inst, "incremental")
            for chosen in (backup_id, later):
                out = root / "restored.db"
                r = inst.run("restore", "--source", SOURCE, "--backup", chosen, "--to", out, "--json")
                assert r.code == 0, f"{name!r}: {r.stderr.strip()[-300:]}"
                assert file_digest(out) == inst.expected[chosen], f"{name!r}: other bytes restored"
                out.unlink()
            strays = sorted(p.name for p in home.iterdir() if p.name != "src.db")
            assert not strays, f"{name!r}: stray files beside the source: {strays}"
            tally.trial("backed up and restored exactly")
        except AssertionError as e:
            tally.fail(str(e).splitlines()[0])
        finally:
            shutil.rmtree(root, ignore_errors=True)
