"""The copy store (engine/copystore.py) on a real local destination: a copy is published artifact first,
sidecar last; a crash between the two leaves an orphaned artifact that no listing shows and the next
reconcile removes; a failed sidecar removes the artifact at once; reading verifies every block, so a
flipped byte is refused naming its block; a chain is read from the catalog, full first."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from backupd.core.ids import artifact_key, new_backup_id, sidecar_key
from backupd.core.manifest import Manifest
from backupd.engine.backup import run_backup
from backupd.engine.copystore import CopyWriter, chain_of, read_pages
from backupd.engine.inventory import reconcile, scan
from backupd.errors import CorruptArtifact, MissingChainMember

from .dbtools import SOURCE, create_db, engine, fill_text, make_env

PAGE_SIZE = 4096
PAGES = 600  # ~2.4 MiB: three page blocks of random bytes, so a flipped byte lands inside one


def manifest_for(backup_id: str) -> Manifest:
    return Manifest(backup_id=backup_id, source=SOURCE, strategy="full", parent_id=None, base_id=None,
                    created_at=datetime.now(timezone.utc).isoformat(), page_size=PAGE_SIZE, page_count=PAGES,
                    changed_pages=PAGES, journal_mode="wal", schema_hash="0" * 64, tables={})


def page_data(seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(PAGE_SIZE * PAGES)


def publish(ctx, manifest: Manifest, data: bytes):
    target = ctx.targets["local"]
    w = CopyWriter(target, manifest.source, manifest.backup_id, manifest.page_size, ctx.executor)
    per_block = 256
    for first in range(1, manifest.page_count + 1, per_block):
        last = min(first + per_block, manifest.page_count + 1)
        w.add_pages(range(first, last), data[(first - 1) * PAGE_SIZE : (last - 1) * PAGE_SIZE])
    return w.publish(manifest)


def read_back(target, copy, manifest: Manifest) -> bytes:
    out = bytearray(PAGE_SIZE * manifest.page_count)
    for numbers, pages in read_pages(target, copy, manifest):
        for i, pgno in enumerate(numbers):
            out[(pgno - 1) * PAGE_SIZE : pgno * PAGE_SIZE] = pages[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]
    return bytes(out)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_published_copy_is_listed_and_reads_back(tmp_path, encrypted):
    env = make_env(tmp_path, encrypted=encrypted)
    m, data = manifest_for(new_backup_id(datetime.now(timezone.utc), "aa0001")), page_data()
    with engine(env) as ctx:
        copy = publish(ctx, m, data)
        target = ctx.targets["local"]
        assert (env.dest / artifact_key(SOURCE, m.backup_id)).is_file()
        assert (env.dest / sidecar_key(SOURCE, m.backup_id)).is_file()
        found = scan(target, SOURCE)
        assert list(found.sidecars) == [m.backup_id] and found.orphans == [] and found.problems == []
        sidecar, size = found.sidecars[m.backup_id]
        assert sidecar.manifest == m and size == copy.sidecar_size
        assert (sidecar.artifact_size, sidecar.artifact_digest) == (copy.artifact_size, copy.artifact_digest)
        assert copy.encrypted is encrypted
        assert read_back(target, copy, m) == data


CRASH_AT_SIDECAR = """
import json, os, signal, sys
from backupd.config import load_config
from backupd.core.manifest import Manifest
from backupd.engine.context import open_context
from backupd.engine.copystore import CopyWriter

def die_at_sidecar(event, args):  # the instant the sidecar's temp file is opened
    if event == "open" and isinstance(args[0], (str, os.PathLike)) and ".manifest." in os.fspath(args[0]):
        os.kill(os.getpid(), signal.SIGKILL)

