"""Validating a backup and its chain, at three cumulative levels:

- quick: the chain is complete; for every member, on the copy `choose_copy` reads, the sidecar
  verifies, the artifact's header verifies (format version, key id), and its size and whole-artifact
  BLAKE2b-256 (streamed) equal its trailer's and its sidecar's;
- standard: every block of every member authenticates and decompresses, the trailer matches, the
  embedded manifest equals the sidecar's, and page numbers are within the member's page count;
- deep: the chain is restored into a temp dir (removed afterwards), then integrity_check,
  foreign_key_check, schema hash, row counts and the custom SQL rules run on it (deep_checks.py).

The modules: this one runs a validation and its per-copy checks; chain_checks.py checks the chain,
copy_checks.py one copy, deep_checks.py the deep level (on restored_checks.py, shared with restore);
rules.py times checks and decides their recommendations; the report types are core.validation_report.

Which copies: the one each member is read from (`choose_copy`), the one on a chosen `destination`,
or `all_copies` (every copy of every member gets the per-copy checks; the chain is restored once).
With `sample_percent`, the standard checks decompress and read the pages of that share of each
copy's blocks only, rotating through them run after run (core.sampling); every block still
authenticates and the whole-artifact checksum covers every byte.

Checks report, they never raise for artifact problems: a corrupt block, a missing chain member, a
wrong key or an unknown format version is a failed check naming the backup, the destination, the
object key and, when known, the block. Usage errors raise (an unknown backup id: NotFound). A copy
that passes is recorded as verified, a damaged one as failed (read last by restores, rewritten by
resync from a good copy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog
from structlog.contextvars import bound_contextvars

from backupd.core import validation_report as R
from backupd.core.vocab import BLOCKING_SEVERITIES, VALIDATION_LEVELS, ValidationLevel, Verdict
from backupd.core.ids import is_backup_id, sidecar_key
from backupd.core.sampling import sample_blocks
from backupd.engine import copy_checks as C
from backupd.engine.catalog import CatalogBackup
from backupd.engine.chain_checks import check_chain
from backupd.engine.context import EngineContext
from backupd.engine.copy_checks import ChainMember
from backupd.engine.copy_choice import CopyChoice
from backupd.engine.deep_checks import deep_checks
from backupd.engine.inventory import read_sidecar, reconcile, unreadable_error
from backupd.engine.reading import copies_in_order
from backupd.engine.rules import COPY_RULES, Advice, damaged_copies, failed_copies, run_check
from backupd.errors import NotFound, UsageError

log = structlog.get_logger("backupd.validate")


def validate_backup(ctx: EngineContext, backup_id: str, level: str, choice: CopyChoice = CopyChoice()) -> R.Report:
    """Validate `backup_id` and its chain at `level` (quick, standard or deep); see the module docstring."""
    if level not in VALIDATION_LEVELS:
        raise UsageError(f"unknown validation level {level!r} (expected {', '.join(VALIDATION_LEVELS)})")
    if not is_backup_id(backup_id):
        raise UsageError(f"{backup_id!r} is not a backup id (expected e.g. 20261126T160055.123456Z-3f9a1c)",
                         hint="list restore points with `backupd list`")
    _check_choice(ctx, level, choice)
    started = time.monotonic()
    target = find_backup(ctx, backup_id)
    source = target.manifest.source
    with bound_contextvars(backup_id=backup_id, source=source):
        v = Validation(ctx, target, level, choice)
        v.run()
        report = R.Report(backup_id, source, level, tuple(v.results), tuple(m.id for m in v.members),
                          (time.monotonic() - started) * 1000, choice.sample_percent)
        v.record(report.verdict)
        log.info("validation_completed", backup_id=backup_id, source=source, validation_level=level,
                 verdict=report.verdict, failed=report.failed, chain=list(report.chain),
                 copies_checked=len(v.checked), sample_percent=choice.sample_percent,
                 duration_s=round(time.monotonic() - started, 3))
    return report


def _check_choice(ctx: EngineContext, level: str, choice: CopyChoice) -> None:
    choice.check(level)
    if choice.destination is not None and choice.destination not in {t.name for t in ctx.enabled_targets()}:
        ctx.config.destination(choice.destination)  # UnknownDestination naming the configured ones
        raise UsageError(f"destination {choice.destination!r} is disabled: its copies are not read",
                         hint=f"enable it (`backupctl dest enable {choice.destination}`) to verify its copies")


def find_backup(ctx: EngineContext, backup_id: str) -> CatalogBackup:
    """The catalog's entry for `backup_id`; reconciles every source with the destinations when it has none."""
    found = ctx.catalog.get(backup_id)
    if found is not None:
        return found
    unreadable = []
    for src in ctx.config.sources:
        with ctx.source_lock(src.name):
            unreadable += [u for u in reconcile(ctx, src.name) if u.backup_id == backup_id]
        found = ctx.catalog.get(backup_id)
        if found is not None:
            return found
    cannot_read = unreadable_error(f"backup {backup_id}", unreadable)
    if cannot_read is not None:
        raise cannot_read
    raise NotFound(f"backup {backup_id} is not in the catalog nor on any configured destination",
                   hint="list restore points with `backupd list`")


