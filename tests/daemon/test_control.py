"""The control socket of a real daemon under hostile input: protocol errors, oversized frames, and
hypothesis fuzzing with a raw ZeroMQ DEALER (random frames, random msgpack maps, valid envelopes with
random arguments for every op). Whatever arrives, the daemon answers (or drops) it and keeps
answering `status`."""

from __future__ import annotations

import stat
import subprocess
import uuid
from typing import Any

import msgpack
import zmq
from backupd_client.protocol import OP_ARGS, Op, decode_reply, encode_request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .harness import BACKUPD, Daemon

REPLY_TIMEOUT_MS = 5000


class Raw:
    """A bare DEALER on the daemon's socket: sends any frames, reads raw replies."""

    def __init__(self, d: Daemon):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"ipc://{d.inst.socket}")

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout_ms: int = REPLY_TIMEOUT_MS) -> list[bytes] | None:
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        return self.sock.recv_multipart()

    def request(self, message: Any) -> dict[str, Any]:
        """Send one msgpack frame; the decoded reply map (raw, not through the protocol's decoder)."""
        self.send([msgpack.packb(message, use_bin_type=True)])
        frames = self.recv()
        assert frames is not None and len(frames) == 1, frames
        return msgpack.unpackb(frames[0], raw=False)

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assert_answers_status(d: Daemon) -> None:
    assert d.alive, f"the daemon died:\n{d.log_tail()}"
    with d.client(timeout=5.0, retries=0) as c:
        assert c.status()["state"] == "running"


def test_socket_and_directory_permissions(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    assert stat.S_IMODE(inst.socket.parent.stat().st_mode) == 0o750
    assert stat.S_ISSOCK(inst.socket.stat().st_mode)
    assert stat.S_IMODE(inst.socket.stat().st_mode) == 0o660
    d.stop()
    assert not inst.socket.exists()  # removed at a clean stop


def test_a_second_daemon_refuses_to_start(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()

    def second(config) -> str:
        p = subprocess.run([str(BACKUPD), "run", "-c", str(config)], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0, p
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stdout.strip() == "" or "daemon_ready" not in p.stdout, p.stdout
        return lines[0]

    same = second(inst.config)
    assert f"another backupd daemon (pid {d.proc.pid})" in same and str(inst.state) in same, same

    # Another state dir, the same control socket.
    other = installation(demo="small")
    other.control = {}
    text = other.config_text().replace('socket = "run/ctl.sock"', f'socket = "{inst.socket}"')
    other.config.write_text(text)
    shared_socket = second(other.config)
    assert f"another backupd daemon (pid {d.proc.pid})" in shared_socket and "control socket" in shared_socket
    assert str(inst.socket) in shared_socket

    # The same state dir, another socket.
    third = installation(demo="small")
    text = third.config_text().replace('dir = "state"', f'dir = "{inst.state}"')
    third.config.write_text(text)
    shared_state = second(third.config)
    assert "state dir" in shared_state and str(inst.state) in shared_state

    assert inst.socket.exists()  # the refused daemons left the running one's socket alone
    assert_answers_status(d)
    d.stop()


def test_protocol_errors_get_error_replies(installation, daemon_for):
    inst = installation(demo="small")
    inst.control = {"max_message_bytes": "64KiB"}
    inst.write_config()
    d = daemon_for(inst).start()
    with Raw(d) as raw:
        unknown = raw.request({"v": 1, "id": "r1", "op": "no.such.op", "args": {}})
        assert unknown["ok"] is False and unknown["id"] == "r1" and unknown["error"]["code"] == "unknown_op"
        version = raw.request({"v": 2, "id": "r2", "op": "status", "args": {}})
        assert version["id"] == "r2" and version["error"]["code"] == "unsupported_protocol_version"
        assert version["error"]["details"]["supported"] == [1]
        bad_args = raw.request({"v": 1, "id": "r3", "op": "job.get", "args": {"job_id": 7}})
        assert bad_args["error"]["code"] == "bad_request" and bad_args["id"] == "r3"
        not_map = raw.request([1, 2, 3])
        assert not_map["ok"] is False and not_map["id"] is None and not_map["error"]["code"] == "bad_request"
        raw.send([b"\xc1"])  # never valid msgpack
        assert decode_reply(raw.recv()[0]).error.code == "bad_request"
        raw.send([b"a", b"b", b"c"])
        assert decode_reply(raw.recv()[0]).error.code == "bad_request"
        good = raw.request({"v": 1, "id": "r4", "op": "status", "args": {}})
        assert good["ok"] is True and good["result"]["state"] == "running"

    # Bigger than max_message_bytes: the transport drops it (and the connection); the daemon lives on.
    with Raw(d) as raw:
        raw.send([encode_request("big", Op.JOB_GET, {"job_id": "x" * (200 * 1024)})])
        assert raw.recv(timeout_ms=1000) is None
    with Raw(d) as raw:
        raw.send([b"\x00" * (1 << 20)])
        assert raw.recv(timeout_ms=500) is None
    assert_answers_status(d)
    with Raw(d) as raw:  # just under the limit is answered
        reply = raw.request({"v": 1, "id": "r5", "op": "job.get", "args": {"job_id": "x" * (60 * 1024)}})
        assert reply["error"]["code"] == "bad_request" or reply["error"]["code"] == "not_found"
    assert not d.events("control_loop_error") and not d.events("control_handler_error")
    d.stop()


# --- fuzzing ----------------------------------------------------------------------------------------

OPS = [op.value for op in Op]
interesting = st.sampled_from(["demo", "nope", "", "/nonexistent-dir/x.db", "auto", "full", "high", "quick",
                               "2024-01-01T00:00:00Z", "not a time", "0 3 * * *", "status", "x" * 70])
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.binary(max_size=20) | interesting)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | interesting, children, max_size=4), max_leaves=12)
ids = st.text(min_size=1, max_size=64) | st.just("") | st.text(min_size=65, max_size=70) | values


