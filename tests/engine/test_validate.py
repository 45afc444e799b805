"""validate_backup on healthy chains: every level passes, the report has its documented shape, custom
SQL rules count by their severity, verified copies are recorded, and `backupd verify` exits 0 or 1."""

from __future__ import annotations

import json
import sqlite3

import pytest
from structlog.testing import capture_logs

from backupd.core import validation_report as R
from backupd.engine.rules import run_check
from backupd.engine.validate import validate_backup
from backupd.errors import CorruptArtifact, NotFound, UsageError

QUICK = {"chain_complete", "source_unflagged", "sidecar_intact", "artifact_header", "artifact_size", "artifact_checksum"}
STANDARD = QUICK | {"blocks_authentic", "manifest_matches_sidecar", "page_numbers_in_range"}
DEEP = STANDARD | {"restore_completes", "integrity_check", "foreign_key_check", "schema_hash", "row_counts"}
PER_MEMBER = STANDARD - {"chain_complete", "source_unflagged"}
EXPECTED = {"quick": QUICK, "standard": STANDARD, "deep": DEEP}


def validate(env, backup_id: str, level: str):
    with env.context() as ctx:
        return validate_backup(ctx, backup_id, level)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("level", ["quick", "standard", "deep"])
def test_healthy_chain_passes_every_check(validation_chain, encrypted, level):
    env = validation_chain(encrypted)
    target = env.chain[-1]
    report = validate(env, target, level)

    assert report.verdict == "pass", [c.to_json() for c in report.checks if c.status != "pass"]
    assert all(c.status == "pass" for c in report.checks)
    assert {c.rule.id for c in report.checks} == EXPECTED[level]
    assert list(report.chain) == env.chain
    assert report.source == "kb" and report.level == level and report.recommendations == []
    for rule_id in PER_MEMBER & EXPECTED[level]:  # every member of the chain is checked
        assert [c.details["backup_id"] for c in report.check(rule_id)] == env.chain
    if encrypted:
        assert all(c.details["encrypted"] for c in report.check("artifact_header"))


def test_a_full_backup_alone_is_a_chain_of_one(validation_chain):
    env = validation_chain()
    report = validate(env, env.chain[0], "deep")
    assert report.verdict == "pass" and list(report.chain) == env.chain[:1]


def test_levels_are_cumulative():
    builtin = {r.id: r for r in R.BUILTIN_RULES}
    for level, expected in EXPECTED.items():
        assert {i for i, r in builtin.items() if r.runs_at(level)} == expected
    assert all(r.id.islower() and " " not in r.id for r in R.BUILTIN_RULES)


def test_verification_is_recorded_for_every_member_copy(validation_chain):
    env = validation_chain()
    with env.context() as ctx:
        assert all(c.verified_at is None for b in ctx.catalog.backups() for c in b.copies)
        validate_backup(ctx, env.chain[-1], "quick")
        assert all(c.verified_at is None for b in ctx.catalog.backups() for c in b.copies), "quick verifies nothing"
        validate_backup(ctx, env.chain[1], "standard")
        verified = {b.backup_id for b in ctx.catalog.backups() for c in b.copies if c.verified_at}
    assert verified == set(env.chain[:2])


def test_failed_verification_records_nothing(validation_chain):
    env = validation_chain()
    env.flip(env.artifact(env.chain[0]), 100)
    with env.context() as ctx:
        assert validate_backup(ctx, env.chain[-1], "standard").verdict == "fail"
        assert all(c.verified_at is None for b in ctx.catalog.backups() for c in b.copies)


def test_one_canonical_log_event(validation_chain):
    env = validation_chain()
    with capture_logs() as logs:
        validate(env, env.chain[-1], "standard")
    done = [e for e in logs if e["event"] == "validation_completed"]
    assert len(done) == 1
    assert done[0]["backup_id"] == env.chain[-1] and done[0]["validation_level"] == "standard"
    assert done[0]["verdict"] == "pass" and done[0]["failed"] == [] and done[0]["duration_s"] >= 0


