"""The event stream on a real daemon: `backupctl events --follow` sees a backup's events in order while
a subscriber that never reads overflows its own queue and slows nothing (status latency); a failing
backup publishes `backup.failed` with its error."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import zmq
from backupd_client.protocol import EVENT_EVENT, Op, decode_reply, encode_request

from .harness import BACKUPCTL, wait_for


def _frames(sock: zmq.Socket, count: int, timeout_s: float = 10.0) -> list:
    out = []
    while len(out) < count and sock.poll(int(timeout_s * 1000)):
        out.append(decode_reply(sock.recv()))
    return out


def test_follow_sees_a_backup_in_order_while_a_stalled_subscriber_blocks_nothing(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    client = d.client()

    # a subscriber that reads nothing: one event per slice, a queue of one
    ctx = zmq.Context.instance()
    stalled = ctx.socket(zmq.DEALER)
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.connect(f"ipc://{inst.socket}")
    stalled.send(encode_request("stalled", Op.EVENTS_SUBSCRIBE, {"queue_size": 1, "max_events": 1}))

    follower = subprocess.Popen([str(BACKUPCTL), "--socket", str(inst.socket), "--json", "events", "--follow",
                                 "--type", "backup.*", "--source", "demo"], stdout=subprocess.PIPE, text=True)
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in follower.stdout), daemon=True)
    reader.start()
    try:
        time.sleep(1.0)  # both subscribed (the follower would also see them in its history)
        jobs, latencies = [], []
        for _ in range(3):
            job = client.backup_create("demo")
            for _ in range(50):
                started = time.perf_counter()
                client.status()
                latencies.append(time.perf_counter() - started)
            jobs.append(client.job_wait(job["job_id"], timeout_s=60))
        assert [j["status"] for j in jobs] == ["completed"] * 3
        latencies.sort()
        assert latencies[int(len(latencies) * 0.99) - 1] < 0.2, latencies[-5:]

        want = [(t, j["job_id"]) for j in jobs for t in ("backup.started", "backup.succeeded")]
        wait_for(lambda: [(e["type"], e["job_id"]) for e in lines] == want, 20)
        done = lines[1]
        assert done["source"] == "demo" and done["backup_id"] == jobs[0]["result"]["id"]
        assert done["destinations"] == ["local"] and done["bytes"] > 0 and done["error_code"] is None
        assert all(e["dropped"] == 0 for e in lines)
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    assert lines[-1]["type"] == "backup.succeeded"  # nothing after, nothing twice

    # the stalled one got one event, then its queue (of one) overflowed: told so when it asks again
    first, reply = _frames(stalled, 2)
    assert first.event == EVENT_EVENT and first.data["event"]["type"] == "backup.started" and first.data["dropped"] == 0
    assert reply.ok and reply.result["delivered"] == 1 and reply.result["dropped_total"] == 0  # sent at once
    stalled.send(encode_request("resumed", Op.EVENTS_SUBSCRIBE, {"subscription": reply.result["subscription"],
                                                                  "timeout_s": 0.5}))
    (event, end) = _frames(stalled, 2)
    assert event.data["event"]["type"] == "backup.succeeded" and event.data["dropped"] == 4
    assert event.data["event"]["job_id"] == jobs[0]["job_id"]
    assert end.ok and end.result == {"subscription": reply.result["subscription"], "delivered": 1, "dropped": 0,
                                     "dropped_total": 4}
    stalled.close()


def test_a_failing_backup_publishes_backup_failed_with_its_error(installation, daemon_for):
    inst = installation(demo="small")
    (inst.root / "garbage.db").write_bytes(b"this is not an SQLite database\n" * 200)
    inst.sources["junk"] = "garbage.db"
    inst.write_config()
    d = daemon_for(inst).start()
    failed = d.ctl("backup", "--source", "junk", "--wait")
    assert failed.returncode == 1, failed

    events = d.ctl_json("events", "--type", "*.failed")
    assert [e["type"] for e in events] == ["backup.failed"], events
    (e,) = events
    job = d.client().job_get(e["job_id"])
    assert e["source"] == "junk" and e["error_code"] == job["error"]["code"] and e["error_code"]
    assert e["message"] == job["error"]["message"] and e["id"].startswith(job["job_id"])
    assert e["log_tail"][-1] == f"error {e['error_code']}: {e['message']}"
    assert any(line.startswith("error backup_failed ") for line in e["log_tail"]), e["log_tail"]  # the worker's log
    assert job["log_tail"] and job["log_tail"] == [x for x in e["log_tail"] if x in job["log_tail"]]
    assert d.ctl_json("events", "--type", "backup.*", "--source", "junk") == \
        [{**s, "dropped": 0} for s in d.ctl_json("events", "--source", "junk")]
    assert [x["type"] for x in d.ctl_json("events", "--source", "junk")] == ["backup.started", "backup.failed"]
    logged = d.wait_event("event_published", type="backup.failed")
    assert logged["job_id"] == e["job_id"] and logged["error_code"] == e["error_code"]
    human = d.ctl("events", "--source", "junk")
    assert human.returncode == 0 and "backup.failed" in human.stdout and e["error_code"] in human.stdout
    bad = d.ctl("events", "--type", "backup.exploded")
    assert bad.returncode == 2 and "matches no event type" in bad.stderr


def test_a_destination_going_bad_and_back_is_one_event_each_way(installation, daemon_for):
    inst = installation(demo="small", daemon={"health_interval": "0.2s"},
                        control={"allow_unencrypted_destinations": True})
    blocker = inst.root / "nas"
    blocker.write_text("not a directory")
    d = daemon_for(inst).start()
    c = d.client()
    c.destination_add({"name": "nas", "kind": "local", "path": str(blocker / "backupd")})
    d.wait_event("destination_unhealthy", destination="nas")
    time.sleep(1.0)  # more failing probes: still one event
    blocker.unlink()
    d.wait_event("destination_recovered", destination="nas", was="unhealthy")
    events = d.ctl_json("events", "--type", "destination.*")
    assert [(e["type"], e["destinations"]) for e in events] == [("destination.unhealthy", ["nas"]),
                                                                ("destination.recovered", ["nas"])], events
    assert events[0]["message"] and events[1]["details"]["was"] == "unhealthy"
