"""Running validation checks and advising on their failures.

`run_check` times one check and turns a `BackupdError` it raises into a failed result
(core.validation_report.failure_from_error). `Advice` is the one place a failed check's
recommendation is decided: rewrite a damaged copy from a sound one on another destination, fix a
destination or a key, upgrade, or take a new full backup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from backupd.core import validation_report as R
from backupd.core.copy_order import FAILED, CopyState
from backupd.core.validation_report import CheckResult, ErrorAdvice, Outcome, Rule, failure_from_error
from backupd.core.vocab import CheckStatus
from backupd.engine.catalog import CatalogBackup
from backupd.engine.context import EngineContext
from backupd.engine.copy_checks import ChainMember
from backupd.engine.reading import copies_in_order
from backupd.errors import (NOT_THE_COPY, BackupdError, CorruptArtifact, DestinationError, MissingChainMember,
                            UnsupportedVersion, WrongKey)


def run_check(rule: Rule, check: Callable[[], Outcome], *, where: dict[str, Any] | None = None,
              prefix: str = "", advice: ErrorAdvice | None = None) -> CheckResult:
    """Run and time one check. `where` (backup id, destination, key) goes into the details;
    a BackupdError raised by the check is a failure carrying its code, block and hint, prefixed with
    `prefix` (what was being read) unless its message already names it, and advised by `advice`."""
    where = dict(where or {})
    started = time.perf_counter()
    try:
        out = check()
    except BackupdError as exc:
        out = failure_from_error(exc, prefix, advice)
    except Exception as exc:  # a bug in a check must not hide the results of the others
        out = Outcome.fail(f"{prefix}{': ' if prefix else ''}check crashed: {type(exc).__name__}: {exc}",
                           code="internal_error")
    elapsed = (time.perf_counter() - started) * 1000
    return CheckResult(rule, CheckStatus.PASS if out.passed else CheckStatus.FAIL, out.message, elapsed,
                       {**where, **out.details}, out.recommendation)


COPY_RULES = frozenset({R.SIDECAR_INTACT, R.ARTIFACT_HEADER, R.ARTIFACT_SIZE, R.ARTIFACT_CHECKSUM,
                        R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE})


def failed_copies(results: Iterable[CheckResult], keep: Callable[[CheckResult], bool]) -> set[tuple[Any, Any]]:
    """(backup id, destination) of each copy a failed per-copy check in `results` names, when `keep` accepts it."""
    return {(r.details.get("backup_id"), r.details.get("destination")) for r in results
            if r.failed and r.rule in COPY_RULES and keep(r)}


def damaged_copies(results: Iterable[CheckResult]) -> set[tuple[Any, Any]]:
    """The copies that are themselves damaged: a failed sidecar, header, size, checksum, block, manifest
    or page check. A destination that could not be reached, a wrong key or a newer format says
    nothing about the copy."""
    return failed_copies(results, lambda r: r.details.get("code") not in NOT_THE_COPY)


class Advice:
    """The recommendations of one validation of `target`, from the results so far (`results`, the
    validation's own list)."""

    def __init__(self, ctx: EngineContext, target: CatalogBackup, results: list[CheckResult]):
        self.ctx = ctx
        self.target = target
        self.results = results
        self.source = target.manifest.source
        self._damage: set[str] = set()  # recommendations made by `corrupt`

    def new_full(self, why: str) -> str:
        return f"take a new full backup of source {self.source!r}: {why}"

    def for_error(self, m: ChainMember | None) -> ErrorAdvice:
        """What to do about an error met while reading member `m`."""

        def advise(exc: BackupdError) -> str | None:
            dest = m.target.name if m is not None and m.target is not None else "?"
            bid = m.id if m is not None else self.target.backup_id
            if isinstance(exc, WrongKey):
                kid = exc.details.get("artifact_key_id")
                return (f"point destination {dest}'s encryption at the key its backups were made with"
                        + (f" (key id {kid})" if kid else ""))
            if isinstance(exc, UnsupportedVersion):
                version = exc.details.get("version")
                return (f"upgrade backupd to a release that reads artifact format version {version} "
                        f"(backup {bid} on {dest})")
            if isinstance(exc, DestinationError):
                return f"check destination {dest}, then verify again: {exc.hint or exc.message}"
            if isinstance(exc, MissingChainMember):
                return self.new_full(f"the chain of {self.target.backup_id} is broken at "
                                     f"{exc.details.get('missing', bid)}")
            return self.corrupt(m)

        return advise

    def good_copy(self, m: ChainMember) -> str | None:
        """Another destination holding a copy of `m` that is not known to be damaged (verified first)."""
        if m.target is None:
            return None
        damaged = damaged_copies(self.results)
        for t, c in copies_in_order(self.ctx, m.backup):
            state = CopyState(t.name, t.priority, c.verified_at, c.failed_at)
            if t.name != m.target.name and state.standing != FAILED and (m.id, t.name) not in damaged:
                return t.name
        return None

    def corrupt(self, m: ChainMember | None) -> str:
        """The one recommendation for a damaged member copy, whichever check found it (so they dedupe):
        rewrite it from a good copy on another destination when there is one, else a new full."""
        if m is None:
            return self.new_full(f"backup {self.target.backup_id} is corrupt")
        dest = m.target.name if m.target is not None else "?"
        good = self.good_copy(m)
        if good is not None:
            text = (f"rewrite the copy of backup {m.id} on destination {dest} from the one on {good}: run "
                    f"`backupd resync --source {self.source}` (or `backupctl dest resync --source {self.source}`)")
        else:
            depends = "" if m.id == self.target.backup_id else f", and {self.target.backup_id} depends on it"
            text = self.new_full(f"backup {m.id} on destination {dest} is corrupt{depends}")
        self._damage.add(text)
        return text

    def for_sidecar(self, m: ChainMember) -> ErrorAdvice:
        """What to do about an error met while reading the sidecar of member `m`."""
        general = self.for_error(m)

        def advise(exc: BackupdError) -> str | None:
            if not isinstance(exc, CorruptArtifact) or m.target is None:
                return general(exc)
            if self.good_copy(m) is not None:
                return self.corrupt(m)
            return self.new_full(f"the sidecar of backup {m.id} on destination {m.target.name} is corrupt, so "
                                 f"that destination alone no longer lists this restore point")

        return advise

    def revised(self, checked: Callable[[CheckResult], ChainMember | None]) -> list[CheckResult]:
        """The results with each damaged copy's recommendation made again, once every copy was checked
        (a copy found good later makes a better one); `checked` is the copy a result is about."""
        return [replace(r, recommendation=self.corrupt(checked(r)))
                if r.rule in COPY_RULES and r.recommendation in self._damage and checked(r) else r
                for r in self.results]
