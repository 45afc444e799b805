"""The chain checks of a validation (quick level): every member of the chain is known and its artifact
exists on the copy read (`chain_complete`), and the source passed its check at backup time
(`source_unflagged`). Locating each member's copy here is what the per-copy checks then read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backupd.core import chain
from backupd.core import validation_report as R
from backupd.core.ids import sidecar_key
from backupd.engine.copy_checks import ChainMember
from backupd.engine.inventory import read_sidecar
from backupd.engine.reading import choose_copy
from backupd.errors import BackupdError, MissingChainMember, NotFound

if TYPE_CHECKING:
    from backupd.engine.validate import Validation


def check_chain(v: Validation) -> None:
    """Resolve the chain of `v.target` into `v.members` (as far as it is known), locate each member's
    copy, and run the chain checks."""
    tid = v.target.backup_id
    by_id = {b.backup_id: b for b in v.ctx.catalog.backups(v.source)}
    resolved, broken = chain.walk(v.target, by_id)
    if tid not in by_id:
        broken = MissingChainMember(f"backup {tid} is not known", details={"missing": tid})
    v.members = [ChainMember(b) for b in resolved]
    advice = v.advice

    def check() -> R.Outcome:
        ids = [m.id for m in v.members]
        for m in v.members:
            locate(v, m)
        if broken is not None:
            missing = broken.details.get("missing")
            found = probe_sidecars(v, missing) if isinstance(missing, str) else {}
            why = "; ".join(f"{dest}: {state}" for dest, state in found.items())
            return R.Outcome.fail(
                f"the chain of {tid} is broken: {broken.message}" + (f" [{why}]" if why else ""),
                advice.new_full(f"the chain of {tid} is broken at {missing}"),
                code=broken.code, missing=missing, needed_by=broken.details.get("needed_by"), chain=ids,
                destinations=found)
        absent = [m for m in v.members if m.unreadable]
        if absent:
            first = absent[0]
            children = {m.manifest.parent_id: m.id for m in v.members}
            return R.Outcome.fail(
                f"the chain of {tid} is broken at {first.id}: {first.unreadable}",
                advice.corrupt(first) if advice.good_copy(first) else
                advice.new_full(f"the chain of {tid} is broken at {first.id}"),
                code=first.unreadable_code, missing=first.id, needed_by=children.get(first.id),
                destination=first.target.name if first.target else None,
                key=first.copy.artifact_key if first.copy else None,
                absent=[{"backup_id": m.id, "reason": m.unreadable} for m in absent], chain=ids)
        where = ", ".join(sorted({m.target.name for m in v.members if m.target}))
        return R.Outcome.ok(f"chain of {len(ids)} backup(s) complete on {where}", chain=ids)

    v.run_check(R.CHAIN_COMPLETE, check, prefix=f"chain of {tid}")
    v.run_check(R.SOURCE_UNFLAGGED, lambda: source_flags(v), prefix=tid)


def source_flags(v: Validation) -> R.Outcome:
    """Whether the source was flagged (damaged or shrunk) when the backup was taken."""
    warnings = v.target.manifest.warnings
    if not warnings:
        return R.Outcome.ok("the source passed its check at backup time")
    return R.Outcome.fail(
        f"{v.target.backup_id} was taken of a flagged source: " + "; ".join(warnings),
        f"restore an older backup of source {v.source!r} if this one holds the damage; check the "
        "source database itself", code="source_flagged", warnings=list(warnings))


def probe_sidecars(v: Validation, backup_id: str) -> dict[str, str]:
    """Why a member the catalog lacks is missing, per destination: absent, or present but unreadable."""
    key = sidecar_key(v.source, backup_id)
    found = {}
    for target in v.ctx.enabled_targets():
        try:
            read_sidecar(target, key)
            found[target.name] = f"sidecar {key} is present and verifies (run `backupd catalog rebuild`)"
        except NotFound:
            found[target.name] = f"no sidecar {key}"
        except BackupdError as exc:
            found[target.name] = f"sidecar {key} is unreadable: {exc.message}"
    return found


def locate(v: Validation, m: ChainMember) -> None:
    """Find the copy of `m` to check (the chosen destination's, or the one read first), and whether its
    artifact is there."""
    try:
        m.target, m.copy = choose_copy(v.ctx, m.backup, v.choice.destination)
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
