"""Shared fixtures for engine tests.

validation_* (used by test_validate.py and test_corruption.py): a real SQLite source, a backupd.toml
with relative paths, real backups on a local destination (plain or encrypted with a key file), and
the `backupd` CLI run as a subprocess. A chain (full + 2 incrementals) is built once per session per
kind and cloned per test, since most tests corrupt it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from backupd.config import load_config
from backupd.engine.backup import run_backup
from backupd.engine.context import EngineContext, open_context
from backupd.engine.crypto import keygen

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATION_SOURCE = "kb"
VALIDATION_ROWS = 2500  # ~2.5 MiB of random blobs: a full backup spans 3 page blocks + the manifest block


def validation_make_db(path: Path, rows: int = VALIDATION_ROWS, seed: int = 7) -> None:
    """A WAL database: kb_entries (random, incompressible blobs) and kb_links referencing them."""
    rnd = random.Random(seed)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE kb_entries (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        conn.execute("CREATE TABLE kb_links (id INTEGER PRIMARY KEY, "
                     "entry_id INTEGER NOT NULL REFERENCES kb_entries (id))")
        conn.execute("CREATE INDEX kb_links_entry ON kb_links (entry_id)")
        conn.executemany("INSERT INTO kb_entries (body) VALUES (?)", ((rnd.randbytes(1000),) for _ in range(rows)))
        conn.executemany("INSERT INTO kb_links (entry_id) VALUES (?)", ((i,) for i in range(1, rows + 1, 10)))
        conn.commit()
    finally:
        conn.close()


@dataclass
class ValidationEnv:
    """One directory holding a source database, a config, a key, the state dir and a destination."""

    root: Path
    encrypted: bool = False
    chain: list[str] = field(default_factory=list)  # backup ids, full first

    @property
    def db(self) -> Path:
        return self.root / "kb.db"

    @property
    def config_path(self) -> Path:
        return self.root / "backupd.toml"

    @property
    def dest_dir(self) -> Path:
        return self.root / "backups"

    @property
    def restore_dir(self) -> Path:
        return self.root / "restored"

    # -- setup ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, *, encrypted: bool = False, rows: int = VALIDATION_ROWS) -> "ValidationEnv":
        root.mkdir(parents=True, exist_ok=True)
        env = cls(root, encrypted)
        validation_make_db(env.db, rows)
        env.restore_dir.mkdir()
        if encrypted:
            keygen(root / "k.key")
        env.write_config()
        return env

    def write_config(self, *, key_file: str | None = None, rules: list[dict[str, Any]] = (),
                     default_level: str = "standard") -> None:
        """(Re)write backupd.toml; `key_file` overrides the key of an encrypted destination."""
        lines = [
            '[state]', 'dir = "state"',
            '[[sources]]', f'name = "{VALIDATION_SOURCE}"', 'kind = "sqlite"', 'path = "kb.db"',
            '[[sources]]', 'name = "crm"', 'kind = "sqlite"', 'path = "crm.db"',
            '[[destinations]]', 'name = "local"', 'kind = "local"', 'path = "backups"',
        ]
        if self.encrypted or key_file:
            lines += ['[destinations.encryption]', f'key_file = {json.dumps(key_file or "k.key")}']
        lines += ['[validation]', f'default_level = "{default_level}"']
        for rule in rules:
            lines.append('[[validation.rules]]')
            lines += [f'{k} = {json.dumps(v)}' for k, v in rule.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def clone(self, root: Path) -> "ValidationEnv":
        shutil.copytree(self.root, root, symlinks=True)
        return replace(self, root=root, chain=list(self.chain))

    @contextmanager
    def context(self) -> Iterator[EngineContext]:
        ctx = open_context(load_config(self.config_path))
        try:
            yield ctx
        finally:
            ctx.close()

    def backup(self, strategy: str) -> str:
        with self.context() as ctx:
            backup_id = run_backup(ctx, VALIDATION_SOURCE, strategy).backup_id
        self.chain.append(backup_id)
        return backup_id

    def change_rows(self, every: int, value: bytes) -> None:
        conn = sqlite3.connect(self.db)
        try:
            conn.execute("UPDATE kb_entries SET body = ? WHERE id % ? = 0", (value, every))
            conn.commit()
        finally:
            conn.close()

    def make_chain(self) -> list[str]:
        """full, then two incrementals with a few changed rows each."""
        self.backup("full")
        self.change_rows(100, b"first change")
        self.backup("incremental")
        self.change_rows(70, b"second change")
        self.backup("incremental")
        return self.chain

    # -- the destination's files ------------------------------------------------------------------
    def artifact(self, backup_id: str) -> Path:
        return self.dest_dir / VALIDATION_SOURCE / f"{backup_id}.bkpd"

    def sidecar(self, backup_id: str) -> Path:
        return self.dest_dir / VALIDATION_SOURCE / f"{backup_id}.manifest"

    def flip(self, path: Path, offset: int, mask: int = 0x01) -> None:
        data = bytearray(path.read_bytes())
        data[offset] ^= mask
        path.write_bytes(bytes(data))

    def block_spans(self, path: Path) -> list[tuple[int, int]]:
        """(start, end) byte offsets of each block's body, parsed from the framing (docs/FORMAT.md)."""
        data = path.read_bytes()
        _, _, header_len, _ = struct.unpack(">8sHIH", data[:16])
        pos, spans = 16 + header_len + 32, []
        while pos < len(data) - 56:
            (n,) = struct.unpack(">I", data[pos : pos + 4])
            spans.append((pos + 4, pos + 4 + n))
            pos += 4 + n
        return spans

    def forget_catalog(self) -> None:
        """A new machine: the state dir is gone, only the destination and the key remain."""
        shutil.rmtree(self.root / "state")

    # -- running backupd ----------------------------------------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        return subprocess.run([sys.executable, "-m", "backupd.cli.main", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=120)

    def verify_json(self, backup_id: str, *extra: str) -> tuple[int, dict[str, Any]]:
        proc = self.cli("verify", "-c", str(self.config_path), "--backup", backup_id, "--json", *extra)
        assert proc.stdout.strip(), f"no report on stdout (exit {proc.returncode}): {proc.stderr}"
        return proc.returncode, json.loads(proc.stdout)

    def restore_leftovers(self) -> list[str]:
        return sorted(p.name for p in self.restore_dir.iterdir() if ".backupd-restore-tmp" in p.name)


