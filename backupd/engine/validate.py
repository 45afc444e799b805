"""Validating a backup and its chain, at three cumulative levels:

- quick: the chain is complete; for every member, on the copy `choose_copy` reads, the sidecar
  verifies, the artifact's header verifies (format version, key id), and its size and whole-artifact
  BLAKE2b-256 (streamed) equal its trailer's and its sidecar's;
- standard: every block of every member authenticates and decompresses, the trailer matches, the
  embedded manifest equals the sidecar's, and page numbers are within the member's page count;
- deep: the chain is restored into a temp dir (removed afterwards), then integrity_check,
  foreign_key_check, schema hash, row counts and the custom SQL rules run on it (restored_checks.py).

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
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import structlog
from structlog.contextvars import bound_contextvars

from backupd.core import chain
from backupd.core.copy_order import FAILED, CopyState
from backupd.core.ids import is_backup_id, sidecar_key
from backupd.core.sampling import sample_blocks
from backupd.engine import copy_checks as C
from backupd.engine import rules as R
from backupd.engine.catalog import CatalogBackup
from backupd.engine.context import EngineContext
from backupd.engine.copy_checks import ChainMember
from backupd.engine.copy_choice import CopyChoice
from backupd.engine.inventory import read_sidecar, reconcile, unreadable_error
from backupd.engine.reading import choose_copy, copies_in_order
from backupd.engine.restored_checks import deep_checks
from backupd.engine.rules import Report
from backupd.errors import NOT_THE_COPY as _NOT_THE_COPY
from backupd.errors import (BackupdError, CorruptArtifact, DestinationError, MissingChainMember, NotFound,
                            UnsupportedVersion, UsageError, WrongKey)

log = structlog.get_logger("backupd.validate")


def validate_backup(ctx: EngineContext, backup_id: str, level: str, choice: CopyChoice = CopyChoice()) -> Report:
    """Validate `backup_id` and its chain at `level` (quick, standard or deep); see the module docstring."""
    if level not in R.LEVELS:
        raise UsageError(f"unknown validation level {level!r} (expected {', '.join(R.LEVELS)})")
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


_COPY_RULES = frozenset({R.SIDECAR_INTACT, R.ARTIFACT_HEADER, R.ARTIFACT_SIZE, R.ARTIFACT_CHECKSUM,
                         R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE})
_BLOCKING = ("error", "critical")


@dataclass
class Validation:
    ctx: EngineContext
    target: CatalogBackup
    level: str
    choice: CopyChoice = CopyChoice()
    results: list[R.CheckResult] = field(default_factory=list)
    members: list[ChainMember] = field(default_factory=list)  # the chain, each on the copy it is read from
    checked: list[ChainMember] = field(default_factory=list)  # the copies the per-copy checks ran on
    _damage_advice: set[str] = field(default_factory=set)  # recommendations made by `corrupt`

    @property
    def source(self) -> str:
        return self.target.manifest.source

    def faulty_copies(self) -> list[ChainMember]:
        """Copies that are themselves damaged: a failed sidecar, header, size, checksum, block, manifest
        or page check. A destination that could not be reached, a wrong key or a newer format says
        nothing about the copy."""
        failed = self._failed_copies(lambda r: r.details.get("code") not in _NOT_THE_COPY)
        return [m for m in self.checked if m.target is not None and (m.id, m.target.name) in failed]

    def _failed_copies(self, keep: Callable[[R.CheckResult], bool]) -> set[tuple[Any, Any]]:
        return {(r.details.get("backup_id"), r.details.get("destination")) for r in self.results
                if r.failed and r.rule in _COPY_RULES and keep(r)}

    def run(self) -> None:
        self._check_chain()
        self.checked = list(self.members)
        if self.choice.all_copies:
            self.checked = [c for m in self.members for c in self._every_copy(m)]
        for m in self.checked:
            self._member_checks(m)
        if self.level == "deep":
            deep_checks(self)
        if self.choice.all_copies:  # a copy found good later makes a better recommendation
            self.results = [replace(r, recommendation=self.corrupt(self._checked(r)))
                            if r.rule in _COPY_RULES and r.recommendation in self._damage_advice and self._checked(r)
                            else r for r in self.results]

    def record(self, verdict: str) -> None:
        """Copies that passed become verified, damaged ones failed; sampled copies move their rotation on."""
        blocking = [r for r in self.results if r.failed and r.rule.severity in _BLOCKING]
        chain_wide = any(r.rule not in _COPY_RULES for r in blocking)
        about = self._failed_copies(lambda r: r.rule.severity in _BLOCKING)
        if self.level != "quick" and not chain_wide and (self.choice.all_copies or verdict != "fail"):
            for m in self.checked:  # a warning (custom rule, foreign keys) is no fault of the copy
                if m.target is not None and (m.id, m.target.name) not in about:
                    self.ctx.catalog.mark_verified(m.id, m.target.name)
        for m in self.faulty_copies():
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

    # -- helpers ------------------------------------------------------------------------------
    def run_check(self, rule: R.Rule, check: Callable[[], R.Outcome], m: ChainMember | None = None,
                  prefix: str | None = None, where: dict[str, Any] | None = None,
                  advice: R.ErrorAdvice | None = None) -> R.CheckResult:
        if where is None:
            where = m.where if m is not None else {"backup_id": self.target.backup_id}
        what = prefix if prefix is not None else (m.what if m is not None else "")
        result = R.run_check(rule, check, where=where, prefix=what, advice=advice or self._advice(m))
        self.results.append(result)
        return result

    def skip(self, rule: R.Rule, reason: str, m: ChainMember | None = None) -> None:
        self.results.append(R.skipped(rule, reason, m.where if m is not None else {"backup_id": self.target.backup_id}))

    def new_full(self, why: str) -> str:
        return f"take a new full backup of source {self.source!r}: {why}"

    def _advice(self, m: ChainMember | None) -> R.ErrorAdvice:
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

    def _good_copy(self, m: ChainMember) -> str | None:
        """Another destination holding a copy of `m` that is not known to be damaged (verified first)."""
        if m.target is None:
            return None
        damaged = self._failed_copies(lambda r: r.details.get("code") not in _NOT_THE_COPY)
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
        good = self._good_copy(m)
        if good is not None:
            text = (f"rewrite the copy of backup {m.id} on destination {dest} from the one on {good}: run "
                    f"`backupd resync --source {self.source}` (or `backupctl dest resync --source {self.source}`)")
        else:
            depends = "" if m.id == self.target.backup_id else f", and {self.target.backup_id} depends on it"
            text = self.new_full(f"backup {m.id} on destination {dest} is corrupt{depends}")
        self._damage_advice.add(text)
        return text

    def _sidecar_advice(self, m: ChainMember) -> R.ErrorAdvice:
        general = self._advice(m)

        def advise(exc: BackupdError) -> str | None:
            if not isinstance(exc, CorruptArtifact) or m.target is None:
                return general(exc)
            if self._good_copy(m) is not None:
                return self.corrupt(m)
            return self.new_full(f"the sidecar of backup {m.id} on destination {m.target.name} is corrupt, so "
                                 f"that destination alone no longer lists this restore point")

        return advise

    # -- quick: the chain ---------------------------------------------------------------------
    def _check_chain(self) -> None:
        tid = self.target.backup_id
        by_id = {b.backup_id: b for b in self.ctx.catalog.backups(self.source)}
        broken: MissingChainMember | None = None
        try:
            resolved = chain.resolve_chain(tid, by_id)
        except MissingChainMember as exc:
            broken, resolved = exc, _known_part(self.target, by_id)
        self.members = [ChainMember(b) for b in resolved]

        def check() -> R.Outcome:
            ids = [m.id for m in self.members]
            for m in self.members:
                self._locate(m)
            if broken is not None:
                missing = broken.details.get("missing")
                found = self._probe_sidecars(missing) if isinstance(missing, str) else {}
                why = "; ".join(f"{dest}: {state}" for dest, state in found.items())
                return R.Outcome.fail(
                    f"the chain of {tid} is broken: {broken.message}" + (f" [{why}]" if why else ""),
                    self.new_full(f"the chain of {tid} is broken at {missing}"),
                    code=broken.code, missing=missing, needed_by=broken.details.get("needed_by"), chain=ids,
                    destinations=found)
            absent = [m for m in self.members if m.unreadable]
            if absent:
                first = absent[0]
                children = {m.manifest.parent_id: m.id for m in self.members}
                return R.Outcome.fail(
                    f"the chain of {tid} is broken at {first.id}: {first.unreadable}",
                    self.corrupt(first) if self._good_copy(first) else
                    self.new_full(f"the chain of {tid} is broken at {first.id}"),
                    code=first.unreadable_code, missing=first.id, needed_by=children.get(first.id),
                    destination=first.target.name if first.target else None,
                    key=first.copy.artifact_key if first.copy else None,
                    absent=[{"backup_id": m.id, "reason": m.unreadable} for m in absent], chain=ids)
            where = ", ".join(sorted({m.target.name for m in self.members if m.target}))
            return R.Outcome.ok(f"chain of {len(ids)} backup(s) complete on {where}", chain=ids)

        self.run_check(R.CHAIN_COMPLETE, check, prefix=f"chain of {tid}")
        self.run_check(R.SOURCE_UNFLAGGED, self._source_flags, prefix=tid)

    def _source_flags(self) -> R.Outcome:
        warnings = self.target.manifest.warnings
        if not warnings:
            return R.Outcome.ok("the source passed its check at backup time")
        return R.Outcome.fail(
            f"{self.target.backup_id} was taken of a flagged source: " + "; ".join(warnings),
            f"restore an older backup of source {self.source!r} if this one holds the damage; check the "
            "source database itself", code="source_flagged", warnings=list(warnings))

    def _probe_sidecars(self, backup_id: str) -> dict[str, str]:
        """Why a member the catalog lacks is missing, per destination: absent, or present but unreadable."""
        key = sidecar_key(self.source, backup_id)
        found = {}
        for target in self.ctx.enabled_targets():
            try:
                read_sidecar(target, key)
                found[target.name] = f"sidecar {key} is present and verifies (run `backupd catalog rebuild`)"
            except NotFound:
                found[target.name] = f"no sidecar {key}"
            except BackupdError as exc:
                found[target.name] = f"sidecar {key} is unreadable: {exc.message}"
        return found

    def _locate(self, m: ChainMember) -> None:
        try:
            m.target, m.copy = choose_copy(self.ctx, m.backup, self.choice.destination)
        except MissingChainMember as exc:
            m.unreadable = exc.message
            return
        try:
            m.target.dest.stat(m.copy.artifact_key)
        except NotFound:
            m.unreadable = f"its artifact {m.copy.artifact_key} is missing from destination {m.target.name}"
        except BackupdError as exc:
            m.unreadable = f"its artifact {m.copy.artifact_key} on destination {m.target.name} cannot be read: {exc}"
            m.unreadable_code = exc.code

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
                       where={**m.where, "key": skey}, advice=self._sidecar_advice(m))
        artifact_rules = [r for r in rules if r is not R.SIDECAR_INTACT]
        if m.unreadable:
            for r in artifact_rules:
                self.skip(r, f"skipped: {m.unreadable}", m)
            return
        self.run_check(R.ARTIFACT_HEADER, lambda: C.header(m), m)
        self.run_check(R.ARTIFACT_SIZE, lambda: C.size(m, self.corrupt(m)), m)
        self.run_check(R.ARTIFACT_CHECKSUM, lambda: C.checksum(m, self.corrupt(m)), m)
        if self.level == "quick":
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
            self.run_check(R.MANIFEST_MATCHES_SIDECAR, lambda: C.embedded_manifest(m, self.corrupt(m)), m)
        if m.pages is None or (not m.blocks_ok and not m.pages.out_of_range_count):
            self.skip(R.PAGE_NUMBERS_IN_RANGE, f"skipped: the blocks of {m.what} did not verify", m)
        else:
            self.run_check(R.PAGE_NUMBERS_IN_RANGE, lambda: C.page_numbers(m, self.corrupt(m)), m)

    def _sidecar(self, m: ChainMember) -> R.Outcome:
        assert m.target is not None and m.copy is not None
        key = sidecar_key(self.source, m.id)
        where = f"sidecar {key} on {m.target.name}"
        try:
            sc, _ = read_sidecar(m.target, key)
        except NotFound:
            return R.Outcome.fail(
                f"{where} is missing: destination {m.target.name} alone no longer lists backup {m.id}",
                self.new_full(f"the chain of {self.target.backup_id} is broken at {m.id}") if m.unreadable
                else self.corrupt(m) if self._good_copy(m)
                else self.new_full(f"the sidecar of backup {m.id} is missing from destination {m.target.name}"),
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


def _known_part(target: CatalogBackup, by_id: dict[str, CatalogBackup]) -> list[CatalogBackup]:
    """The members of a broken chain that are known, full first (as far as the parent walk gets)."""
    walk = [target]
    while walk[-1].strategy != "full" and walk[-1].parent_id in by_id and len(walk) <= len(by_id):
        walk.append(by_id[walk[-1].parent_id])  # type: ignore[index]
    walk.reverse()
    return walk