def test_the_logged_event_keeps_its_validation_level_apart_from_the_log_level(validation_chain):
    """Issue 8 item 10: the field `level` was overwritten by structlog's log level ("info")."""
    env = validation_chain()
    proc = env.cli("-v", "verify", "-c", str(env.config_path), "--backup", env.chain[-1], "--level", "deep")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    done = [e for e in events if e.get("event") == "validation_completed"]
    assert len(done) == 1 and done[0]["validation_level"] == "deep" and done[0]["level"] == "info"


def test_catalog_lost_validation_reads_the_destination(validation_chain):
    env = validation_chain(True)
    env.forget_catalog()
    report = validate(env, env.chain[-1], "deep")
    assert report.verdict == "pass" and list(report.chain) == env.chain


def test_unknown_backup_id_is_not_found(validation_chain):
    env = validation_chain()
    with env.context() as ctx:
        with pytest.raises(NotFound):
            validate_backup(ctx, "20200101T000000.000000Z-abcdef", "quick")
        with pytest.raises(UsageError):
            validate_backup(ctx, env.chain[0], "thorough")
        with pytest.raises(UsageError):
            validate_backup(ctx, "not-an-id", "quick")


# -- custom SQL rules ------------------------------------------------------------------------------
def _rule(id, sql, severity="error", **extra):
    return {"id": id, "sql": sql, "severity": severity, **extra}


def test_custom_rules_pass_and_fail_by_severity(validation_chain):
    env = validation_chain()
    env.write_config(rules=[
        _rule("has_entries", "SELECT count(*) >= 1 FROM kb_entries", description="the knowledge base is not empty"),
        _rule("links_point_somewhere", "SELECT count(*) = 0 FROM kb_links WHERE entry_id NOT IN (SELECT id FROM kb_entries)",
              "critical", sources=["kb"]),
        _rule("other_source_only", "SELECT 0", sources=["crm"]),
    ])
    report = validate(env, env.chain[-1], "deep")
    assert report.verdict == "pass"
    assert [c.rule.id for c in report.checks if c.rule.id.startswith("sql:")] == ["sql:has_entries",
                                                                                  "sql:links_point_somewhere"]
    has = report.check("sql:has_entries")[0]
    assert has.status == "pass" and has.rule.severity == "error" and "not empty" in has.message
    assert report.check("sql:links_point_somewhere")[0].rule.severity == "critical"


def test_failing_error_rule_fails_the_verdict(validation_chain):
    env = validation_chain()
    env.write_config(rules=[_rule("huge", "SELECT count(*) > 1000000 FROM kb_entries", description="a million")])
    report = validate(env, env.chain[-1], "deep")
    check = report.check("sql:huge")[0]
    assert report.verdict == "fail" and check.status == "fail"
    assert "does not hold" in check.message and check.details["value"] == 0
    assert any("huge" in r for r in report.recommendations)
    assert report.failed == ["sql:huge"]


def test_failing_warning_rule_only_warns(validation_chain):
    env = validation_chain()
    env.write_config(rules=[_rule("no_zero_rows", "SELECT count(*) = 0 FROM kb_entries WHERE length(body) < 100",
                                  "warning")])
    report = validate(env, env.chain[-1], "deep")
    assert report.check("sql:no_zero_rows")[0].status == "fail"
    assert report.verdict == "warn"


