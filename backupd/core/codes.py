"""The error catalogue: every code a user can see, defined once, with its exit code, whether a retry may
succeed, and a one-line meaning. docs/ERRORS.md is generated from it (`python -m backupd.errors > docs/ERRORS.md`).

Error classes (`backupd.errors`) name only their code and take `exit_code` and `retryable` from here;
the daemon retries a failed job on `retryable` alone. The client (`backupd_client.protocol.ErrorCode`)
cannot import backupd: a test checks its codes are the WIRE and CLIENT ones below.

Scopes: WIRE codes reach a client on the control socket (an error reply or a job's `error.code`) and
`--json` output; CLIENT codes are made by `backupctl` itself; LOCAL ones only by `backupd` on this
machine; CHECK codes name why a validation check failed (its `details.code`); WARNING codes prefix a
backup's `warnings`. Check and warning codes do not end a command by themselves (no exit code).
"""

from __future__ import annotations

from dataclasses import dataclass

WIRE, CLIENT, LOCAL, CHECK, WARNING = "wire", "client", "local", "check", "warning"
SCOPES = (WIRE, CLIENT, LOCAL, CHECK, WARNING)
USAGE, FAILED = 2, 1  # the CLI contract: 2 bad usage or config, 1 the operation failed


@dataclass(frozen=True)
class Code:
    """One catalogued code. `copy_damage` is False for errors that say nothing about the copy being read
    (the destination failed, the key is wrong, the format is newer): validation does not blame the copy."""

    code: str
    scope: str
    exit_code: int | None
    retryable: bool
    meaning: str
    copy_damage: bool = True


_ALL = (
    # requests and the daemon
    Code("bad_request", WIRE, USAGE, False, "a malformed message, or an argument of the wrong name, type or value"),
    Code("unknown_op", WIRE, FAILED, False, "the daemon does not know the op (it is older than the client)"),
    Code("unsupported_protocol_version", WIRE, FAILED, False, 
         "the request's protocol version is not one the daemon speaks"),
    Code("not_found", WIRE, FAILED, False, "no such job, schedule, backup or stored object"),
    Code("conflict", WIRE, FAILED, False, "the request clashes with the current state (a name in use, a sole copy)"),
    Code("shutting_down", WIRE, FAILED, False, "the daemon is stopping and accepts no new work"),
    Code("forbidden", WIRE, FAILED, False,
         "refused by policy: the peer's role, or a restore target outside the allowed dirs"),
    # usage and config
    Code("bad_usage", WIRE, USAGE, False, "a command or request that cannot be carried out as given"),
    Code("config_invalid", WIRE, USAGE, False, "the config file (or a run-time destination or schedule) is invalid"),
    Code("unknown_source", WIRE, USAGE, False, "no source of that name is configured"),
    Code("unknown_destination", WIRE, USAGE, False, "no destination of that name is configured"),
    Code("target_exists", WIRE, USAGE, False, "the restore target exists and --overwrite was not given"),
    Code("key_unusable", WIRE, USAGE, False, "the key file or passphrase cannot be used (missing, bad size or mode)"),
    # the data
    Code("wrong_key", WIRE, FAILED, False, "the backup was encrypted with another key", copy_damage=False),
    Code("corrupt_artifact", WIRE, FAILED, False, "a stored artifact or sidecar failed its checks"),
    Code("unsupported_format_version", WIRE, FAILED, False, "the artifact was written by a newer backupd",
       copy_damage=False),
    Code("missing_chain_member", WIRE, FAILED, False, "a backup the chain needs is missing"),
    Code("no_restore_point", WIRE, FAILED, False, "no backup of the source at or before the time asked for"),
    Code("restore_failed", WIRE, FAILED, False, "the restore could not be completed; the target is left untouched"),
    Code("verification_failed", WIRE, FAILED, True, "the backup failed validation (a new backup may pass)"),
    Code("state_corrupt", WIRE, FAILED, False, "catalog.db is damaged; run `backupd catalog rebuild`"),
    # the source
    Code("snapshot_failed", WIRE, FAILED, True, "the source database could not be snapshotted"),
    Code("source_busy", WIRE, FAILED, True, "another process holds the source's lock"),
    # destinations
    Code("destination_error", WIRE, FAILED, False, "a destination failed in a way a retry will not fix",
       copy_damage=False),
    Code("destination_unavailable", WIRE, FAILED, True, "a destination could not be reached (connection, timeout)",
       copy_damage=False),
    Code("destination_full", WIRE, FAILED, False, "no space left on the destination, or its quota is exhausted",
       copy_damage=False),
    Code("destination_read_only", WIRE, FAILED, False, "the destination's file system is read-only", copy_damage=False),
    Code("destination_permission_denied", WIRE, FAILED, False, "the destination refuses backupd's user",
       copy_damage=False),
    Code("destination_stale_handle", WIRE, FAILED, True, "a stale NFS handle: the export went away under the mount",
       copy_damage=False),
    Code("destination_io_error", WIRE, FAILED, True, "the destination's medium reported an I/O error",
       copy_damage=False),
    # how a job ended
    Code("partial", WIRE, FAILED, False, "stored, but some copies failed; a resync job retries those copies"),
    Code("cancelled", WIRE, FAILED, False, "cancelled by a user, or interrupted (Ctrl-C)"),
    Code("timed_out", WIRE, FAILED, True, "the job ran longer than its timeout and was cancelled"),
    Code("worker_died", WIRE, FAILED, True, "the job's process died (killed, out of memory)"),
    Code("interrupted", WIRE, FAILED, False, "the daemon stopped while the job ran; it is not resumed"),
    Code("internal_error", WIRE, FAILED, True,
         "a bug; reported, the daemon keeps running, a job is retried per its policy"),
    # backupctl itself
    Code("daemon_unreachable", CLIENT, FAILED, True, "no daemon answers on the control socket"),
    Code("timeout", CLIENT, FAILED, True, "the daemon gave no answer in time"),
    # backupd on this machine
    Code("already_running", LOCAL, FAILED, False, "another daemon already uses this config's state dir or socket"),
    # why a validation check failed
    Code("catalog_mismatch", CHECK, None, False, "the catalog and the stored manifest disagree"),
    Code("source_flagged", CHECK, None, False, "the backup is of a source that looked damaged at the snapshot"),
    Code("corrupt_database", CHECK, None, False, "the restored database fails SQLite's integrity check"),
    Code("sql_error", CHECK, None, False, "a validation rule's SQL failed on the restored database"),
    # a backup's warnings
    Code("source_corrupt", WARNING, None, False, "the source check found damage in the snapshot"),
    Code("source_shrunk", WARNING, None, False, "the source is empty or under half its previous pages or rows"),
)

