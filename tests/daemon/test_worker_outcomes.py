"""How the worker turns a validation report into a job outcome, and whether a failure is worth a retry."""

from __future__ import annotations

from backupd.daemon.worker import judge_validation


def _report(*checks: tuple[str, str, str | None]) -> dict:
    """A report's JSON with one check per (severity, status, code)."""
    failed = any(st == "fail" and sev in ("error", "critical") for sev, st, _ in checks)
    warned = any(st == "fail" and sev == "warning" for sev, st, _ in checks)
    return {"verdict": "fail" if failed else "warn" if warned else "pass",
            "checks": [{"id": f"c{i}", "severity": sev, "status": st, "details": {"code": code} if code else {}}
                       for i, (sev, st, code) in enumerate(checks)]}


def test_a_passing_or_warning_report_completes():
    assert judge_validation(_report(("critical", "pass", None)), {}, "b1", "quick", new_backup=False)[0] == "completed"
    warned = judge_validation(_report(("warning", "fail", "source_flagged")), {}, "b1", "quick", new_backup=False)
    assert warned[0] == "completed_with_warnings" and warned[2] is None


def test_a_validation_failing_only_on_an_unreachable_destination_is_retryable():
    status, _, error = judge_validation(_report(("critical", "fail", "destination_unavailable"),
                                                ("warning", "fail", "source_flagged")), {}, "b1", "standard",
                                        new_backup=False)
    assert status == "failed" and error is not None and error["retryable"] is True, error


def test_damage_or_a_wrong_key_is_not_retried_but_a_new_backup_may_pass():
    for code in ("wrong_key", "corrupt_artifact", "missing_chain_member", None):
        report = _report(("critical", "fail", "destination_unavailable"), ("error", "fail", code))
        _, _, error = judge_validation(report, {}, "b1", "standard", new_backup=False)
        assert error is not None and error["retryable"] is False, (code, error)
        _, _, error = judge_validation(report, {}, "b1", "standard", new_backup=True)
        assert error is not None and error["retryable"] is True, (code, error)
