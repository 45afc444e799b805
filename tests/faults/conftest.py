"""The fault-injection suite: every test runs many trials of one attack and records (trials, failures).

Two profiles: `ci` (the default, bounded so the whole of CI stays short) and `long` (`make torture`, or
BACKUPD_FAULTS_PROFILE=long), which runs the trial counts docs/RELIABILITY.md publishes. A test runs all
its trials even after a failure, so the count of failures is a real figure, then fails if any trial did.
At the end of the session the table is printed; BACKUPD_FAULTS_RESULTS=PATH also writes it as JSON, which
`python -m tests.faults.report PATH` turns into docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import pytest

PROFILE = os.environ.get("BACKUPD_FAULTS_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise pytest.UsageError(f"BACKUPD_FAULTS_PROFILE must be 'ci' or 'long', not {PROFILE!r}")


def trials(ci: int, long: int) -> int:
    """The number of trials of an attack in the running profile."""
    return long if PROFILE == "long" else ci


@dataclass
class Tally:
    """One attack's figures: trials run, trials failed (with the first reasons) and outcome counts."""

    name: str
    trials: int = 0
    failures: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def trial(self, outcome: str) -> None:
        """Count a trial that passed, by what it saw (e.g. 'no backup', 'complete backup')."""
        self.trials += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def run(self, one) -> None:
        """One trial: `one()` returns what it saw; an AssertionError it raises is a failure, by its first line."""
        try:
            self.trial(one())
        except AssertionError as e:
            self.fail(str(e).splitlines()[0] if str(e) else repr(e))

    def fail(self, reason: str) -> None:
        """Count a trial that broke an invariant."""
        self.trials += 1
        self.failures.append(reason)

    def check(self) -> None:
        assert not self.failures, f"{self.name}: {len(self.failures)} of {self.trials} trials failed: {self.failures[:5]}"


RESULTS: dict[str, Tally] = {}


@pytest.fixture
def tally(request):
    """A Tally named after the test; asserted to have no failures when the test ends."""
    t = Tally(request.node.name)
    RESULTS[t.name] = t
    start = time.monotonic()
    yield t
    t.seconds = time.monotonic() - start
    t.check()


def pytest_terminal_summary(terminalreporter):
    ran = [t for t in RESULTS.values() if t.trials]
    if not ran:
        return
    terminalreporter.section(f"fault injection ({PROFILE} profile)")
    for t in ran:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(t.outcomes.items()))
        terminalreporter.write_line(f"{t.name:<60} {t.trials:>5} trials {len(t.failures):>3} failures  {outcomes}")
    path = os.environ.get("BACKUPD_FAULTS_RESULTS")
    if path:
        rows = [{"test": t.name, "trials": t.trials, "failures": len(t.failures), "outcomes": t.outcomes,
                 "seconds": round(t.seconds, 1), "first_failures": t.failures[:5]} for t in ran]
        with open(path, "w") as f:
            json.dump({"profile": PROFILE, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "results": rows}, f, indent=1)