CATALOGUE: dict[str, Code] = {c.code: c for c in _ALL}
WIRE_CODES = frozenset(c.code for c in _ALL if c.scope == WIRE)
CLIENT_CODES = frozenset(c.code for c in _ALL if c.scope == CLIENT)
NOT_THE_COPY = frozenset(c.code for c in _ALL if not c.copy_damage)  # failures that do not blame a copy


def entry(code: str) -> Code:
    """The catalogue entry of `code`; KeyError for a code nobody catalogued."""
    return CATALOGUE[code]


def retryable(code: str | None) -> bool:
    """Whether a job that failed with `code` may be retried; an unknown code is not."""
    known = CATALOGUE.get(code or "")
    return known is not None and known.retryable


_TITLES = {WIRE: "Errors (`backupd`, `backupctl`, the control socket)", CLIENT: "Made by `backupctl` itself",
           LOCAL: "Made by `backupd` on this machine only", CHECK: "Why a validation check failed (`details.code`)",
           WARNING: "A backup's warnings (prefix of each entry of `warnings`)"}


def render_markdown() -> str:
    """docs/ERRORS.md."""
    out = ["# Error codes", "",
           "Generated from `backupd/core/codes.py` (`python -m backupd.errors > docs/ERRORS.md`); "
           "a test checks it is current.", "",
           "Exit codes: 0 success, 1 the operation failed, 2 bad usage or config. *Retried*: a scheduled job "
           "that fails with the code is run again (with backoff, up to its `retry.max_attempts`); a backup "
           "that failed on every destination is retried if any destination's failure is."]
    for scope in SCOPES:
        out += ["", f"## {_TITLES[scope]}", ""]
        rows = [c for c in _ALL if c.scope == scope]
        if scope in (CHECK, WARNING):
            out += ["| code | meaning |", "|---|---|"] + [f"| `{c.code}` | {c.meaning} |" for c in rows]
            continue
        out += ["| code | exit | retried | meaning |", "|---|---|---|---|"]
        for c in rows:
            retried = "yes" if c.retryable else "no"
            out.append(f"| `{c.code}` | {c.exit_code} | {retried} | {c.meaning} |")
    return "\n".join(out) + "\n"
