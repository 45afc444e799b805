"""The validation report and its vocabulary: rules, check outcomes and results, the verdict. Pure: the
engine runs and times the checks (engine/rules.py), the report only says what they found.

A `Rule` is what is asserted (a stable snake_case id, a severity, the level that runs it, a
description). A check function returns an `Outcome` (pass or fail, a message naming what was looked
at, details); a `BackupdError` it raises becomes a failed outcome carrying the error's code
(`failure_from_error`), so one bad artifact never stops the other checks. The verdict is `fail` when
a check of severity error or critical failed, `warn` when only warnings failed, `pass` otherwise.

Built-in rules are listed in `BUILTIN_RULES`; custom SQL rules from the config become `sql:<id>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backupd.core.vocab import BLOCKING_SEVERITIES, SEVERITIES, CheckStatus, Severity, Verdict
from backupd.core.vocab import VALIDATION_LEVELS as LEVELS
from backupd.errors import BackupdError


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    level: str
    description: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.id}: unknown severity {self.severity!r}")
        if self.level not in LEVELS:
            raise ValueError(f"rule {self.id}: unknown level {self.level!r}")

    def runs_at(self, level: str) -> bool:
        """Levels are cumulative: a quick rule also runs at standard and deep."""
        return LEVELS.index(self.level) <= LEVELS.index(level)


def _rule(id: str, severity: str, level: str, description: str) -> Rule:
    return Rule(id, severity, level, description)


CHAIN_COMPLETE = _rule("chain_complete", "critical", "quick",
                       "every backup of the chain is known and its artifact exists on the destination read")
SIDECAR_INTACT = _rule("sidecar_intact", "error", "quick",
                       "the sidecar verifies, describes this backup and agrees with the catalog")
ARTIFACT_HEADER = _rule("artifact_header", "critical", "quick",
                        "the artifact's format version is supported, its header verifies and names this "
                        "backup, and the configured key is the one it was encrypted with")
ARTIFACT_SIZE = _rule("artifact_size", "error", "quick",
                      "the artifact's size equals the size recorded in its sidecar")
ARTIFACT_CHECKSUM = _rule("artifact_checksum", "critical", "quick",
                          "the BLAKE2b-256 of the artifact's bytes equals its trailer's and its sidecar's")
BLOCKS_AUTHENTIC = _rule("blocks_authentic", "critical", "standard",
                         "every block authenticates (AEAD tag or keyed checksum) and decompresses, and the "
                         "trailer matches the blocks read")
MANIFEST_MATCHES_SIDECAR = _rule("manifest_matches_sidecar", "error", "standard",
                                 "the manifest embedded in the artifact equals the sidecar's")
PAGE_NUMBERS_IN_RANGE = _rule("page_numbers_in_range", "error", "standard",
                              "every page number is within 1..page_count and appears once, the number of "
                              "pages equals changed_pages, and a full backup holds every page")
RESTORE_COMPLETES = _rule("restore_completes", "critical", "deep",
                          "the chain restores into a temporary database")
INTEGRITY_CHECK = _rule("integrity_check", "critical", "deep",
                        "PRAGMA integrity_check of the restored database returns ok")
FOREIGN_KEY_CHECK = _rule("foreign_key_check", "warning", "deep",
                          "PRAGMA foreign_key_check of the restored database finds no violation (a warning: "
                          "a source that does not enforce foreign keys is backed up as it is)")
SCHEMA_HASH = _rule("schema_hash", "error", "deep",
                    "the restored database's schema hash equals the one recorded at backup time")
ROW_COUNTS = _rule("row_counts", "error", "deep",
                   "every table of the restored database has the row count recorded at backup time")
SOURCE_UNFLAGGED = _rule("source_unflagged", "warning", "quick",
                         "the source passed its check at backup time and had not shrunk (a warning: a flagged "
                         "backup holds the source as it was, damaged or emptied)")

BUILTIN_RULES: tuple[Rule, ...] = (
    CHAIN_COMPLETE, SOURCE_UNFLAGGED, SIDECAR_INTACT, ARTIFACT_HEADER, ARTIFACT_SIZE, ARTIFACT_CHECKSUM,
    BLOCKS_AUTHENTIC, MANIFEST_MATCHES_SIDECAR, PAGE_NUMBERS_IN_RANGE,
    RESTORE_COMPLETES, INTEGRITY_CHECK, FOREIGN_KEY_CHECK, SCHEMA_HASH, ROW_COUNTS,
)
SQL_RULE_PREFIX = "sql:"
MAX_LISTED = 20  # problems listed in a check's details


def sql_rule(rule_id: str, severity: str, description: str) -> Rule:
    """The rule of one custom SQL assertion from `validation.rules`; it runs on the restored database."""
    return Rule(f"{SQL_RULE_PREFIX}{rule_id}", severity, "deep", description)


@dataclass(frozen=True)
class Outcome:
    """What a check function returns. `recommendation` says what to do about a failure."""

    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    recommendation: str | None = None

    @classmethod
    def ok(cls, message: str, **details: Any) -> "Outcome":
        return cls(True, message, details)

    @classmethod
    def fail(cls, message: str, recommendation: str | None = None, **details: Any) -> "Outcome":
        return cls(False, message, details, recommendation)


@dataclass(frozen=True)
class CheckResult:
    rule: Rule
    status: str  # pass | fail | skip
    message: str
    duration_ms: float
    details: dict[str, Any] = field(default_factory=dict)
    recommendation: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == CheckStatus.FAIL

    def to_json(self) -> dict[str, Any]:
        return {"id": self.rule.id, "severity": self.rule.severity, "status": self.status,
                "message": self.message, "duration_ms": round(self.duration_ms, 2), "details": self.details}


ErrorAdvice = Callable[[BackupdError], str | None]


def failure_from_error(exc: BackupdError, prefix: str = "", advice: ErrorAdvice | None = None) -> Outcome:
    message = exc.message
    if prefix and prefix not in message:
        message = f"{prefix}: {message}"
    details: dict[str, Any] = {"code": exc.code}
    for k, v in exc.details.items():
        details.setdefault(k, v)
    if exc.hint:
        details["hint"] = exc.hint
    return Outcome.fail(message, advice(exc) if advice else exc.hint, **details)


def skipped(rule: Rule, reason: str, where: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(rule, CheckStatus.SKIP, reason, 0.0, dict(where or {}))


def verdict_of(results: Iterable[CheckResult]) -> str:
    """fail if a failed check is error or critical, warn if a failed check is a warning, else pass."""
    failed = {r.rule.severity for r in results if r.failed}
    if failed & BLOCKING_SEVERITIES:
        return Verdict.FAIL
    return Verdict.WARN if Severity.WARNING in failed else Verdict.PASS


@dataclass(frozen=True)
class Report:
    """The outcome of validating one backup and its chain."""

    backup_id: str
    source: str
    level: str
    checks: tuple[CheckResult, ...]
    chain: tuple[str, ...]
    duration_ms: float
    sample_percent: float | None = None  # the share of blocks read in depth, when sampled

    @property
    def verdict(self) -> str:
        return verdict_of(self.checks)

    @property
    def failed(self) -> list[str]:
        """Ids of the rules that failed, each once, in report order."""
        return list(dict.fromkeys(c.rule.id for c in self.checks if c.failed))

    @property
    def recommendations(self) -> list[str]:
        """One line per distinct thing to do, most severe failures first."""
        ranked = sorted((c for c in self.checks if c.failed and c.recommendation),
                        key=lambda c: -SEVERITIES.index(c.rule.severity))
        return list(dict.fromkeys(c.recommendation for c in ranked if c.recommendation))

    def check(self, rule_id: str) -> list[CheckResult]:
        return [c for c in self.checks if c.rule.id == rule_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "source": self.source,
            "level": self.level,
            "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks],
            "recommendations": self.recommendations,
            "duration_ms": round(self.duration_ms, 2),
            "chain": list(self.chain),
            **({} if self.sample_percent is None else {"sample_percent": self.sample_percent}),
        }