ctx = open_context(load_config(sys.argv[1]))
m = Manifest.from_dict(json.loads(sys.argv[2]))
w = CopyWriter(ctx.targets["local"], m.source, m.backup_id, m.page_size, ctx.executor)
w.add_pages(range(1, m.page_count + 1), bytes(m.page_size * m.page_count))
sys.addaudithook(die_at_sidecar)
w.publish(m)
print("published")
"""


def test_a_crash_between_artifact_and_sidecar_leaves_an_orphan_the_next_reconcile_removes(tmp_path):
    env = make_env(tmp_path)
    m = manifest_for(new_backup_id(datetime.now(timezone.utc), "aa0002"))
    proc = subprocess.run([sys.executable, "-c", CRASH_AT_SIDECAR, str(env.config), m.to_json().decode()],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -9 and "published" not in proc.stdout, proc.stderr
    artifact = env.dest / artifact_key(SOURCE, m.backup_id)
    assert artifact.is_file()  # committed: the artifact comes first
    assert not (env.dest / sidecar_key(SOURCE, m.backup_id)).exists()
    with engine(env) as ctx:
        found = scan(ctx.targets["local"], SOURCE)
        assert found.sidecars == {} and found.orphans == [artifact_key(SOURCE, m.backup_id)]
        with ctx.source_lock(SOURCE):
            reconcile(ctx, SOURCE)
        assert ctx.catalog.get(m.backup_id) is None
    assert not artifact.exists()
    assert [p.name for p in env.dest.rglob("*") if p.is_file()] == []  # its sidecar's temp file went too


def test_a_sidecar_that_cannot_be_written_removes_the_artifact(tmp_path):
    env = make_env(tmp_path)
    m = manifest_for(new_backup_id(datetime.now(timezone.utc), "aa0003"))
    (env.dest / sidecar_key(SOURCE, m.backup_id)).mkdir(parents=True)  # the sidecar's rename fails for real
    with engine(env) as ctx:
        target = ctx.targets["local"]
        w = CopyWriter(target, m.source, m.backup_id, m.page_size, ctx.executor)
        w.add_pages(range(1, PAGES + 1), page_data())
        with pytest.raises(Exception) as raised:
            w.publish(m)
        assert (env.dest / artifact_key(SOURCE, m.backup_id)).is_file()  # committed before the sidecar failed
        assert w.discard() == [sidecar_key(SOURCE, m.backup_id), artifact_key(SOURCE, m.backup_id)]
    assert "writing" in str(raised.value)
    assert not (env.dest / artifact_key(SOURCE, m.backup_id)).exists()
    assert [p for p in env.dest.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_reading_refuses_a_flipped_byte_naming_its_block(tmp_path, encrypted):
    env = make_env(tmp_path, encrypted=encrypted)
    m, data = manifest_for(new_backup_id(datetime.now(timezone.utc), "aa0004")), page_data(2)
    with engine(env) as ctx:
        target = ctx.targets["local"]
        copy = publish(ctx, m, data)
        path = env.dest / copy.artifact_key
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01  # inside the second of three page blocks
        path.write_bytes(bytes(raw))
        with pytest.raises(CorruptArtifact) as raised:
            read_back(target, copy, m)
    assert raised.value.details.get("block") == 1, raised.value
    assert f"backup {m.backup_id} ({copy.artifact_key} on local)" in raised.value.message


def test_reading_refuses_an_artifact_of_another_backup(tmp_path):
    env = make_env(tmp_path, encrypted=False)
    now = datetime.now(timezone.utc)
    a, b = manifest_for(new_backup_id(now, "aa0005")), manifest_for(new_backup_id(now, "aa0006"))
    with engine(env) as ctx:
        target = ctx.targets["local"]
        copy_a, copy_b = publish(ctx, a, page_data()), publish(ctx, b, page_data())
        os.replace(env.dest / copy_a.artifact_key, env.dest / copy_b.artifact_key)
        with pytest.raises(CorruptArtifact, match="header describes another backup"):
            read_back(target, copy_b, b)


def test_a_chain_is_read_full_first_and_an_unknown_backup_is_a_missing_member(tmp_path):
    env = make_env(tmp_path)
    conn = create_db(env.db)
    fill_text(conn, "docs", 0.5, seed=1)
    with engine(env) as ctx:
        full = run_backup(ctx, SOURCE, "full").backup_id
        fill_text(conn, "more", 0.1, seed=2)
        incr = run_backup(ctx, SOURCE, "incremental").backup_id
        fill_text(conn, "again", 0.1, seed=3)
        diff = run_backup(ctx, SOURCE, "differential").backup_id
        assert [b.backup_id for b in chain_of(ctx, incr)] == [full, incr]
        assert [b.backup_id for b in chain_of(ctx, diff)] == [full, diff]
        with pytest.raises(MissingChainMember) as raised:
            chain_of(ctx, new_backup_id(datetime.now(timezone.utc), "ffffff"))
    conn.close()
    assert "is not known" in raised.value.message
