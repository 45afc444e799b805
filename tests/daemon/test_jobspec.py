"""The job specs: their defaults, their wire form (the job's `args`, as the daemon has always sent
them), their round trip through the wire and through pickle (the forkserver), and the values they
refuse."""

from __future__ import annotations

import dataclasses
import pickle
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from backupd_client.protocol import JOB_KINDS

from backupd.core.vocab import CopySelection, RequestedStrategy, ValidationLevel
from backupd.daemon.jobs import Job
from backupd.daemon.jobspec import BackupJob, JobSpec, PruneJob, RestoreJob, ResyncJob, ValidateJob
from backupd.engine.copy_choice import CopyChoice
from backupd.errors import UsageError

SPECS: list[JobSpec] = [
    BackupJob("app"),
    BackupJob("app", strategy="full", tags=("a", "b"), description="before the upgrade", destinations=("nas",),
              metadata={"ticket": "OPS-1"}, validate_level="deep"),
    BackupJob("app", destinations=()),
    RestoreJob("app", "/srv/r.db", backup_id="b1"),
    RestoreJob("app", "/srv/r.db", at="2026-11-26T14:30:00+01:00", tables=("t1",), overwrite=True,
               copy_selection="most_reliable"),
    ValidateJob("app", "b1", "quick"),
    ValidateJob("app", "b1", "deep", destination="nas", sample_percent=12.5),
    ValidateJob("app", "b1", "standard", all_copies=True),
    PruneJob("app"),
    ResyncJob("app"),
]


def test_every_job_kind_of_the_protocol_has_one_spec():
    assert sorted(c.kind for c in (BackupJob, RestoreJob, ValidateJob, PruneJob, ResyncJob)) == sorted(JOB_KINDS)


def test_a_control_request_gets_the_args_the_daemon_always_built():
    request = {"source": "app", "priority": "high"}
    assert BackupJob.from_args("app", request).to_wire() == {
        "strategy": "auto", "tags": [], "description": "", "destinations": None, "metadata": {},
        "validate_level": None}  # fmt: skip
    request = {"source": "app", "strategy": "full", "tags": ["x"], "description": "d", "destinations": ["nas"],
               "metadata": {"k": "v"}, "validate_level": "quick"}
    assert BackupJob.from_args("app", request).to_wire() == {k: v for k, v in request.items() if k != "source"}
    request = {"source": "app", "backup_id": "b1", "to": "/srv/r.db", "overwrite": False,
               "copy_selection": "most_reliable"}  # what backupctl restore sends
    assert RestoreJob.from_args("app", request).to_wire() == {
        "backup_id": "b1", "at": None, "to": "/srv/r.db", "tables": None, "overwrite": False,
        "copy_selection": "most_reliable"}  # fmt: skip
    assert ValidateJob.from_args("app", {"backup_id": "b1", "level": "standard"}).to_wire() == {
        "backup_id": "b1", "level": "standard", "destination": None, "all_copies": False, "sample_percent": None}
    assert PruneJob("app").to_wire() == {} and ResyncJob("app").to_wire() == {}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{type(s).kind}")
def test_a_spec_survives_the_wire_and_pickle(spec: JobSpec):
    assert type(spec).from_args(spec.source, spec.to_wire()) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.source = "other"  # type: ignore[misc]


def test_lists_from_the_wire_become_tuples():
    spec = BackupJob.from_args("app", {"tags": ["a"], "destinations": ["nas", "usb"]})
    assert spec.tags == ("a",) and spec.destinations == ("nas", "usb")
    assert RestoreJob.from_args("app", {"to": "/r.db", "at": "2026-01-01", "tables": ["t"]}).tables == ("t",)


def test_words_from_the_wire_become_vocabulary_members():
    backup = BackupJob.from_args("app", {"strategy": "full", "validate_level": "deep"})
    assert type(backup.strategy) is RequestedStrategy and type(backup.validate_level) is ValidationLevel
    assert BackupJob("app").validate_level is None
    restore = RestoreJob("app", "/r.db", backup_id="b1", copy_selection="most_reliable")
    assert type(restore.copy_selection) is CopySelection
    assert type(ValidateJob("app", "b1", "quick").level) is ValidationLevel
    assert backup.to_wire()["strategy"] == "full" and pickle.loads(pickle.dumps(backup)) == backup


def test_a_job_on_the_wire_takes_its_kind_source_and_args_from_its_spec():
    spec = ValidateJob("app", "b1", "deep", destination="nas")
    wire = Job("j1", spec, datetime(2026, 1, 1, tzinfo=timezone.utc)).to_wire()
    assert (wire["kind"], wire["source"], wire["args"]) == ("validate", "app", spec.to_wire())
    assert spec.choice == CopyChoice("nas", False, None)


@pytest.mark.parametrize("build, says", [
    (lambda: BackupJob("app", strategy="weekly"), "strategy must be one of"),
    (lambda: BackupJob("app", validate_level="thorough"), "validate_level must be one of"),
    (lambda: BackupJob("app", metadata={"1bad": "x"}), "metadata: key"),
    (lambda: RestoreJob("app", "/r.db"), "a backup id or an instant"),
    (lambda: RestoreJob("app", "/r.db", backup_id="b1", at="2026-01-01"), "a backup id or an instant"),
    (lambda: RestoreJob("app", "/r.db", backup_id="b1", copy_selection="fastest"), "copy_selection must be"),
    (lambda: ValidateJob("app", "b1", "thorough"), "level must be one of"),
    (lambda: ValidateJob("app", "b1", "quick", sample_percent=10), "--sample needs level standard or deep"),
    (lambda: ValidateJob("app", "b1", "deep", destination="nas", all_copies=True), "not both"),
    (lambda: ValidateJob("app", "b1", "deep", sample_percent=0), "--sample"),
])  # fmt: skip
def test_a_bad_value_is_refused_when_the_spec_is_built(build, says):
    with pytest.raises(UsageError) as caught:
        build()
    assert says in str(caught.value) and caught.value.code == "bad_usage"


def test_the_protocol_document_lists_the_args_of_every_kind():
    text = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    listed = text[text.index("A job's `args` by kind:"):].split("\n\n")[0]
    for cls in (BackupJob, RestoreJob, ValidateJob):
        found = re.search(rf"{cls.kind} `\{{([^}}]*)\}}`", listed)
        assert found, f"docs/PROTOCOL.md lists no args for {cls.kind}"
        assert set(re.findall(r'"(\w+)"', found.group(1))) == {f.name for f in dataclasses.fields(cls)} - {"source"}
    assert "prune and resync `{}`" in listed
    assert [f.name for f in dataclasses.fields(PruneJob)] == [f.name for f in dataclasses.fields(ResyncJob)] == ["source"]
