"""The error catalogue (in backupd/errors.py) is the one definition of every code a user can see: the
error classes take their exit code and retryability from it, docs/ERRORS.md is generated from it, the
client's ErrorCode has exactly its wire and client codes with the same exit codes, and every code
string the code base emits is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import backupd.daemon.main  # noqa: F401 - defines AlreadyRunning
from backupd import errors as E
from backupd.daemon.supervisor import _retryable  # importing it defines ShuttingDown, Conflict
from backupd_client import errors as client_errors
from backupd_client.protocol import CLIENT_SIDE_CODES, ErrorCode

ROOT = Path(__file__).resolve().parents[1]
# Where a code is written as a literal: `code = "x"`, `code="x"`, `"code": "x"`, `code == "x"`, and the
# warning prefixes of core/source_health.py (`f"source_shrunk: ..."`).
LITERALS = [re.compile(r'\bcode\s*(?:=|==|!=)\s*"([a-z_]+)"'), re.compile(r'"code":\s*"([a-z_]+)"'),
            re.compile(r'out\.append\(f"([a-z_]+): ')]


def _subclasses(cls: type[E.BackupdError]) -> list[type[E.BackupdError]]:
    out: list[type[E.BackupdError]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def emitted_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in [*(ROOT / "backupd").rglob("*.py"), *(ROOT / "client" / "backupd_client").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for pattern in LITERALS:
            for code in pattern.findall(text):
                found.setdefault(code, str(path.relative_to(ROOT)))
    return found


def test_docs_errors_md_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "ERRORS.md").read_text(encoding="utf-8") == E.render_markdown(), \
        "regenerate: python -m backupd.errors > docs/ERRORS.md"


def test_every_code_the_code_base_emits_is_catalogued():
    found = emitted_codes()
    assert {"partial", "worker_died", "interrupted", "timed_out", "key_unusable", "source_corrupt"} <= set(found)
    assert {c: where for c, where in found.items() if c not in E.CATALOGUE} == {}


def test_the_clients_error_codes_are_the_catalogues_wire_and_client_codes():
    assert {c.value for c in ErrorCode} == E.WIRE_CODES | E.CLIENT_CODES
    assert {c.value for c in CLIENT_SIDE_CODES} == E.CLIENT_CODES


@pytest.mark.parametrize("code", sorted(E.WIRE_CODES | E.CLIENT_CODES))
def test_backupctl_exits_as_backupd_does_for_each_code(code):
    assert client_errors.error_for(code, "why").exit_code == E.entry(code).exit_code


def test_every_error_class_takes_exit_code_and_retryability_from_the_catalogue():
    classes = [E.BackupdError, *_subclasses(E.BackupdError)]
    assert len(classes) > 30
    for cls in classes:
        entry = E.entry(cls.code)
        assert entry.scope in (E.WIRE, E.LOCAL), cls
        assert (cls.exit_code, cls.retryable) == (entry.exit_code, entry.retryable), cls


def test_an_uncatalogued_code_cannot_be_defined():
    with pytest.raises(KeyError):
        type("Made", (E.BackupdError,), {"code": "made_up_code"})


@pytest.mark.parametrize("cls, retried", [
    (E.WrongKey, False), (E.KeyUnusable, False), (E.DestinationFull, False), (E.DestinationReadOnly, False),
    (E.DestinationPermissionDenied, False), (E.UsageError, False), (E.ConfigError, False),
    (E.UnknownSource, False), (E.UnknownDestination, False), (E.DestinationError, False),
    (E.DestinationUnavailable, True), (E.DestinationStale, True), (E.DestinationIOError, True),
    (E.SourceBusy, True), (E.SnapshotFailed, True),
])  # fmt: skip
def test_retry_decisions_follow_the_class(cls, retried):
    assert cls.retryable is retried
    assert _retryable({"code": cls.code, "message": "m"}) is retried
    assert _retryable({"code": cls.code, "message": "m", "retryable": not retried}) is (not retried)


def test_errors_made_by_the_supervisor_follow_the_catalogue():
    assert _retryable({"code": "worker_died"}) and _retryable({"code": "timed_out"})
    assert _retryable({"code": "internal_error"})  # a bug: retried per the job's policy, as before
    assert not _retryable({"code": "interrupted"}) and not _retryable({"code": "never_heard_of"})
    assert not _retryable(None)


def test_an_aggregate_of_causes_is_retryable_if_any_cause_is():
    full = E.DestinationFull("destination 'a': no space")
    gone = E.DestinationUnavailable("destination 'b': connection refused")
    mixed = E.aggregate([full, gone])
    assert mixed is full and mixed.code == "destination_full" and mixed.retryable is True
    assert mixed.details["causes"] == ["destination_full", "destination_unavailable"]
    assert E.DestinationFull.retryable is False  # the instance, not the class, changed
    both = E.aggregate([E.DestinationFull("a"), E.DestinationReadOnly("b")])
    assert both.retryable is False
    single = E.DestinationFull("a")
    assert E.aggregate([single]) is single and single.retryable is False and "causes" not in single.details


def test_validation_does_not_blame_a_copy_for_destination_or_key_errors():
    assert E.NOT_THE_COPY == {c.code for c in [E.WrongKey, E.UnsupportedVersion, E.DestinationError,
                                                   *_subclasses(E.DestinationError)]}
