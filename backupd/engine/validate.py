"""Validating a backup and its chain, at three cumulative levels:

- quick: the chain is complete; for every member, on the copy `choose_copy` reads, the sidecar
  verifies, the artifact's header verifies (format version, key id), and its size and whole-artifact
  BLAKE2b-256 (streamed) equal its trailer's and its sidecar's;
- standard: every block of every member authenticates and decompresses, the trailer matches, the
  embedded manifest equals the sidecar's, and page numbers are within the member's page count;
- deep: the chain is restored into a temp dir (removed afterwards), then integrity_check,
  foreign_key_check, schema hash, row counts and the custom SQL rules run on it.

Checks report, they never raise for artifact problems: a corrupt block, a missing chain member, a
wrong key or an unknown format version is a failed check naming the backup, the destination, the
object key and, when known, the block. Usage errors raise (an unknown backup id: NotFound).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import structlog
from structlog.contextvars import bound_contextvars

from backupd.core import chain
from backupd.core import format as fmt
from backupd.core.ids import is_backup_id, sidecar_key
from backupd.core.manifest import Manifest, Sidecar
from backupd.engine import rules as R
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext, Target
from backupd.engine.inventory import read_sidecar, reconcile
from backupd.engine.progress import Reporter
from backupd.engine.reading import choose_copy
from backupd.engine.rules import Report
from backupd.engine.restore import RestorePlan, materialize
from backupd.engine.snapshot import schema_and_counts
from backupd.engine.stream import ArtifactReader
from backupd.errors import (DESTINATION_CODES, BackupdError, CorruptArtifact, DestinationError, MissingChainMember,
                            NotFound, UsageError)
from backupd.sqlite_uri import connect as sqlite_connect

log = structlog.get_logger("backupd.validate")
READ_CHUNK = 1024 * 1024
MAX_LISTED = 20  # problems listed in a check's details


def validate_backup(ctx: EngineContext, backup_id: str, level: str) -> Report:
    """Validate `backup_id` and its chain at `level` (quick, standard or deep); see the module docstring."""
    if level not in R.LEVELS:
        raise UsageError(f"unknown validation level {level!r} (expected {', '.join(R.LEVELS)})")
    if not is_backup_id(backup_id):
        raise UsageError(f"{backup_id!r} is not a backup id (expected e.g. 20261126T160055.123456Z-3f9a1c)",
                         hint="list restore points with `backupd list`")
    started = time.monotonic()
    target = find_backup(ctx, backup_id)
    source = target.manifest.source
    with bound_contextvars(backup_id=backup_id, source=source):
        v = _Validation(ctx, target, level)
        v.run()
        report = R.Report(backup_id, source, level, tuple(v.results), tuple(m.id for m in v.members),
                          (time.monotonic() - started) * 1000)
        if level != "quick" and report.verdict != "fail":  # a warning (custom rule, foreign keys) is no fault of the copy
            for m in v.members:
                if m.target is not None:
                    ctx.catalog.mark_verified(m.id, m.target.name)
        for m in v.faulty_copies():  # no longer "verified healthy": most_reliable restores read them last
            ctx.catalog.mark_unverified(m.id, m.target.name)
        log.info("validation_completed", backup_id=backup_id, source=source, level=level, verdict=report.verdict,
                 failed=report.failed, chain=list(report.chain), duration_s=round(time.monotonic() - started, 3))
    return report


def find_backup(ctx: EngineContext, backup_id: str) -> CatalogBackup:
    """The catalog's entry for `backup_id`; reconciles every source with the destinations when it has none."""
    found = ctx.catalog.get(backup_id)
    if found is not None:
        return found
    for src in ctx.config.sources:
        with ctx.source_lock(src.name):
            reconcile(ctx, src.name)
        found = ctx.catalog.get(backup_id)
        if found is not None:
            return found
    raise NotFound(f"backup {backup_id} is not in the catalog nor on any configured destination",
                   hint="list restore points with `backupd list`")


