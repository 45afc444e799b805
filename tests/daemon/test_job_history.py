"""The daemon's job history is pruned: finished jobs older than `[daemon] job_history_days` go, newer
ones and unfinished ones stay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backupd.daemon.store import DaemonStore


def _job(job_id: str, age_days: float, status: str = "completed") -> dict:
    at = (datetime.now(timezone.utc) - timedelta(days=age_days)).isoformat()
    return {"job_id": job_id, "kind": "backup", "source": "demo", "schedule": None, "status": status,
            "created_at": at, "started_at": at, "finished_at": at if status != "queued" else None}


def test_finished_jobs_older_than_job_history_days_are_pruned(installation, daemon_for):
    inst = installation(demo="small", daemon={"job_history_days": 30})
    inst.state.mkdir(parents=True, exist_ok=True)
    store = DaemonStore(inst.state / "catalog.db")
    for job in (_job("j-old", 200), _job("j-old-failed", 31, "failed"), _job("j-recent", 10)):
        store.save_job(job)
    store.close()
    d = daemon_for(inst).start()
    pruned = d.wait_event("job_history_pruned", timeout=10)
    assert (pruned["removed"], pruned["days"]) == (2, 30)
    c = d.client()
    assert [j["job_id"] for j in c.job_list(source="demo")] == ["j-recent"]
    done = c.job_wait(c.backup_create("demo")["job_id"], timeout_s=60)
    assert done["status"] == "completed"
    assert {j["job_id"] for j in c.job_list(source="demo")} == {"j-recent", done["job_id"]}
    d.stop()