@dataclass
class Validation:
    """One validation of `target` and its chain at `level`: its results, and the copies they are about."""

    ctx: EngineContext
    target: CatalogBackup
    level: str
    choice: CopyChoice = CopyChoice()
    results: list[R.CheckResult] = field(default_factory=list)
    members: list[ChainMember] = field(default_factory=list)  # the chain, each on the copy it is read from
    checked: list[ChainMember] = field(default_factory=list)  # the copies the per-copy checks ran on

    def __post_init__(self) -> None:
        self.advice = Advice(self.ctx, self.target, self.results)

    @property
    def source(self) -> str:
        return self.target.manifest.source

    def faulty_copies(self) -> list[ChainMember]:
        """Copies that are themselves damaged (rules.damaged_copies)."""
        failed = damaged_copies(self.results)
        return [m for m in self.checked if m.target is not None and (m.id, m.target.name) in failed]

    def run(self) -> None:
        check_chain(self)
        self.checked = list(self.members)
        if self.choice.all_copies:
            self.checked = [c for m in self.members for c in self._every_copy(m)]
        for m in self.checked:
            self._member_checks(m)
        if self.level == ValidationLevel.DEEP:
            deep_checks(self)
        if self.choice.all_copies:  # a copy found good later makes a better recommendation
            self.results[:] = self.advice.revised(self._checked)

    def record(self, verdict: str) -> None:
        """Copies that passed become verified, damaged ones failed; sampled copies move their rotation on."""
        blocking = [r for r in self.results if r.failed and r.rule.severity in BLOCKING_SEVERITIES]
        chain_wide = any(r.rule not in COPY_RULES for r in blocking)
        about = failed_copies(self.results, lambda r: r.rule.severity in BLOCKING_SEVERITIES)
        if self.level != ValidationLevel.QUICK and not chain_wide and (self.choice.all_copies or verdict != Verdict.FAIL):
            for m in self.checked:  # a warning (custom rule, foreign keys) is no fault of the copy
                if m.target is not None and (m.id, m.target.name) not in about:
                    self.ctx.catalog.mark_verified(m.id, m.target.name)
        for m in self.faulty_copies():
            assert m.target is not None
            self.ctx.catalog.mark_failed(m.id, m.target.name)
        for m in self.checked:
            if m.sample is not None and m.blocks_ok and m.target is not None:
                self.ctx.catalog.set_sample_offset(m.id, m.target.name, m.sample.next_offset)

    def _checked(self, r: R.CheckResult) -> ChainMember | None:
        where = (r.details.get("backup_id"), r.details.get("destination"))
        return next((m for m in self.checked if m.target is not None and (m.id, m.target.name) == where), None)

    def _every_copy(self, m: ChainMember) -> list[ChainMember]:
        """`m` (as located) and a member for each other copy of it."""
        if m.target is None:
            return [m]
        others = [ChainMember(m.backup, t, c) for t, c in copies_in_order(self.ctx, m.backup) if t.name != m.target.name]
        return [m, *others]

    def run_check(self, rule: R.Rule, check: Callable[[], R.Outcome], m: ChainMember | None = None,
                  prefix: str | None = None, where: dict[str, Any] | None = None,
                  advice: R.ErrorAdvice | None = None) -> R.CheckResult:
        """Run one check about member `m` (or the whole chain) and add its result."""
        if where is None:
            where = m.where if m is not None else {"backup_id": self.target.backup_id}
        what = prefix if prefix is not None else (m.what if m is not None else "")
        result = run_check(rule, check, where=where, prefix=what, advice=advice or self.advice.for_error(m))
        self.results.append(result)
        return result

    def skip(self, rule: R.Rule, reason: str, m: ChainMember | None = None) -> None:
        self.results.append(R.skipped(rule, reason, m.where if m is not None else {"backup_id": self.target.backup_id}))

    # -- quick and standard: one copy of one member ---------------------------------------------
    def _member_checks(self, m: ChainMember) -> None:
        rules = [r for r in (R.SIDECAR_INTACT, R.ARTIFACT_HEADER, R.ARTIFACT_SIZE, R.ARTIFACT_CHECKSUM,
                             R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE)
                 if r.runs_at(self.level)]
        if m.target is None:
            for r in rules:
                self.skip(r, f"skipped: {m.unreadable}", m)
            return
        skey = sidecar_key(self.source, m.id)
        self.run_check(R.SIDECAR_INTACT, lambda: self._sidecar(m), m, prefix=f"sidecar {skey} on {m.target.name}",
                       where={**m.where, "key": skey}, advice=self.advice.for_sidecar(m))
        artifact_rules = [r for r in rules if r is not R.SIDECAR_INTACT]
        if m.unreadable:
            for r in artifact_rules:
                self.skip(r, f"skipped: {m.unreadable}", m)
            return
        self.run_check(R.ARTIFACT_HEADER, lambda: C.header(m), m)
        self.run_check(R.ARTIFACT_SIZE, lambda: C.size(m, self.advice.corrupt(m)), m)
        self.run_check(R.ARTIFACT_CHECKSUM, lambda: C.checksum(m, self.advice.corrupt(m)), m)
        if self.level == ValidationLevel.QUICK:
            return
        if not m.header_ok:
            for r in (R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE):
                self.skip(r, f"skipped: the header of {m.what} did not verify (see artifact_header)", m)
            return
        if self.choice.sample_percent is not None and m.block_count and m.copy is not None:
            m.sample = sample_blocks(m.block_count - 1, self.choice.sample_percent, m.copy.sample_offset,
                                     f"{m.id}/{m.target.name}")
        self.run_check(R.BLOCKS_AUTHENTIC, lambda: C.blocks(m), m)
        if m.embedded_manifest is None:
            self.skip(R.MANIFEST_MATCHES_SIDECAR, f"skipped: the manifest block of {m.what} was not reached", m)
        else:
            self.run_check(R.MANIFEST_MATCHES_SIDECAR, lambda: C.embedded_manifest(m, self.advice.corrupt(m)), m)
        if m.pages is None or (not m.blocks_ok and not m.pages.out_of_range_count):
            self.skip(R.PAGE_NUMBERS_IN_RANGE, f"skipped: the blocks of {m.what} did not verify", m)
        else:
            self.run_check(R.PAGE_NUMBERS_IN_RANGE, lambda: C.page_numbers(m, self.advice.corrupt(m)), m)

    def _sidecar(self, m: ChainMember) -> R.Outcome:
        assert m.target is not None and m.copy is not None
        key = sidecar_key(self.source, m.id)
        where = f"sidecar {key} on {m.target.name}"
        try:
            sc, _ = read_sidecar(m.target, key)
        except NotFound:
            return R.Outcome.fail(
                f"{where} is missing: destination {m.target.name} alone no longer lists backup {m.id}",
                self.advice.new_full(f"the chain of {self.target.backup_id} is broken at {m.id}") if m.unreadable
                else self.advice.corrupt(m) if self.advice.good_copy(m)
                else self.advice.new_full(f"the sidecar of backup {m.id} is missing from destination {m.target.name}"),
                code="not_found")
        m.sidecar = sc
        problems = []
        if sc.manifest != m.manifest:
            problems.append("its manifest differs from the catalog's")
        if sc.artifact_key != m.copy.artifact_key:
            problems.append(f"it names artifact {sc.artifact_key}, the catalog {m.copy.artifact_key}")
        if (sc.artifact_size, sc.artifact_digest) != (m.copy.artifact_size, m.copy.artifact_digest):
            problems.append("its artifact size or checksum differs from the catalog's")
        if problems:
            return R.Outcome.fail(f"{where}: " + "; ".join(problems),
                                  "run `backupd catalog rebuild` so the catalog follows the destinations",
                                  code="catalog_mismatch", problems=problems)
        return R.Outcome.ok(f"{where} verifies and agrees with the catalog")