class _PageScan:
    """Page numbers met in one artifact: out of range, repeated, and which of 1..page_count were seen."""

    def __init__(self, page_count: int):
        self.page_count = page_count
        self.seen = bytearray(page_count)  # one flag per page, as restore keeps
        self.total = 0
        self.out_of_range: list[dict[str, int]] = []
        self.out_of_range_count = 0
        self.repeated: list[dict[str, int]] = []
        self.repeated_count = 0

    def add(self, block: int, numbers: tuple[int, ...]) -> None:
        n = len(numbers)
        self.total += n
        if not n:
            return
        first = numbers[0]
        if (1 <= first and first + n - 1 <= self.page_count and numbers == tuple(range(first, first + n))
                and self.seen.find(1, first - 1, first - 1 + n) == -1):
            self.seen[first - 1 : first - 1 + n] = b"\x01" * n
            return
        for pgno in numbers:
            if not 1 <= pgno <= self.page_count:
                self.out_of_range_count += 1
                if len(self.out_of_range) < MAX_LISTED:
                    self.out_of_range.append({"block": block, "page": pgno})
            elif self.seen[pgno - 1]:
                self.repeated_count += 1
                if len(self.repeated) < MAX_LISTED:
                    self.repeated.append({"block": block, "page": pgno})
            else:
                self.seen[pgno - 1] = 1

    def first_missing(self) -> int | None:
        i = self.seen.find(0)
        return None if i == -1 else i + 1


@dataclass
class _Member:
    """One backup of the chain and what has been learnt about its copy."""

    backup: CatalogBackup
    target: Target | None = None
    copy: Copy | None = None
    unreadable: str = ""  # why its artifact cannot be read at all; "" when it can
    unreadable_code: str = "missing_chain_member"
    sidecar: Sidecar | None = None  # the destination's sidecar, once it verified
    header_ok: bool = False
    blocks_ok: bool = False
    pages: _PageScan | None = None
    embedded_manifest: bytes | None = None

    @property
    def id(self) -> str:
        return self.backup.backup_id

    @property
    def manifest(self) -> Manifest:
        return self.backup.manifest

    @property
    def key(self) -> str:
        assert self.copy is not None
        return self.copy.artifact_key

    @property
    def where(self) -> dict[str, Any]:
        return {"backup_id": self.id, "destination": self.target.name if self.target else None,
                "key": self.copy.artifact_key if self.copy else None}

    @property
    def short(self) -> str:
        return f"{self.id} on {self.target.name}" if self.target is not None else self.id

    @property
    def what(self) -> str:
        if self.target is None or self.copy is None:
            return f"backup {self.id}"
        return f"backup {self.id} ({self.copy.artifact_key} on {self.target.name})"

    def recorded(self) -> tuple[int, str, str]:
        """(artifact size, artifact digest, who recorded them): the destination's sidecar when it
        verified, else the catalog's copy of it."""
        if self.sidecar is not None:
            return self.sidecar.artifact_size, self.sidecar.artifact_digest, "sidecar"
        assert self.copy is not None
        return self.copy.artifact_size, self.copy.artifact_digest, "catalog"


_COPY_RULES = frozenset({R.SIDECAR_INTACT, R.ARTIFACT_HEADER, R.ARTIFACT_SIZE, R.ARTIFACT_CHECKSUM,
                         R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE})
_NOT_THE_COPY = DESTINATION_CODES | {"wrong_key", "unsupported_format_version"}