@pytest.mark.parametrize("sql, needle", [
    ("SELECT count(*) FROM no_such_table", "no such table"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("DELETE FROM kb_entries", "readonly"),
    ("SELECT 1 WHERE 0", "no row"),
])
def test_sql_errors_are_failed_checks(validation_chain, sql, needle):
    env = validation_chain()
    env.write_config(rules=[_rule("broken", sql)])
    report = validate(env, env.chain[-1], "deep")
    check = report.check("sql:broken")[0]
    assert check.status == "fail" and needle in check.message.lower() and report.verdict == "fail"
    assert report.check("row_counts")[0].status == "pass", "a rule that tries to write changes nothing"


def test_custom_rules_only_run_at_deep_level(validation_chain):
    env = validation_chain()
    env.write_config(rules=[_rule("never", "SELECT 0")])
    assert validate(env, env.chain[-1], "standard").verdict == "pass"


def test_foreign_key_violations_warn(validation_env):
    env = validation_env(rows=50)
    conn = sqlite3.connect(env.db)  # foreign keys are not enforced by default: the app let this in
    conn.execute("INSERT INTO kb_links (entry_id) VALUES (999999)")
    conn.commit()
    conn.close()
    backup_id = env.backup("full")
    report = validate(env, backup_id, "deep")
    check = report.check("foreign_key_check")[0]
    assert check.status == "fail" and check.details["violation_count"] == 1 and "kb_links" in check.message
    assert report.verdict == "warn"


# -- the rule engine -------------------------------------------------------------------------------
def test_verdict_follows_the_most_severe_failure():
    def result(severity, status):
        return R.CheckResult(R.Rule(f"r_{severity}", severity, "quick", ""), status, "", 0.0)

    assert R.verdict_of([]) == "pass"
    assert R.verdict_of([result("critical", "pass"), result("info", "fail")]) == "pass"
    assert R.verdict_of([result("warning", "fail"), result("error", "skip")]) == "warn"
    assert R.verdict_of([result("warning", "fail"), result("error", "fail")]) == "fail"
    assert R.verdict_of([result("critical", "fail")]) == "fail"
    with pytest.raises(ValueError):
        R.Rule("x", "fatal", "quick", "")


def test_run_check_times_and_turns_errors_into_failures():
    rule = R.Rule("demo", "error", "quick", "")
    ok = run_check(rule, lambda: R.Outcome.ok("fine", n=1), where={"backup_id": "b"})
    assert ok.status == "pass" and ok.details == {"backup_id": "b", "n": 1} and ok.duration_ms >= 0

    def boom():
        raise CorruptArtifact("block 3 checksum mismatch", hint="re-run", details={"block": 3})

    bad = run_check(rule, boom, where={"backup_id": "b"}, prefix="backup b (x on y)")
    assert bad.status == "fail" and bad.message == "backup b (x on y): block 3 checksum mismatch"
    assert bad.details == {"backup_id": "b", "code": "corrupt_artifact", "block": 3, "hint": "re-run"}
    assert bad.recommendation == "re-run"
    crashed = run_check(rule, lambda: 1 / 0)
    assert crashed.status == "fail" and "ZeroDivisionError" in crashed.message


# -- the CLI -----------------------------------------------------------------------------------------
def test_cli_json_report_shape_and_exit_codes(validation_chain):
    env = validation_chain(True)
    code, report = env.verify_json(env.chain[-1], "--level", "deep")
    assert code == 0
    assert set(report) == {"backup_id", "source", "level", "verdict", "checks", "recommendations", "duration_ms",
                           "chain"}
    assert (report["backup_id"], report["source"], report["level"], report["verdict"]) == (
        env.chain[-1], "kb", "deep", "pass")
    assert report["chain"] == env.chain and report["recommendations"] == []
    assert isinstance(report["duration_ms"], float)
    for check in report["checks"]:
        assert set(check) == {"id", "severity", "status", "message", "duration_ms", "details"}
        assert check["severity"] in R.SEVERITIES and check["status"] == "pass" and check["message"]
        assert isinstance(check["duration_ms"], float) and isinstance(check["details"], dict)
    assert {c["id"] for c in report["checks"]} == DEEP

    env.write_config(rules=[_rule("impossible", "SELECT 0", description="never true")], default_level="deep")
    code, report = env.verify_json(env.chain[-1])  # the config's default level
    assert code == 1 and report["verdict"] == "fail" and report["level"] == "deep"
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["id"] for c in failed] == ["sql:impossible"] and report["recommendations"]


def test_cli_human_output_and_warn_exits_zero(validation_chain):
    env = validation_chain()
    env.write_config(rules=[_rule("soft", "SELECT 0", "warning")])
    proc = env.cli("verify", "-c", str(env.config_path), "--backup", env.chain[-1], "--level", "deep")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "verdict: warn"
    assert any(line.startswith("fail  warning  sql:soft:") for line in lines)


def test_cli_unknown_backup_exits_1_with_not_found(validation_chain):
    env = validation_chain()
    proc = env.cli("verify", "-c", str(env.config_path), "--backup", "20200101T000000.000000Z-abcdef", "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert '"code": "not_found"' in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
