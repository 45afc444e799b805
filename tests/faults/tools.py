"""What the fault trials share: an installation on disk, killing a real `backupd` process at a random
instant, and the invariants every trial checks afterwards (nothing partial is visible, the catalog and
the destinations agree, every listed restore point restores to exactly the bytes it was taken from)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.engine.dbtools import BACKUPD, KEY_BYTES, SOURCE, TEMP_SUFFIX, cli, create_db, file_digest, fill_text


@dataclass
class Installation:
    """A config with one rollback-journal source and local destinations under `root`; `expected` maps every
    backup id that ever became visible to the digest of the source file it was taken from."""

    root: Path
    destinations: tuple[str, ...]
    dirs: dict[str, Path]  # where each destination's files are on this machine
    expected: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "backupd.toml"

    @property
    def db(self) -> Path:
        return self.root / "src.db"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def dest_dir(self, name: str) -> Path:
        return self.dirs[name]

    def run(self, *args: str | Path, timeout: float = 180, config: Path | None = None):
        return cli(*args[:1], "-c", config or self.config, *args[1:], timeout=timeout)

    def argv(self, *args: str | Path, config: Path | None = None) -> list[str]:
        return [str(BACKUPD), str(args[0]), "-c", str(config or self.config), *map(str, args[1:])]

    def variant(self, name: str, extra_toml: str) -> Path:
        """A second config file next to the first (same state and destinations) with `extra_toml` appended."""
        path = self.root / name
        path.write_text(self.config.read_text() + "\n" + extra_toml + "\n")
        return path


def install(root: Path, *, destinations: tuple[str, ...] = ("local",), mib: float = 8, retention: str = "",
            encrypted: bool = True, remote: dict[str, tuple[str, Path]] | None = None) -> Installation:
    """Write the key, the config and a ~`mib` MiB rollback-journal source database. `destinations` are local
    directories under `root/dest`; `remote` adds others: name -> (their TOML keys, their files on this machine)."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "backup.key"
    key.write_bytes(KEY_BYTES)
    os.chmod(key, 0o600)
    remote = remote or {}
    dirs = {name: root / "dest" / name for name in destinations} | {n: d for n, (_, d) in remote.items()}
    inst = Installation(root, (*destinations, *remote), dirs)
    lines = ['[state]', 'dir = "state"', '', '[[sources]]', f'name = "{SOURCE}"', 'kind = "sqlite"', 'path = "src.db"']
    keys = {name: f'kind = "local"\npath = "dest/{name}"' for name in destinations} | {n: t for n, (t, _) in remote.items()}
    for i, (name, toml) in enumerate(keys.items()):
        lines += ['', '[[destinations]]', f'name = "{name}"', toml, f'priority = {i + 1}']
        if encrypted:
            lines += ['[destinations.encryption]', 'key_file = "backup.key"']
    inst.config.write_text("\n".join(lines) + "\n\n" + retention + "\n")
    conn = create_db(inst.db, page_size=4096, journal_mode="delete")
    fill_text(conn, "docs", mib, seed=11)
    conn.close()
    return inst


def change_source(inst: Installation, rnd: random.Random) -> None:
    """Rewrite a random ~2% of the rows, so each backup holds something new."""
    conn = sqlite3.connect(inst.db)
    try:
        (count,) = conn.execute("SELECT count(*) FROM docs").fetchone()
        ids = rnd.sample(range(1, count + 1), max(1, count // 50))
        conn.executemany("UPDATE docs SET body = ? WHERE rowid = ?", [(rnd.randbytes(1500).hex(), i) for i in ids])
        conn.commit()
    finally:
        conn.close()


def backup(inst: Installation, strategy: str = "incremental") -> str:
    """A backup that must succeed; recorded in `expected`."""
    r = inst.run("backup", "--source", SOURCE, "--strategy", strategy, "--json")
    assert r.code == 0, r.stderr
    backup_id = r.json()["id"]
    inst.expected[backup_id] = file_digest(inst.db)
    return backup_id


def run_killed(argv: list[str], delay: float) -> int:
    """Start `argv` and SIGKILL it `delay` seconds later (if it still runs); its exit code."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    return proc.returncode


def timed(argv: list[str]) -> float:
    """How long `argv` takes to run to completion (it must succeed)."""
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return time.monotonic() - start


def files(directory: Path) -> dict[str, int]:
    """Every file under `directory`, relative path -> size."""
    out = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            p = Path(dirpath) / name
            out[p.relative_to(directory).as_posix()] = p.stat().st_size
    return out


def committed(inst: Installation, destination: str) -> set[str]:
    """Backup ids with a sidecar on `destination`."""
    d = inst.dest_dir(destination) / SOURCE
    return {p.name[: -len(".manifest")] for p in d.iterdir() if p.name.endswith(".manifest")} if d.exists() else set()


def leftovers(inst: Installation) -> list[str]:
    """Temp files and artifacts without a sidecar, on every destination."""
    out = []
    for name in inst.destinations:
        found = files(inst.dest_dir(name))
        out += [f"{name}/{f}" for f in found if f.endswith(TEMP_SUFFIX)]
        out += [f"{name}/{f}" for f in found if f.endswith(".bkpd") and f[:-5] + ".manifest" not in found]
    return sorted(out)


def listed(inst: Installation) -> list[dict]:
    r = inst.run("list", "--source", SOURCE, "--json")
    assert r.code == 0, f"list fails after the kill: {r.stderr}"
    return r.json()


def restores_exactly(inst: Installation, backup_id: str) -> None:
    """Restoring `backup_id` gives the very bytes of the source it was taken from."""
    out = inst.root / "restored.db"
    out.unlink(missing_ok=True)
    r = inst.run("restore", "--source", SOURCE, "--backup", backup_id, "--to", out, "--json")
    assert r.code == 0, f"listed restore point {backup_id} does not restore: {r.stderr.strip()}"
    assert backup_id in inst.expected, f"{backup_id} appeared from nowhere"
    assert file_digest(out) == inst.expected[backup_id], f"{backup_id} restores to other bytes"
    out.unlink()


def check_agreement(inst: Installation, rnd: random.Random, before: set[str]) -> list[dict]:
    """After a kill: the catalog opens and passes integrity_check, every copy it lists exists complete on its
    destination, and the new restore points plus one older one restore exactly. Returns the listing."""
    conn = sqlite3.connect(inst.state / "catalog.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], "the catalog is damaged"
    finally:
        conn.close()
    points = listed(inst)
    for point in points:
        for dest in point["destinations"]:
            assert point["id"] in committed(inst, dest), f"{point['id']} is listed on {dest}, which lacks its sidecar"
            artifact = inst.dest_dir(dest) / SOURCE / f"{point['id']}.bkpd"
            assert artifact.exists(), f"{point['id']} is listed on {dest}, which lacks its artifact"
    ids = [p["id"] for p in points]
    new = [i for i in ids if i not in before]
    for backup_id in new:
        restores_exactly(inst, backup_id)
    old = [i for i in ids if i in before]
    if old:
        restores_exactly(inst, rnd.choice(old))
    return points