@dataclass
class _Validation:
    ctx: EngineContext
    target: CatalogBackup
    level: str
    results: list[R.CheckResult] = field(default_factory=list)
    members: list[_Member] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.target.manifest.source

    def faulty_copies(self) -> list[_Member]:
        """Members whose copy itself is damaged: a failed sidecar, header, size, checksum, block, manifest
        or page check. A destination that could not be reached, a wrong key or a newer format says
        nothing about the copy."""
        failed = {(r.details.get("backup_id"), r.details.get("destination")) for r in self.results
                  if r.failed and r.rule in _COPY_RULES and r.details.get("code") not in _NOT_THE_COPY}
        return [m for m in self.members if m.target is not None and (m.id, m.target.name) in failed]

    def run(self) -> None:
        self._check_chain()
        for m in self.members:
            self._member_checks(m)
        if self.level == "deep":
            self._deep_checks()

    # -- helpers ------------------------------------------------------------------------------
    def _run(self, rule: R.Rule, check: Callable[[], R.Outcome], m: _Member | None = None,
             prefix: str | None = None, where: dict[str, Any] | None = None,
             advice: R.ErrorAdvice | None = None) -> R.CheckResult:
        if where is None:
            where = m.where if m is not None else {"backup_id": self.target.backup_id}
        what = prefix if prefix is not None else (m.what if m is not None else "")
        result = R.run_check(rule, check, where=where, prefix=what, advice=advice or self._advice(m))
        self.results.append(result)
        return result

    def _skip(self, rule: R.Rule, reason: str, m: _Member | None = None) -> None:
        self.results.append(R.skipped(rule, reason, m.where if m is not None else {"backup_id": self.target.backup_id}))

    def _new_full(self, why: str) -> str:
        return f"take a new full backup of source {self.source!r}: {why}"

    def _advice(self, m: _Member | None) -> R.ErrorAdvice:
        """What to do about an error met while reading member `m`."""

        def advise(exc: BackupdError) -> str | None:
            dest = m.target.name if m is not None and m.target is not None else "?"
            bid = m.id if m is not None else self.target.backup_id
            if exc.code == "wrong_key":
                kid = exc.details.get("artifact_key_id")
                return (f"point destination {dest}'s encryption at the key its backups were made with"
                        + (f" (key id {kid})" if kid else ""))
            if exc.code == "unsupported_format_version":
                version = exc.details.get("version")
                return (f"upgrade backupd to a release that reads artifact format version {version} "
                        f"(backup {bid} on {dest})")
            if isinstance(exc, DestinationError):
                return f"check destination {dest}, then verify again: {exc.hint or exc.message}"
            if exc.code == "missing_chain_member":
                return self._new_full(f"the chain of {self.target.backup_id} is broken at "
                                      f"{exc.details.get('missing', bid)}")
            return self._corrupt(m)

        return advise

    def _corrupt(self, m: _Member | None) -> str:
        """The one recommendation for a damaged member, whichever check found it (so they dedupe)."""
        if m is None:
            return self._new_full(f"backup {self.target.backup_id} is corrupt")
        dest = m.target.name if m.target is not None else "?"
        depends = "" if m.id == self.target.backup_id else f", and {self.target.backup_id} depends on it"
        return self._new_full(f"backup {m.id} on destination {dest} is corrupt{depends}")

    def _sidecar_advice(self, m: _Member) -> R.ErrorAdvice:
        general = self._advice(m)

        def advise(exc: BackupdError) -> str | None:
            if exc.code != "corrupt_artifact" or m.target is None:
                return general(exc)
            return self._new_full(f"the sidecar of backup {m.id} on destination {m.target.name} is corrupt, so "
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
        self.members = [_Member(b) for b in resolved]

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
                    self._new_full(f"the chain of {tid} is broken at {missing}"),
                    code=broken.code, missing=missing, needed_by=broken.details.get("needed_by"), chain=ids,
                    destinations=found)
            absent = [m for m in self.members if m.unreadable]
            if absent:
                first = absent[0]
                children = {m.manifest.parent_id: m.id for m in self.members}
                return R.Outcome.fail(
                    f"the chain of {tid} is broken at {first.id}: {first.unreadable}",
                    self._new_full(f"the chain of {tid} is broken at {first.id}"),
                    code=first.unreadable_code, missing=first.id, needed_by=children.get(first.id),
                    destination=first.target.name if first.target else None,
                    key=first.copy.artifact_key if first.copy else None,
                    absent=[{"backup_id": m.id, "reason": m.unreadable} for m in absent], chain=ids)
            where = ", ".join(sorted({m.target.name for m in self.members if m.target}))
            return R.Outcome.ok(f"chain of {len(ids)} backup(s) complete on {where}", chain=ids)

        self._run(R.CHAIN_COMPLETE, check, prefix=f"chain of {tid}")

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

    def _locate(self, m: _Member) -> None:
        try:
            m.target, m.copy = choose_copy(self.ctx, m.backup)
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

    # -- quick and standard: one member --------------------------------------------------------
    def _member_checks(self, m: _Member) -> None:
        rules = [r for r in (R.SIDECAR_INTACT, R.ARTIFACT_HEADER, R.ARTIFACT_SIZE, R.ARTIFACT_CHECKSUM,
                             R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE)
                 if r.runs_at(self.level)]
        if m.target is None:
            for r in rules:
                self._skip(r, f"skipped: {m.unreadable}", m)
            return
        skey = sidecar_key(self.source, m.id)
        self._run(R.SIDECAR_INTACT, lambda: self._sidecar(m), m, prefix=f"sidecar {skey} on {m.target.name}",
                  where={**m.where, "key": skey}, advice=self._sidecar_advice(m))
        artifact_rules = [r for r in rules if r is not R.SIDECAR_INTACT]
        if m.unreadable:
            for r in artifact_rules:
                self._skip(r, f"skipped: {m.unreadable}", m)
            return
        self._run(R.ARTIFACT_HEADER, lambda: self._header(m), m)
        self._run(R.ARTIFACT_SIZE, lambda: self._size(m), m)
        self._run(R.ARTIFACT_CHECKSUM, lambda: self._checksum(m), m)
        if self.level == "quick":
            return
        if not m.header_ok:
            for r in (R.BLOCKS_AUTHENTIC, R.MANIFEST_MATCHES_SIDECAR, R.PAGE_NUMBERS_IN_RANGE):
                self._skip(r, f"skipped: the header of {m.what} did not verify (see artifact_header)", m)
            return
        self._run(R.BLOCKS_AUTHENTIC, lambda: self._blocks(m), m)
        if m.embedded_manifest is None:
            self._skip(R.MANIFEST_MATCHES_SIDECAR, f"skipped: the manifest block of {m.what} was not reached", m)
        else:
            self._run(R.MANIFEST_MATCHES_SIDECAR, lambda: self._embedded_manifest(m), m)
        if m.pages is None or (not m.blocks_ok and not m.pages.out_of_range_count):
            self._skip(R.PAGE_NUMBERS_IN_RANGE, f"skipped: the blocks of {m.what} did not verify", m)
        else:
            self._run(R.PAGE_NUMBERS_IN_RANGE, lambda: self._page_numbers(m), m)

    def _sidecar(self, m: _Member) -> R.Outcome:
        assert m.target is not None and m.copy is not None
        key = sidecar_key(self.source, m.id)
        where = f"sidecar {key} on {m.target.name}"
        try:
            sc, _ = read_sidecar(m.target, key)
        except NotFound:
            return R.Outcome.fail(
                f"{where} is missing: destination {m.target.name} alone no longer lists backup {m.id}",
                self._new_full(f"the chain of {self.target.backup_id} is broken at {m.id}") if m.unreadable
                else self._new_full(f"the sidecar of backup {m.id} is missing from destination {m.target.name}"),
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

    def _header(self, m: _Member) -> R.Outcome:
        assert m.target is not None
        with m.target.dest.open_read(m.key) as f:
            reader = ArtifactReader(f, m.target.keyring, what=m.what)
        self._header_describes(reader.header, m)
        m.header_ok = True
        enc = reader.header.get("encryption")
        how = f"encrypted, key id {enc.get('key_id')} is the configured key" if enc else "not encrypted"
        return R.Outcome.ok(f"{m.short}: format version {fmt.VERSION}, header verifies, {how}",
                            version=fmt.VERSION, encrypted=bool(enc))

    @staticmethod
    def _header_describes(header: dict[str, Any], m: _Member) -> None:
        if (header.get("kind") != "artifact" or header.get("backup_id") != m.id
                or header.get("page_size") != m.manifest.page_size):
            raise CorruptArtifact(
                f"{m.what}: header describes another backup ({header.get('kind')} {header.get('backup_id')})")

    def _size(self, m: _Member) -> R.Outcome:
        assert m.target is not None
        size = m.target.dest.stat(m.key).size
        recorded, _, by = m.recorded()
        if size == recorded:
            return R.Outcome.ok(f"{m.short}: {size} bytes, as its {by} records", size=size, recorded=recorded)
        how = "truncated" if size < recorded else "longer than written"
        return R.Outcome.fail(f"{m.what}: {size} bytes, but its {by} records {recorded} ({how})",
                              self._corrupt(m),
                              code="corrupt_artifact", size=size, recorded=recorded, recorded_by=by)

    def _checksum(self, m: _Member) -> R.Outcome:
        assert m.target is not None
        size = m.target.dest.stat(m.key).size
        if size < fmt.PREAMBLE_SIZE + fmt.TRAILER_SIZE:
            raise CorruptArtifact(f"{m.what}: artifact is truncated to {size} bytes")
        with m.target.dest.open_read(m.key) as f:
            scan = _ArtifactScan(f, size - fmt.TRAILER_SIZE, m.what)
            trailer = fmt.decode_trailer(_read_up_to(f, fmt.TRAILER_SIZE))
        computed = scan.digest
        _, recorded, by = m.recorded()
        details = {"computed": computed, "trailer": trailer.whole_digest.hex(), "recorded": recorded,
                   "recorded_by": by, "blocks": scan.blocks}
        problems = []
        if computed != trailer.whole_digest.hex():
            problems.append("the checksum of its bytes differs from its trailer's")
        if computed != recorded:
            problems.append(f"the checksum of its bytes differs from the one its {by} records")
        if scan.problem:
            problems.append(scan.problem)
        elif trailer.block_count != scan.blocks:
            problems.append(f"its trailer counts {trailer.block_count} blocks, it holds {scan.blocks}")
        if trailer.blocks_end != size - fmt.TRAILER_SIZE:
            problems.append(f"its trailer says the blocks end at byte {trailer.blocks_end}, "
                            f"the artifact has {size - fmt.TRAILER_SIZE} bytes before it")
        if problems:
            return R.Outcome.fail(f"{m.what}: whole-artifact check failed: " + "; ".join(problems),
                                  self._corrupt(m), code="corrupt_artifact", **details)
        return R.Outcome.ok(f"{m.short}: BLAKE2b-256 {computed[:16]}… equals its trailer's and its {by}'s, "
                            f"{scan.blocks} blocks as counted", **details)

    def _blocks(self, m: _Member) -> R.Outcome:
        assert m.target is not None
        ps = m.manifest.page_size
        m.pages = scan = _PageScan(m.manifest.page_count)
        count = 0
        with m.target.dest.open_read(m.key) as f:
            reader = ArtifactReader(f, m.target.keyring, what=m.what)
            self._header_describes(reader.header, m)
            with closing(reader.blocks(prefetch=True)) as blocks:
                for seq, kind, payload in blocks:
                    count += 1
                    if kind == fmt.KIND_PAGES:
                        try:
                            numbers, _ = fmt.decode_pages(payload, ps)
                        except CorruptArtifact as exc:
                            raise CorruptArtifact(f"{m.what}: block {seq}: {exc.message}",
                                                  details={"block": seq}) from None
                        scan.add(seq, numbers)
                    else:
                        m.embedded_manifest = bytes(payload)
        m.blocks_ok = True
        how = "AEAD tags" if reader.header.get("encryption") else "keyed checksums"
        return R.Outcome.ok(f"{m.short}: {count} blocks ({scan.total} pages) verified by {how}, trailer matches",
                            blocks=count, pages=scan.total)

    def _embedded_manifest(self, m: _Member) -> R.Outcome:
        assert m.embedded_manifest is not None and m.target is not None
        try:
            embedded = Manifest.from_dict(_json_loads(m.embedded_manifest))
        except CorruptArtifact as exc:
            raise CorruptArtifact(f"{m.what}: embedded manifest: {exc.message}") from None
        against, by = (m.sidecar.manifest, "sidecar") if m.sidecar is not None else (m.manifest, "catalog")
        if embedded == against:
            return R.Outcome.ok(f"{m.short}: embedded manifest equals the {by}'s", against=by)
        differs = sorted(k for k, v in embedded.to_dict().items() if against.to_dict().get(k) != v)
        return R.Outcome.fail(f"{m.what}: embedded manifest differs from the {by}'s in {', '.join(differs)}",
                              self._corrupt(m),
                              code="corrupt_artifact", against=by, fields=differs)

    def _page_numbers(self, m: _Member) -> R.Outcome:
        assert m.pages is not None and m.target is not None
        scan, man = m.pages, m.manifest
        problems, details = [], {"pages": scan.total, "page_count": man.page_count}
        if scan.out_of_range_count:
            first = scan.out_of_range[0]
            problems.append(f"{scan.out_of_range_count} page number(s) outside 1..{man.page_count} "
                            f"(first: page {first['page']} in block {first['block']})")
            details.update(block=first["block"], out_of_range=scan.out_of_range)
        if scan.repeated_count:
            first = scan.repeated[0]
            problems.append(f"{scan.repeated_count} page(s) stored twice (first: page {first['page']} "
                            f"in block {first['block']})")
            details.setdefault("block", first["block"])
            details["repeated"] = scan.repeated
        if m.blocks_ok and scan.total != man.changed_pages:
            problems.append(f"{scan.total} pages stored, the manifest records {man.changed_pages}")
        missing = scan.first_missing() if m.blocks_ok and man.strategy == "full" else None
        if missing is not None:
            problems.append(f"the full backup lacks page {missing} of {man.page_count}")
            details["missing_page"] = missing
        if problems:
            return R.Outcome.fail(f"{m.what}: " + "; ".join(problems),
                                  self._corrupt(m),
                                  code="corrupt_artifact", **details)
        return R.Outcome.ok(f"{m.short}: {scan.total} page numbers within 1..{man.page_count}", **details)

    # -- deep ---------------------------------------------------------------------------------
    def _deep_checks(self) -> None:
        rules_cfg = getattr(getattr(self.ctx.config, "validation", None), "rules", []) or []
        custom = [r for r in rules_cfg if not r.sources or self.source in r.sources]
        deep = [R.RESTORE_COMPLETES, R.INTEGRITY_CHECK, R.FOREIGN_KEY_CHECK, R.SCHEMA_HASH, R.ROW_COUNTS,
                *(R.sql_rule(r.id, r.severity, r.description) for r in custom)]
        blocking = list(dict.fromkeys(c.rule.id for c in self.results
                                      if c.failed and c.rule.severity in ("error", "critical")))
        if blocking:
            for r in deep:
                self._skip(r, f"skipped: the chain failed {', '.join(blocking)}, so a restore is not attempted")
            return
        # in the state dir, not /tmp: a restored database can be large, and /tmp is often RAM
        with tempfile.TemporaryDirectory(prefix=".backupd-verify-", dir=self.ctx.state_dir,
                                         ignore_cleanup_errors=True) as tmp:
            path = Path(tmp) / f"{self.target.backup_id}.db"
            restored = self._run(R.RESTORE_COMPLETES, lambda: self._restore(path),
                                 prefix=f"restore of {self.target.backup_id}")
            if restored.failed:
                for r in deep[1:]:
                    self._skip(r, "skipped: the chain did not restore (see restore_completes)")
                return
            conn = sqlite_connect(path, mode="rw", isolation_level=None)
            try:
                self._database_checks(conn, custom)
            finally:
                conn.close()

    def _restore(self, path: Path) -> R.Outcome:
        plan = RestorePlan(self.target, [m.backup for m in self.members], None)
        n = materialize(self.ctx, plan, path, Reporter(None))
        return R.Outcome.ok(f"chain of {len(self.members)} restored into a temporary database ({n} bytes)",
                            bytes=n)

    def _database_checks(self, conn: sqlite3.Connection, custom: list[Any]) -> None:
        tid, man = self.target.backup_id, self.target.manifest
        shape: dict[str, Any] = {}

        def bad(check: str) -> str:
            return self._new_full(f"the restored database of {tid} fails {check}; check the source database too")

        def integrity() -> R.Outcome:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(100)")]
            if rows == ["ok"]:
                return R.Outcome.ok("integrity_check: ok")
            return R.Outcome.fail(f"the restored database of {tid} fails integrity_check: {rows[0]}",
                                  bad("integrity_check"), problems=rows[:MAX_LISTED], problem_count=len(rows))

        def foreign_keys() -> R.Outcome:
            found, n = [], 0
            for table, rowid, parent, fkid in conn.execute("PRAGMA foreign_key_check"):
                n += 1
                if len(found) < MAX_LISTED:
                    found.append({"table": table, "rowid": rowid, "parent": parent, "fkid": fkid})
            if not n:
                return R.Outcome.ok("foreign_key_check: no violation")
            return R.Outcome.fail(
                f"the restored database of {tid} has {n} foreign key violation(s) (first: {found[0]['table']} "
                f"row {found[0]['rowid']} -> {found[0]['parent']})",
                f"check the foreign keys of source {self.source!r}: its backup {tid} has {n} violation(s)",
                violations=found, violation_count=n)

        def schema() -> R.Outcome:
            shape["hash"], shape["counts"] = schema_and_counts(conn)
            if shape["hash"] == man.schema_hash:
                return R.Outcome.ok("schema hash equals the one recorded at backup time", schema_hash=man.schema_hash)
            return R.Outcome.fail(f"the restored database of {tid} has schema hash {shape['hash'][:16]}…, "
                                  f"{man.schema_hash[:16]}… was recorded at backup time", bad("schema_hash"),
                                  schema_hash=shape["hash"], recorded=man.schema_hash)

        def row_counts() -> R.Outcome:
            if "counts" not in shape:
                shape["hash"], shape["counts"] = schema_and_counts(conn)
            counts: dict[str, int] = shape["counts"]
            wrong = {t: {"rows": counts.get(t), "recorded": man.tables.get(t)}
                     for t in sorted(set(counts) | set(man.tables)) if counts.get(t) != man.tables.get(t)}
            if not wrong:
                return R.Outcome.ok(f"{len(counts)} table(s) hold the row counts recorded at backup time",
                                    tables=len(counts))
            text = "; ".join(f"{t}: {w['rows']} rows, {w['recorded']} recorded" for t, w in list(wrong.items())[:5])
            return R.Outcome.fail(f"the restored database of {tid} has other row counts than recorded: {text}",
                                  bad("row_counts"), tables=wrong)

        for rule, fn in ((R.INTEGRITY_CHECK, integrity), (R.FOREIGN_KEY_CHECK, foreign_keys),
                         (R.SCHEMA_HASH, schema), (R.ROW_COUNTS, row_counts)):
            self._run(rule, _sql_errors_fail(fn, f"the restored database of {tid}", bad(rule.id)),
                      prefix=f"restored {tid}")
        for cfg_rule in custom:
            self._run(R.sql_rule(cfg_rule.id, cfg_rule.severity, cfg_rule.description),
                      lambda r=cfg_rule: self._sql_rule(conn, r), prefix=f"restored {tid}")

    def _sql_rule(self, conn: sqlite3.Connection, rule: Any) -> R.Outcome:
        tid = self.target.backup_id
        what = rule.description or rule.sql
        try:
            conn.execute("PRAGMA query_only = ON")  # custom rules only read (set again: a rule may be a PRAGMA)
            with closing(conn.execute(rule.sql)) as cur:
                row = cur.fetchone()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            return R.Outcome.fail(f"custom rule {rule.id}: SQL error on the restored database of {tid}: {exc}",
                                  f"fix validation rule {rule.id!r} in the config: {exc}",
                                  code="sql_error", sql=rule.sql, error=str(exc))
        if row is None:
            return R.Outcome.fail(f"custom rule {rule.id} returned no row on backup {tid} ({what})",
                                  f"make validation rule {rule.id!r} return one row",
                                  sql=rule.sql, value=None)
        value = row[0] if row else None
        shown = value if isinstance(value, (int, float, str)) or value is None else repr(value)
        if value:
            return R.Outcome.ok(f"custom rule {rule.id} holds: {what}", sql=rule.sql, value=shown)
        return R.Outcome.fail(f"custom rule {rule.id} does not hold on backup {tid}: {what} (got {shown!r})",
                              f"investigate source {self.source!r}: custom rule {rule.id} ({what}) does not hold "
                              f"on backup {tid}", sql=rule.sql, value=shown)


def _sql_errors_fail(fn: Callable[[], R.Outcome], what: str, advice: str) -> Callable[[], R.Outcome]:
    def run() -> R.Outcome:
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            return R.Outcome.fail(f"{what}: {exc}", advice, code="corrupt_database", error=str(exc))

    return run


def _known_part(target: CatalogBackup, by_id: dict[str, CatalogBackup]) -> list[CatalogBackup]:
    """The members of a broken chain that are known, full first (as far as the parent walk gets)."""
    walk = [target]
    while walk[-1].strategy != "full" and walk[-1].parent_id in by_id and len(walk) <= len(by_id):
        walk.append(by_id[walk[-1].parent_id])  # type: ignore[index]
    walk.reverse()
    return walk


def _json_loads(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise CorruptArtifact(f"not valid JSON ({exc})") from None


class _ArtifactScan:
    """One streamed pass over an artifact's bytes before its trailer (`end`): their BLAKE2b-256, and the
    block framing walked by length prefix, without decrypting or decompressing anything."""

    def __init__(self, f: BinaryIO, end: int, what: str):
        self._f, self._what = f, what
        self._hash = hashlib.blake2b(digest_size=fmt.DIGEST_SIZE)
        self.offset = 0
        self.blocks = 0
        self.problem = ""
        _, _, header_len, _ = fmt.PREAMBLE.unpack(self._take(fmt.PREAMBLE_SIZE))
        body_start = fmt.PREAMBLE_SIZE + header_len + fmt.DIGEST_SIZE
        if body_start > end:
            self.problem = f"its header length {header_len} runs past its trailer"
        else:
            self._skip(body_start - self.offset)
            while self.offset < end:
                if self.offset + fmt.BLOCK_LEN.size > end:
                    self.problem = f"block {self.blocks}'s length prefix runs into the trailer"
                    break
                (n,) = fmt.BLOCK_LEN.unpack(self._take(fmt.BLOCK_LEN.size))
                if self.offset + n > end:
                    self.problem = f"block {self.blocks} claims {n} bytes, which run past the trailer"
                    break
                self._skip(n)
                self.blocks += 1
        self._skip(end - self.offset)
        self.digest = self._hash.hexdigest()

    def _take(self, n: int) -> bytes:
        data = _read_up_to(self._f, n)
        if len(data) < n:
            raise CorruptArtifact(f"{self._what}: artifact shrank while being read")
        self._hash.update(data)
        self.offset += n
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            n -= len(self._take(min(READ_CHUNK, n)))


def _read_up_to(f: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data