@pytest.fixture(scope="session")
def validation_template(tmp_path_factory: pytest.TempPathFactory):
    """`validation_template(encrypted)`: the session's pristine chain env of that kind (do not modify)."""
    built: dict[bool, ValidationEnv] = {}

    def get(encrypted: bool = False) -> ValidationEnv:
        if encrypted not in built:
            root = tmp_path_factory.mktemp("validation-encrypted" if encrypted else "validation-plain")
            env = ValidationEnv.create(root / "env", encrypted=encrypted)
            env.make_chain()
            built[encrypted] = env
        return built[encrypted]

    return get


@pytest.fixture
def validation_chain(validation_template, tmp_path: Path):
    """`validation_chain(encrypted=False)`: a private copy of a full + 2 incrementals chain."""
    made = 0

    def make(encrypted: bool = False) -> ValidationEnv:
        nonlocal made
        made += 1
        return validation_template(encrypted).clone(tmp_path / f"chain{made}")

    return make


@pytest.fixture
def validation_env(tmp_path: Path):
    """`validation_env(encrypted=False, rows=...)`: a fresh env with a source database and no backups."""

    def make(encrypted: bool = False, rows: int = VALIDATION_ROWS) -> ValidationEnv:
        return ValidationEnv.create(tmp_path / "fresh", encrypted=encrypted, rows=rows)

    return make
