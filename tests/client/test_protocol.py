"""The wire vocabulary: in step with docs/PROTOCOL.md, round trips, and decoders that only ever raise
ProtocolError (carrying the request id when it was readable), whatever the bytes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backupd_client.protocol as protocol
from backupd_client.protocol import (ACTIVE_STATUSES, CLIENT_SIDE_CODES, FAILED_STATUSES, FINAL_STATUSES,
                                     MAX_DEPTH, MAX_MESSAGE_BYTES, OP_ARGS, RESEND_UNSAFE_OPS, SUCCESS_STATUSES,
                                     ErrorCode, Event, JobStatus, Op, ProtocolError, Reply, Request,
                                     decode_reply, decode_request, encode_event, encode_reply_error,
                                     check_args, encode_reply_ok, encode_request)

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else None]


def first_column_names(markdown: str) -> set[str]:
    names: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split(" | ")[0]))
    return names


def test_ops_are_the_documented_ones():
    assert {op.value for op in Op} == first_column_names(section("Ops"))
    assert set(OP_ARGS) == set(Op)


def test_error_codes_are_the_documented_ones_plus_the_client_side_ones():
    documented = first_column_names(section("Error codes"))
    assert {c.value for c in ErrorCode} - {c.value for c in CLIENT_SIDE_CODES} == documented
    assert {c.value for c in CLIENT_SIDE_CODES} == {"daemon_unreachable", "timeout"}


def test_job_statuses_are_the_documented_ones_and_groups_partition_them():
    paragraph = next(p for p in section("Objects").split("\n\n") if p.startswith("Statuses:"))
    assert {s.value for s in JobStatus} == set(re.findall(r"`([a-z_]+)`", paragraph))
    assert ACTIVE_STATUSES | FINAL_STATUSES == set(JobStatus) and not ACTIVE_STATUSES & FINAL_STATUSES
    assert FAILED_STATUSES == {"failed", "partial", "timed_out"}
    assert SUCCESS_STATUSES <= FINAL_STATUSES and FAILED_STATUSES <= FINAL_STATUSES


def test_resend_unsafe_ops_are_the_documented_ones():
    transport = section("Transport")
    sentence = transport[transport.index("requests are safe to resend except"):]
    sentence = sentence[: sentence.index(".\n") if ".\n" in sentence else None]
    assert {op.value for op in RESEND_UNSAFE_OPS} == set(re.findall(r"`([a-z.]+)`", sentence))


PROTOCOL_MODULES = {"protocol", "ops", "errorcodes", "codec"}  # protocol.py re-exports the other three


@pytest.mark.parametrize("module", sorted(PROTOCOL_MODULES))
def test_protocol_modules_import_only_stdlib_msgpack_and_each_other(module):
    tree = ast.parse((Path(protocol.__file__).parent / f"{module}.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    siblings = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert all(isinstance(node, ast.ImportFrom) and node.level == 1 for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.level)
    assert siblings <= PROTOCOL_MODULES - {"protocol"}
    assert imported - {"msgpack", "__future__"} <= set(sys.stdlib_module_names)


def test_importing_the_protocol_does_not_import_zmq():
    code = "import sys, backupd_client.protocol; assert 'zmq' not in sys.modules, 'zmq imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


SAMPLE_ARGS = {
    Op.STATUS: {}, Op.HEALTH: {}, Op.METRICS: {},
    Op.BACKUP_CREATE: {"source": "app", "strategy": "incremental", "priority": "high", "tags": ["a", "b"],
                       "description": "before upgrade", "notify": ["ops"], "notify_on": ["failure", "success"]},
    Op.JOB_GET: {"job_id": "j1"}, Op.JOB_CANCEL: {"job_id": "j1"},
    Op.JOB_LIST: {"status": "running", "source": "app", "kind": "backup", "limit": 20},
    Op.JOB_WAIT: {"job_id": "j1", "timeout_s": 2.5, "progress": True},
    Op.RESTORE_POINTS: {"source": "app"},
    Op.RESTORE_NEAREST: {"source": "app", "at": "2026-11-26T14:30:00Z"},
    Op.RESTORE_CREATE: {"source": "app", "at": "2026-11-26T14:30:00+01:00", "to": "/tmp/x.db", "tables": ["t"],
                        "overwrite": False, "copy_selection": "most_reliable"},
    Op.VALIDATE: {"backup_id": "b1", "level": "deep"},
    Op.SCHEDULE_ADD: {"name": "nightly", "source": "app", "cron": "15 3 * * *", "strategy": "auto",
                      "timezone": "Europe/Paris", "retry": {"max_attempts": 3}, "some_future_field": 1},
    Op.SCHEDULE_LIST: {}, Op.SCHEDULE_REMOVE: {"name": "n"}, Op.SCHEDULE_PAUSE: {"name": "n"},
    Op.SCHEDULE_RESUME: {"name": "n"}, Op.SCHEDULE_STATS: {"name": "n"},
    Op.DESTINATION_LIST: {}, Op.DESTINATION_HEALTH: {"name": "local", "refresh": True},
    Op.DESTINATION_RESYNC: {"source": "kb"},
    Op.DESTINATION_ADD: {"destination": {"name": "usb", "kind": "local", "path": "/mnt/usb/backupd", "priority": 3,
                                         "encryption": {"key_file": "/etc/backupd/backup.key"}}},
    Op.DESTINATION_ENABLE: {"name": "usb"}, Op.DESTINATION_DISABLE: {"name": "usb"},
    Op.DESTINATION_REMOVE: {"name": "usb", "force": True},
    Op.PRUNE: {"dry_run": True}, Op.CONFIG_RELOAD: {},
    Op.INVENTORY: {"days": 7},
    Op.EVENTS_SUBSCRIBE: {"types": ["backup.*", "*.failed"], "source": "app", "history": 10, "follow": True,
                          "timeout_s": 30, "max_events": 100, "queue_size": 1000},
    Op.NOTIFY_LIST: {}, Op.NOTIFY_TEST: {"name": "ops"},
}


@pytest.mark.parametrize("op", list(Op), ids=str)
def test_request_round_trip(op):
    assert set(SAMPLE_ARGS) == set(Op)
    frame = encode_request("r" * 64, op, SAMPLE_ARGS[op])
    assert decode_request(frame) == Request("r" * 64, op, SAMPLE_ARGS[op])
    assert msgpack.unpackb(frame) == {"v": 1, "id": "r" * 64, "op": op.value, "args": SAMPLE_ARGS[op]}


def test_optional_arguments_sent_as_nil_are_dropped():
    frame = msgpack.packb({"v": 1, "id": "a", "op": "job.wait", "args": {"job_id": "j", "timeout_s": None}})
    assert decode_request(frame).args == {"job_id": "j"}


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
ids = st.text(min_size=1, max_size=64)


@given(ids, plain)
def test_reply_and_event_round_trip(rid, value):
    assert decode_reply(encode_reply_ok(rid, value)) == Reply(rid, True, result=value)
    assert decode_reply(encode_event(rid, "progress", value)) == Event(rid, "progress", value)


@given(st.none() | ids, st.sampled_from(list(ErrorCode)), st.text(max_size=40),
       st.dictionaries(st.text(max_size=8), plain, max_size=3))
def test_error_reply_round_trip(rid, code, message, details):
    reply = decode_reply(encode_reply_error(rid, code, message, details))
    assert (reply.id, reply.ok, reply.error.code, reply.error.message, reply.error.details) == (
        rid, False, code.value, message, details)


def bad(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


OK = {"v": 1, "id": "rid", "op": "status", "args": {}}
MALFORMED = [
    # (frame, code, request id the error must carry)
    (b"", "bad_request", None),
    (b"\xc1", "bad_request", None),  # never-used msgpack byte
    (b"\x92\x01", "bad_request", None),  # truncated array
    (bad(OK) + b"\x00", "bad_request", None),  # trailing bytes
    (bad([1, 2]), "bad_request", None),
    (bad("status"), "bad_request", None),
    (bad({1: "x"}), "bad_request", None),  # non-string key
    (bad({b"v": 1}), "bad_request", None),  # bytes key
    (b"\x81\xa1v\xa2\xff\xfe", "bad_request", None),  # invalid UTF-8
    (bad({**OK, "v": 2}), "unsupported_protocol_version", "rid"),
    (bad({**OK, "v": "1"}), "unsupported_protocol_version", "rid"),
    (bad({**OK, "v": True}), "unsupported_protocol_version", "rid"),
    (bad({**OK, "v": 1.0}), "unsupported_protocol_version", "rid"),
    (bad({"id": "rid", "op": "status", "args": {}}), "bad_request", "rid"),
    (bad({**OK, "id": ""}), "bad_request", None),
    (bad({**OK, "id": "x" * 65}), "bad_request", None),
    (bad({**OK, "id": 7}), "bad_request", None),
    (bad({**OK, "op": 3}), "bad_request", "rid"),
    (bad({**OK, "op": "nope"}), "unknown_op", "rid"),
    (bad({**OK, "args": []}), "bad_request", "rid"),
    (bad({k: v for k, v in OK.items() if k != "args"}), "bad_request", "rid"),
    (bad({**OK, "extra": 1}), "bad_request", "rid"),
    (bad({**OK, "args": {"x": 1}}), "bad_request", "rid"),
    (bad({**OK, "op": "job.get", "args": {}}), "bad_request", "rid"),
    (bad({**OK, "op": "job.get", "args": {"job_id": 5}}), "bad_request", "rid"),
    (bad({**OK, "op": "job.list", "args": {"limit": True}}), "bad_request", "rid"),
    (bad({**OK, "op": "prune", "args": {"dry_run": 1}}), "bad_request", "rid"),
    (bad({**OK, "op": "job.list", "args": {"limit": 0}}), "bad_request", "rid"),
    (bad({**OK, "op": "job.wait", "args": {"job_id": "j", "timeout_s": -1}}), "bad_request", "rid"),
    (bad({**OK, "op": "job.wait", "args": {"job_id": "j", "timeout_s": float("nan")}}), "bad_request", "rid"),
    (bad({**OK, "op": "prune", "args": {"dry_run": None}}), "bad_request", "rid"),
    (bad({**OK, "op": "backup.create", "args": {"source": "s", "strategy": "weekly"}}), "bad_request", "rid"),
    (bad({**OK, "op": "backup.create", "args": {"source": "s", "tags": ["a", 1]}}), "bad_request", "rid"),
    (bad({**OK, "op": "restore.create", "args": {"source": "s", "to": "/x"}}), "bad_request", "rid"),
    (bad({**OK, "op": "restore.create", "args": {"source": "s", "to": "/x", "backup_id": "b", "at": "t"}}),
     "bad_request", "rid"),
    # bin and ext values are not JSON; the reply still carries the readable id, so the client gets it
    (bad({**OK, "args": {"blob": b"\x00"}}), "bad_request", "rid"),
    (msgpack.packb({**OK, "args": {"t": msgpack.Timestamp(0)}}), "bad_request", "rid"),
    (msgpack.packb({**OK, "args": {"x": msgpack.ExtType(5, b"abc")}}), "bad_request", "rid"),
]


@pytest.mark.parametrize(("frame", "code", "rid"), MALFORMED,
                         ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else None)
def test_malformed_requests_name_the_problem(frame, code, rid):
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame)
    assert (caught.value.code, caught.value.request_id) == (code, rid)
    assert caught.value.message
    if code == "unsupported_protocol_version":
        assert caught.value.details == {"supported": [1]}
    reply = decode_reply(caught.value.reply())  # the daemon answers with it, id and all
    assert (reply.id, reply.ok, reply.error.code) == (rid, False, code)


def test_oversized_and_too_deep_frames_are_refused_before_or_while_decoding():
    big = bad({**OK, "args": {"description": "x" * MAX_MESSAGE_BYTES}})
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_request(big)
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ProtocolError, match="nested"):
        decode_request(bad({**OK, "args": {"x": deep}}))
    very_deep = b"\x91" * 5000 + b"\xc0"  # deeper than msgpack's own stack and Python's recursion limit
    with pytest.raises(ProtocolError):
        decode_request(very_deep)
    huge_header = b"\xdd\xff\xff\xff\xff"  # array32 claiming 4 G elements in a 5-byte frame
    with pytest.raises(ProtocolError):
        decode_request(huge_header)


def test_encoders_refuse_what_the_other_side_would_refuse():
    with pytest.raises(ProtocolError) as caught:
        encode_request("", Op.STATUS, {})
    assert caught.value.code == "bad_request"
    with pytest.raises(ProtocolError) as caught:
        encode_request("r", "nope", {})
    assert caught.value.code == "unknown_op"
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_request("r", Op.BACKUP_CREATE, {"source": "s", "description": "x" * MAX_MESSAGE_BYTES})
    from datetime import datetime

    with pytest.raises(ProtocolError) as caught:
        encode_reply_ok("r", {"at": datetime(2026, 1, 1)})
    assert (caught.value.code, caught.value.request_id) == ("internal_error", "r")
    with pytest.raises(ProtocolError):
        encode_reply_ok("r", {1: "non-string key"})
    with pytest.raises(ProtocolError):
        encode_event("", "progress", {})


MALFORMED_REPLIES = [
    {"v": 1, "id": "r", "ok": "yes", "result": 1},
    {"v": 1, "id": "r", "ok": True},
    {"v": 1, "ok": True, "result": 1},
    {"v": 1, "id": "r", "ok": True, "result": 1, "extra": 1},
    {"v": 1, "id": "r", "ok": False, "error": "boom"},
    {"v": 1, "id": "r", "ok": False, "error": {"code": 1, "message": "m"}},
    {"v": 1, "id": "r", "ok": False, "error": {"code": "c", "message": "m", "details": []}},
    {"v": 1, "id": 5, "ok": False, "error": {"code": "c", "message": "m"}},
    {"v": 1, "event": "progress", "data": {}},
    {"v": 1, "id": "r", "event": 3, "data": {}},
    {"v": 1, "id": "r", "event": "progress"},
    [1],
]


@pytest.mark.parametrize("obj", MALFORMED_REPLIES, ids=repr)
def test_malformed_replies_are_refused(obj):
    with pytest.raises(ProtocolError) as caught:
        decode_reply(bad(obj))
    assert caught.value.code == "bad_request"


def test_reply_in_another_version_is_refused_as_such():
    with pytest.raises(ProtocolError) as caught:
        decode_reply(bad({"v": 2, "id": "r", "ok": True, "result": 1}))
    assert (caught.value.code, caught.value.request_id) == ("unsupported_protocol_version", "r")


# -- fuzz: nothing but ProtocolError, ever -------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["v", "id", "op", "args", "ok", "result", "error", "event", "data", "code",
                                       "message", "details", "job_id", "source"]) | st.text(max_size=4),
                      inner, max_size=5),
    max_leaves=15,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={"v": st.sampled_from([1, 2, 0, -1, True, 1.0, "1", None]) | msgpack_values,
              "id": ids | msgpack_values, "op": st.sampled_from([op.value for op in Op]) | msgpack_values,
              "args": st.dictionaries(st.sampled_from(["source", "job_id", "name", "dry_run", "at", "to", "tags",
                                                       "backup_id", "limit", "timeout_s", "strategy"]),
                                      msgpack_values, max_size=4) | msgpack_values,
              "ok": st.booleans() | msgpack_values, "result": msgpack_values, "event": msgpack_values,
              "data": msgpack_values, "error": msgpack_values},
)


def decodes_or_refuses(frame: bytes) -> None:
    for decode in (decode_request, decode_reply):
        try:
            decode(frame)
        except ProtocolError as exc:
            assert isinstance(exc.code, ErrorCode) and exc.message
            assert exc.request_id is None or isinstance(exc.request_id, str)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(frame):
    decodes_or_refuses(frame)


@FUZZ
@given(envelopes)
def test_fuzz_random_msgpack_maps(obj):
    decodes_or_refuses(msgpack.packb(obj, use_bin_type=True))


@FUZZ
@given(envelopes, st.integers(0, 60), st.binary(min_size=1, max_size=3))
def test_fuzz_corrupted_msgpack_maps(obj, at, junk):
    frame = msgpack.packb(obj, use_bin_type=True)
    decodes_or_refuses(frame[:at] + junk + frame[at + len(junk):])



def test_a_list_argument_with_choices_is_checked_item_by_item():
    with pytest.raises(ProtocolError, match="notify_on.*must be one of failure, success, completion, not 'always'"):
        check_args(Op.BACKUP_CREATE, {"source": "app", "notify_on": ["failure", "always"]})
    assert check_args(Op.BACKUP_CREATE, {"source": "app", "notify_on": ["completion"]})["notify_on"] == ["completion"]
