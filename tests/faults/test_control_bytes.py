"""The control socket attacked at the byte level and by descriptor exhaustion, against the real daemon:
valid request frames with random bytes flipped, inserted, deleted or cut off; random frames; raw bytes
written to the unix socket below ZeroMQ (garbage greetings, a greeting cut short, a peer that vanishes
mid-handshake); waves of idle connections several times the daemon's descriptor limit.

Every trial: every frame that reaches the daemon gets one well-formed reply that is not `internal_error`;
the daemon never dies and answers `status` afterwards.
"""

from __future__ import annotations

import random
import socket

from backupd_client.protocol import decode_reply, encode_request

from tests.daemon.conftest import daemon_for, installation, templates  # noqa: F401 (fixtures)
from tests.daemon.test_control import Raw, assert_answers_status

from .conftest import trials

SAFE_REQUESTS = [  # ops that read, or change nothing outside the throwaway installation
    ("status", {}), ("health", {}), ("job.list", {"limit": 5}), ("schedule.list", {}), ("destination.list", {}),
    ("restore.points", {"source": "demo"}), ("prune", {"dry_run": True}), ("job.get", {"job_id": "j-none"}),
    ("schedule.stats", {}), ("schedule.add", {"name": "fz", "source": "demo", "cron": "0 3 * * *"}),
    ("schedule.remove", {"name": "fz"}),
]
ZMTP_GREETING = b"\xff" + b"\0" * 8 + b"\x7f\x03\x00NULL" + b"\0" * 16 + b"\0" + b"\0" * 31


def mutate(frame: bytes, rnd: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(1 if rnd.random() < 0.5 else rnd.randint(2, 4)):
        how = rnd.randrange(4) if rnd.random() < 0.5 else 0
        at = rnd.randrange(len(data) + 1)
        if how == 0 and data:
            data[min(at, len(data) - 1)] ^= rnd.randint(1, 255)
        elif how == 1:
            data[at:at] = rnd.randbytes(rnd.randint(1, 8))
        elif how == 2:
            del data[at : at + rnd.randint(1, 8)]
        else:
            del data[at:]
    return bytes(data)


def raw_socket_attack(path: str, rnd: random.Random) -> str:
    """Bytes straight onto the unix socket, under ZeroMQ's framing."""
    kind = rnd.choice(["garbage", "short greeting", "greeting then garbage", "connect and vanish"])
    payload = {"garbage": rnd.randbytes(rnd.randint(1, 512)),
               "short greeting": ZMTP_GREETING[: rnd.randint(1, len(ZMTP_GREETING) - 1)],
               "greeting then garbage": ZMTP_GREETING + rnd.randbytes(rnd.randint(1, 256)),
               "connect and vanish": b""}[kind]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(path)
        try:
            s.sendall(payload)
        except OSError:
            pass  # the daemon may drop a bad peer at once: that is the point
    return f"raw socket: {kind}"


def test_control_socket_byte_fuzz(installation, daemon_for, tally):  # noqa: F811
    rnd = random.Random(8)
    d = daemon_for(installation(demo="small")).start()
    for n in range(trials(ci=150, long=3000)):
        try:
            if n % 3 == 2:
                outcome = raw_socket_attack(str(d.inst.socket), rnd)
            else:
                op, args = rnd.choice(SAFE_REQUESTS)
                frames = [mutate(encode_request(f"fz{n}", op, args), rnd)]
                if rnd.random() < 0.2:
                    frames.append(rnd.randbytes(rnd.randint(0, 40)))
                with Raw(d) as raw:
                    raw.send(frames)
                    got = raw.recv()
                assert got is not None and len(got) == 1, f"no single reply to a mutated {op} ({got!r})"
                reply = decode_reply(got[0])
                assert reply.ok or reply.error.code != "internal_error", f"internal_error for a mutated {op}"
                outcome = f"mutated frame: {'answered ok' if reply.ok else reply.error.code}"
            assert d.alive, f"the daemon died:\n{d.log_tail()}"
            tally.trial(outcome)
        except AssertionError as e:
            tally.fail(str(e).splitlines()[0])
    assert_answers_status(d)
    assert not d.events("control_loop_error") and not d.events("control_handler_error")
    d.stop()


def test_descriptor_exhaustion_waves(installation, daemon_for, tally):  # noqa: F811
    """Waves of idle connections, each several times the daemon's descriptor limit, some unpaced; after each
    wave the same daemon process answers `status`."""
    from tests.daemon.test_descriptors import open_connections

    rnd = random.Random(12)
    d = daemon_for(installation(demo="small"), nofile=256).start()
    pid = d.proc.pid
    for _ in range(trials(ci=3, long=20)):
        n = rnd.choice([600, 1000, 2000])
        try:
            attack = open_connections(str(d.inst.socket), n)
            try:
                assert len(attack) == n, f"the daemon stopped accepting after {len(attack)} of {n}"
                assert d.alive and d.proc.pid == pid, f"the daemon died under {n} connections:\n{d.log_tail()}"
            finally:
                for s in attack:
                    s.close()
            with d.client(timeout=5.0, retries=3) as c:
                assert c.status()["state"] == "running"
            tally.trial(f"{n} idle connections: survived, answered status")
        except AssertionError as e:
            tally.fail(str(e).splitlines()[0])
    assert "Too many open files" not in d.stderr_path().read_text()
    d.stop()
