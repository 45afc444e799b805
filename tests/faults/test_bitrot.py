"""Bit rot and tampering over mixed chains (full, incremental, differential, incremental), plain and encrypted:
random byte flips and truncations of artifacts and sidecars; artifacts swapped between backups; a backup
replayed from this chain or from another chain of the same source under the same key; a destination rolled
back to before its newest backups; deleted artifacts and sidecars.

Two invariants, counted per trial: **located** — `validate_backup` of a damaged backup fails and names only
damaged backups; **never silently wrong** — restoring the newest point or the damaged one either fails with a
typed error or gives exactly the content that backup was taken from.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backupd.engine.restore import run_restore
from backupd.engine.validate import validate_backup
from backupd.errors import BackupdError
from tests.engine.conftest import VALIDATION_SOURCE, ValidationEnv
from tests.engine.dbtools import canonical_dump

from .conftest import trials


def content(db: Path) -> str:
    return hashlib.sha256(repr(canonical_dump(db)).encode()).hexdigest()


@dataclass
class Bench:
    """A mixed chain in `env`, a pristine copy of its destination and state to reset to, the content every
    backup was taken from, and a second chain of the same source under the same key (for replays)."""

    env: ValidationEnv
    pristine: Path
    foreign: ValidationEnv
    expected: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        for name in ("backups", "state"):
            shutil.rmtree(self.env.root / name)
            shutil.copytree(self.pristine / name, self.env.root / name)
        (self.env.restore_dir / "restored.db").unlink(missing_ok=True)


def mixed_chain(env: ValidationEnv, expected: dict[str, str]) -> None:
    for i, strategy in enumerate(("full", "incremental", "differential", "incremental")):
        if i:
            env.change_rows(40 + 30 * i, f"change {i}".encode())
        expected[env.backup(strategy)] = content(env.db)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "encrypted"])
def bench(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("bitrot-encrypted" if request.param else "bitrot-plain")
    env = ValidationEnv.create(root / "env", encrypted=request.param)
    foreign = ValidationEnv.create(root / "foreign", encrypted=request.param, rows=2000)
    if request.param:
        shutil.copy(env.root / "k.key", foreign.root / "k.key")
    b = Bench(env, root / "pristine", foreign)
    mixed_chain(env, b.expected)
    mixed_chain(foreign, {})
    for name in ("backups", "state"):
        shutil.copytree(env.root / name, b.pristine / name)
    return b


# -- the attacks: each damages the destination and returns the ids of the backups it damaged ------------------
def flip_bytes(path: Path, rnd: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(rnd.randint(1, 3)):
        data[rnd.randrange(len(data))] ^= rnd.randint(1, 255)
    path.write_bytes(bytes(data))


def truncate(path: Path, rnd: random.Random) -> None:
    with open(path, "r+b") as f:
        f.truncate(rnd.randrange(path.stat().st_size))


def attack(b: Bench, rnd: random.Random) -> tuple[str, set[str]]:
    env, chain = b.env, b.env.chain
    one = rnd.choice(chain)
    kind = rnd.choice(["flip artifact", "truncate artifact", "flip sidecar", "truncate sidecar", "swap artifacts",
                       "replay own", "replay foreign", "roll back", "delete artifact", "delete sidecar"])
    if kind == "flip artifact":
        flip_bytes(env.artifact(one), rnd)
    elif kind == "truncate artifact":
        truncate(env.artifact(one), rnd)
    elif kind == "flip sidecar":
        flip_bytes(env.sidecar(one), rnd)
    elif kind == "truncate sidecar":
        truncate(env.sidecar(one), rnd)
    elif kind == "swap artifacts":
        a, c = rnd.sample(chain, 2)
        tmp = env.artifact(a).with_suffix(".swap")
        env.artifact(a).rename(tmp)
        env.artifact(c).rename(env.artifact(a))
        tmp.rename(env.artifact(c))
        return kind, {a, c}
    elif kind == "replay own":
        other = rnd.choice([i for i in chain if i != one])
        shutil.copy(env.artifact(other), env.artifact(one))
        if rnd.random() < 0.5:
            shutil.copy(env.sidecar(other), env.sidecar(one))
    elif kind == "replay foreign":
        index = chain.index(one)
        source = b.foreign.chain[index]
        shutil.copy(b.foreign.artifact(source), env.artifact(one))
        if rnd.random() < 0.5:
            shutil.copy(b.foreign.sidecar(source), env.sidecar(one))
    elif kind == "roll back":
        lost = chain[rnd.randrange(1, len(chain)):]
        for backup_id in lost:
            env.artifact(backup_id).unlink()
            env.sidecar(backup_id).unlink()
        return kind, set(lost)
    elif kind == "delete artifact":
        env.artifact(one).unlink()
    else:
        env.sidecar(one).unlink()
    return kind, {one}


def restore_outcome(b: Bench, ctx, backup_id: str) -> str:
    """'refused' or 'exact'; an AssertionError if the restore gave other content."""
    to = b.env.restore_dir / "restored.db"
    to.unlink(missing_ok=True)
    try:
        run_restore(ctx, VALIDATION_SOURCE, to, backup_id=backup_id)
    except BackupdError:
        assert not to.exists(), f"a refused restore of {backup_id} left the target"
        return "refused"
    assert content(to) == b.expected[backup_id], f"restoring {backup_id} silently gave other content"
    return "exact"


def test_bitrot_is_located_and_never_restored_silently(bench, tally, request):
    rnd = random.Random(request.node.callspec.id)
    for _ in range(trials(ci=150, long=600)):
        bench.reset()
        kind, damaged = attack(bench, rnd)
        try:
            with bench.env.context() as ctx:
                target = rnd.choice(sorted(damaged))
                report = validate_backup(ctx, target, "standard")
                named = {c.details.get("backup_id") for c in report.checks if c.failed}
                assert report.verdict == "fail", f"{kind} of {target}: verify passes"
                assert named & damaged and named <= damaged | {None}, \
                    f"{kind} of {sorted(damaged)}: verify names {sorted(map(str, named))}"
                seen = {restore_outcome(bench, ctx, i) for i in {target, bench.env.chain[-1]}}
            tally.trial(f"{kind}: {'/'.join(sorted(seen))}")
        except AssertionError as e:
            tally.fail(str(e).splitlines()[0])