def typed(types: tuple[type, ...]) -> st.SearchStrategy[Any]:
    """Values of the type an argument takes (so that requests get past the envelope checks)."""
    if bool in types:
        return st.booleans()
    if str in types:
        return interesting | st.text(max_size=20)
    if int in types or float in types:
        return st.integers(-5, 10**6) | st.floats(-1, 1e7)
    if list in types:
        return st.lists(interesting | st.text(max_size=8), max_size=3)
    keys = st.sampled_from(["max_attempts", "base_delay", "blackout", "max_cpu_percent", "start"]) | st.text(max_size=8)
    return st.dictionaries(keys, values, max_size=3)


@st.composite
def valid_envelopes(draw) -> dict[str, Any]:
    """A well-formed request for any op, its arguments drawn at random: known names with values of
    the right type (mostly) or of any type, sometimes unknown names."""
    op = draw(st.sampled_from(list(Op)))
    args: dict[str, Any] = {}
    for name, (required, types) in OP_ARGS[op].fields.items():
        if draw(st.integers(0, 9)) < (9 if required else 5):
            args[name] = draw(typed(types) if draw(st.integers(0, 4)) else values)
    args.update(draw(st.dictionaries(st.text(max_size=8), values, max_size=1 if draw(st.booleans()) else 0)))
    return {"v": 1, "id": uuid.uuid4().hex, "op": op.value, "args": args}


envelope_fields = st.fixed_dictionaries({}, optional={
    "v": st.just(1) | values, "id": ids, "op": st.sampled_from(OPS) | values, "args": values})
maps = st.one_of(
    envelope_fields,
    st.dictionaries(st.text(max_size=8) | st.sampled_from(["v", "id", "op", "args"]), values, max_size=6),
    st.builds(lambda env, extra: {**env, **extra}, envelope_fields, st.dictionaries(st.text(max_size=5), values, max_size=2)),
)
messages = st.one_of(
    st.lists(st.binary(max_size=300), min_size=0, max_size=4).map(lambda frames: ("frames", frames)),
    maps.map(lambda m: ("map", m)),
    valid_envelopes().map(lambda m: ("map", m)),
    st.lists(valid_envelopes(), min_size=1, max_size=3).map(lambda ms: ("burst", ms)),
)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_fuzz_the_control_socket(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    status = d.client(timeout=5.0, retries=0)
    seen_codes: set[str] = set()

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(message=messages)
    @example(message=("map", {"v": 1, "id": "e1", "op": "no.such.op", "args": {}}))
    @example(message=("map", {"v": 7, "id": "e2", "op": "status", "args": {}}))
    @example(message=("map", {"v": 1, "id": "e3", "op": "job.cancel", "args": {"job_id": "j-none"}}))
    @example(message=("burst", [  # the success paths too, in one burst: answered in order
        {"v": 1, "id": "s1", "op": "schedule.add", "args": {"name": "fz", "source": "demo", "cron": "0 3 * * *"}},
        {"v": 1, "id": "s2", "op": "schedule.add", "args": {"name": "fz", "source": "demo", "cron": "0 3 * * *"}},
        {"v": 1, "id": "s3", "op": "schedule.pause", "args": {"name": "fz"}},
    ]))
    @example(message=("burst", [
        {"v": 1, "id": "s4", "op": "schedule.remove", "args": {"name": "fz"}},
        {"v": 1, "id": "s5", "op": "backup.create", "args": {"source": "demo", "strategy": "full"}},
        {"v": 1, "id": "s6", "op": "config.reload", "args": {}},
    ]))
    @example(message=("burst", [
        {"v": 1, "id": "s7", "op": "restore.create",
         "args": {"source": "demo", "at": "2024-01-01T00:00:00Z", "to": "/nonexistent-dir/x.db"}},
        {"v": 1, "id": "s8", "op": "prune", "args": {"dry_run": True}},
        {"v": 1, "id": "s9", "op": "destination.health", "args": {}},
    ]))
    @example(message=("frames", [b"", b"\x80"]))
    @example(message=("frames", [b""]))
    def fuzz(message):
        kind, payload = message
        with Raw(d) as raw:
            if kind == "frames":
                frames = payload
            elif kind == "map":
                frames = [_pack(payload)]
            else:
                frames = None
                for m in payload:
                    raw.send([_pack(m)])
            if frames is not None and frames:
                raw.send(frames)
            expected = len(payload) if kind == "burst" else (1 if frames else 0)
            for i in range(expected):
                got = raw.recv()
                assert got is not None, f"no reply to {message!r}"
                assert len(got) == 1, got
                reply = decode_reply(got[0])  # a well-formed reply, whatever was sent
                if kind == "burst":  # answered in order; the id is nil only when the frame was unreadable
                    assert reply.id == payload[i]["id"] or (reply.id is None and not reply.ok), (payload, reply)
                if not reply.ok:
                    seen_codes.add(reply.error.code)
                    assert reply.error.code != "internal_error", (message, reply)
        assert d.alive, f"the daemon died on {message!r}:\n{d.log_tail()}"
        assert status.status()["state"] == "running"

    fuzz()
    assert {"bad_request", "unknown_op", "unsupported_protocol_version", "not_found", "conflict"} <= seen_codes, \
        seen_codes
    assert d.events("job_queued") and d.events("schedule_added") and d.events("config_reloaded")
    assert_answers_status(d)
    assert not d.events("control_loop_error"), d.events("control_loop_error")
    assert not d.events("control_handler_error"), d.events("control_handler_error")
    d.stop()
