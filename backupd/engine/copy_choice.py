"""Which copies a validation checks (`verify --destination`, `--all-copies`, `--sample`): a value the
CLI and the daemon's control thread build and check without loading the validation engine."""

from __future__ import annotations

from dataclasses import dataclass

from backupd.core.sampling import check_percent
from backupd.core.vocab import ValidationLevel
from backupd.errors import UsageError


@dataclass(frozen=True)
class CopyChoice:
    """Which copies a validation checks: the one read first (default), the one on `destination`, or
    every copy; `sample_percent` limits the in-depth block checks to a rotating share."""

    destination: str | None = None
    all_copies: bool = False
    sample_percent: float | None = None

    def check(self, level: str) -> None:
        """UsageError for a choice that makes no sense at `level` (checked before any job starts)."""
        if self.destination is not None and self.all_copies:
            raise UsageError("verify: give --destination NAME or --all-copies, not both")
        if self.sample_percent is not None:
            try:
                check_percent(self.sample_percent)
            except ValueError as exc:
                raise UsageError(f"--sample: {exc}") from None
            if level == ValidationLevel.QUICK:
                raise UsageError("--sample needs level standard or deep: the quick level reads no block in depth")
