"""Issue requirement: "A flipped byte, a truncated artifact, a missing chain member, a wrong key, an
unknown format version: each gives a clear error and a failed verify; nothing is restored silently."

Every case damages a real chain (full + 2 incrementals) on a local destination, then checks that
`backupd verify --json` exits 1 with verdict fail and a check naming the cause (and the backup, the
block where it applies), and that `backupd restore` exits 1 with one clear line, leaving neither the
target nor a temp file behind.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupd.core import format as fmt
from backupd.engine.crypto import keygen
from backupd.engine.restore import run_restore
from backupd.engine.validate import validate_backup
from backupd.errors import BackupdError

ENCRYPTION = pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])


def verify_fails(env, backup_id: str, level: str = "standard") -> tuple[dict, list[dict]]:
    code, report = env.verify_json(backup_id, "--level", level)
    assert code == 1 and report["verdict"] == "fail", report
    assert report["recommendations"], "a failed verify says what to do"
    return report, [c for c in report["checks"] if c["status"] == "fail"]


def only(checks: list[dict], rule_id: str, backup_id: str | None = None) -> dict:
    found = [c for c in checks if c["id"] == rule_id and (backup_id is None or c["details"]["backup_id"] == backup_id)]
    assert len(found) == 1, f"expected one failed {rule_id} check, got {checks}"
    return found[0]


def restore_refused(env, backup_id: str, code: str | None, *, as_json: bool = True) -> str:
    """Run `backupd restore`; assert it fails with one line (of `code`) and leaves nothing behind."""
    to = env.restore_dir / "restored.db"
    proc = env.cli("restore", "-c", str(env.config_path), "--source", "kb", "--backup", backup_id,
                   "--to", str(to), *(["--json"] if as_json else []))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, f"one clear line, got: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    if as_json:
        error = json.loads(lines[0])
        if code is not None:
            assert error["code"] == code, error
        message = error["error"]
    else:
        assert lines[0].startswith("backupd: error: ")
        message = lines[0]
    assert not to.exists(), "nothing is restored"
    assert env.restore_leftovers() == [], "no temp file is left beside the target"
    return message


# -- a flipped byte --------------------------------------------------------------------------------
@ENCRYPTION
def test_flipped_byte_in_a_block_is_located(validation_chain, encrypted):
    env = validation_chain(encrypted)
    full, target = env.chain[0], env.chain[-1]
    start, end = env.block_spans(env.artifact(full))[1]  # the full has 3 page blocks; damage the middle one
    env.flip(env.artifact(full), (start + end) // 2)

    report, failed = verify_fails(env, target)
    blocks = only(failed, "blocks_authentic", full)
    assert blocks["details"]["block"] == 1 and "block 1" in blocks["message"] and full in blocks["message"]
    assert blocks["details"]["destination"] == "local" and blocks["details"]["key"] == f"kb/{full}.bkpd"
    assert blocks["details"]["code"] == "corrupt_artifact"
    assert only(failed, "artifact_checksum", full)["severity"] == "critical"
    assert {c["details"]["backup_id"] for c in failed} == {full}, "the other members are healthy"
    assert report["recommendations"] == [
        f"take a new full backup of source 'kb': backup {full} on destination local is corrupt, and {target} depends on it"]
    restore_refused(env, target, "corrupt_artifact")


def test_flipped_byte_in_the_header(validation_chain):
    env = validation_chain()
    target = env.chain[-1]
    env.flip(env.artifact(target), fmt.PREAMBLE_SIZE + 10)

    _, failed = verify_fails(env, target)
    header = only(failed, "artifact_header", target)
    assert "header checksum mismatch" in header["message"] and target in header["message"]
    assert header["details"]["code"] == "corrupt_artifact"
    restore_refused(env, target, "corrupt_artifact")
    restore_refused(env, target, None, as_json=False)


def test_flipped_byte_in_a_sidecar(validation_chain):
    env = validation_chain(True)
    parent, target = env.chain[1], env.chain[-1]
    sidecar = env.sidecar(parent)
    env.flip(sidecar, sidecar.stat().st_size // 2)

    _, failed = verify_fails(env, target)
    check = only(failed, "sidecar_intact", parent)
    assert check["details"]["key"] == f"kb/{parent}.manifest" and f"kb/{parent}.manifest" in check["message"]
    assert check["details"]["code"] == "corrupt_artifact"

    # a new machine has only the destination: the damaged sidecar hides the parent, the chain is broken
    env.forget_catalog()
    _, failed = verify_fails(env, target)
    chain = only(failed, "chain_complete")
    assert chain["details"]["missing"] == parent and "unreadable" in chain["message"]
    restore_refused(env, target, "missing_chain_member")


def test_a_damaged_sidecar_fails_verify_but_restore_still_uses_the_self_verifying_artifact(validation_chain):
    """The sidecar is an index; the artifact carries its own manifest and checksums, so restore reads it."""
    env = validation_chain()
    sidecar = env.sidecar(env.chain[1])
    env.flip(sidecar, sidecar.stat().st_size // 2)
    code, report = env.verify_json(env.chain[-1], "--level", "quick")
    assert code == 1 and report["verdict"] == "fail"
    to = env.restore_dir / "restored.db"
    proc = env.cli("restore", "-c", str(env.config_path), "--source", "kb", "--backup", env.chain[-1],
                   "--to", str(to), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backup_id"] == env.chain[-1]


# -- a truncated artifact ----------------------------------------------------------------------------
@ENCRYPTION
def test_truncated_artifact(validation_chain, encrypted):
    env = validation_chain(encrypted)
    full, target = env.chain[0], env.chain[-1]
    path = env.artifact(full)
    recorded = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(recorded // 2)

    _, failed = verify_fails(env, target, "quick")
    size = only(failed, "artifact_size", full)
    assert size["details"]["size"] == recorded // 2 and size["details"]["recorded"] == recorded
    assert "truncated" in size["message"] and full in size["message"]
    _, failed = verify_fails(env, target)
    assert "truncated" in only(failed, "blocks_authentic", full)["message"]
    restore_refused(env, target, "corrupt_artifact")


# -- a missing chain member -----------------------------------------------------------------------------
def _delete_member(env, backup_id: str) -> None:
    env.artifact(backup_id).unlink()
    env.sidecar(backup_id).unlink()


def test_missing_chain_member(validation_chain):
    env = validation_chain()
    parent, target = env.chain[1], env.chain[-1]
    _delete_member(env, parent)

    report, failed = verify_fails(env, target, "deep")
    chain = only(failed, "chain_complete")
    assert chain["details"]["missing"] == parent and chain["details"]["needed_by"] == target
    assert parent in chain["message"] and chain["details"]["code"] == "missing_chain_member"
    assert any(f"broken at {parent}" in r for r in report["recommendations"])
    assert {c["status"] for c in report["checks"] if c["id"] == "restore_completes"} == {"skip"}
    restore_refused(env, target, None)


def test_missing_chain_member_on_a_new_machine(validation_chain):
    env = validation_chain(True)
    parent, target = env.chain[1], env.chain[-1]
    _delete_member(env, parent)
    env.forget_catalog()

    _, failed = verify_fails(env, target)
    chain = only(failed, "chain_complete")
    assert chain["details"]["missing"] == parent and f"no sidecar kb/{parent}.manifest" in chain["message"]
    message = restore_refused(env, target, "missing_chain_member")
    assert parent in message


def test_restore_reports_a_deleted_member_as_missing_chain_member(validation_chain):
    env = validation_chain()
    _delete_member(env, env.chain[1])
    restore_refused(env, env.chain[-1], "missing_chain_member")


# -- a wrong key -----------------------------------------------------------------------------------------
def test_wrong_key(validation_chain):
    env = validation_chain(True)
    target = env.chain[-1]
    keygen(env.root / "other.key")
    env.write_config(key_file="other.key")

    report, failed = verify_fails(env, target)
    headers = [c for c in failed if c["id"] == "artifact_header"]
    assert [c["details"]["backup_id"] for c in headers] == env.chain
    for check in headers:
        assert "wrong key" in check["message"] and check["details"]["code"] == "wrong_key"
        assert check["details"]["destination"] == "local"
    assert all("wrong key" in c["message"] for c in failed if c["id"] == "sidecar_intact")
    assert any("key" in r and "local" in r for r in report["recommendations"])
    assert "wrong key" in restore_refused(env, target, "wrong_key")


def test_encrypted_artifacts_without_a_key(validation_chain):
    env = validation_chain(True)
    env.encrypted = False
    env.write_config()
    with env.context() as ctx:
        report = validate_backup(ctx, env.chain[-1], "standard")
    assert report.verdict == "fail"
    assert all(c.details["code"] == "wrong_key" and "no key is configured" in c.message
               for c in report.check("artifact_header"))


# -- an unknown format version ---------------------------------------------------------------------------
@ENCRYPTION
def test_unknown_format_version(validation_chain, encrypted):
    env = validation_chain(encrypted)
    member, target = env.chain[1], env.chain[-1]
    path = env.artifact(member)
    data = bytearray(path.read_bytes())
    data[8:10] = struct.pack(">H", 2)
    path.write_bytes(bytes(data))

    report, failed = verify_fails(env, target)
    header = only(failed, "artifact_header", member)
    assert header["details"]["code"] == "unsupported_format_version" and header["details"]["version"] == 2
    assert "version 2" in header["message"] and member in header["message"]
    assert any("format version 2" in r for r in report["recommendations"])
    restore_refused(env, target, "unsupported_format_version")


@pytest.mark.parametrize("field, offset", [("magic", 0), ("block_count", 8), ("blocks_end", 16), ("digest", 55)])
def test_quick_level_checks_every_trailer_field(validation_chain, field, offset):
    env = validation_chain()
    path = env.artifact(env.chain[0])
    env.flip(path, path.stat().st_size - fmt.TRAILER_SIZE + offset, 0x04)
    with env.context() as ctx:
        report = validate_backup(ctx, env.chain[0], "quick")
    assert report.failed == ["artifact_checksum"], [c.message for c in report.checks if c.failed]


# -- any single flipped byte --------------------------------------------------------------------------------
def _offsets(size: int):
    return st.one_of(st.integers(0, 200), st.integers(0, size - 1), st.integers(size - fmt.TRAILER_SIZE, size - 1))


@ENCRYPTION
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_fails_verify_and_restore(validation_template, encrypted, data):
    template = validation_template(encrypted)
    member = data.draw(st.sampled_from(template.chain), label="member")
    size = template.artifact(member).stat().st_size
    offset = data.draw(_offsets(size), label="offset")
    mask = data.draw(st.integers(1, 255), label="mask")
    with tempfile.TemporaryDirectory() as tmp:
        env = template.clone(Path(tmp) / "env")
        env.flip(env.artifact(member), offset, mask)
        with env.context() as ctx:
            for level in ("quick", "standard"):
                report = validate_backup(ctx, env.chain[-1], level)
                assert report.verdict == "fail", level
                assert {c.details.get("backup_id") for c in report.checks if c.failed} == {member}
            to = env.restore_dir / "restored.db"
            with pytest.raises(BackupdError):
                run_restore(ctx, "kb", to, backup_id=env.chain[-1])
            assert not to.exists() and env.restore_leftovers() == []
