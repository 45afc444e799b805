"""Loading backupd.toml: parse, check the shape, then check across sections, key files and environment.

Every problem found in a stage is reported at once, as `path: problem` (e.g.
`destinations[1].compression_level: must be 1..22 (got 40)`). Any input gives a `Config` or a
`ConfigError`, never another exception.
"""

from __future__ import annotations

import grp
import json
import os
import re
import shlex
import stat
import tomllib
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from backupd.config.destination import DestinationConfig
from backupd.config.fields import PROBLEM, show_value
from backupd.config.files import login_file_problem as _login_file_problem
from backupd.config.notifier_checks import notifier_problems
from backupd.config.schedule import ScheduleConfig
from backupd.config.schema import Config, ConfigDocument
from backupd.core.vocab import VALIDATION_LEVELS, ValidationLevel
from backupd.errors import ConfigError

KEY_SIZE = 32
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "path_type": "a path string",
    "list_type": "an array",
    "model_type": "a table",
    "dict_type": "a table",
}
_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
MAX_SOCKET_PATH_BYTES = 107  # sun_path holds 108 bytes, the last one a NUL


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config at `path`; `environ` (default `os.environ`) supplies passphrases."""
    config_path = Path(os.path.abspath(path))
    source = str(path)
    data = _read_toml(config_path, source)
    context = {"base_dir": config_path.parent, "default_validation_level": _default_level(data),
               "environ": os.environ if environ is None else environ}
    try:
        document = ConfigDocument.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()], source=source) from None
    problems = _cross_field_problems(document)
    problems += _control_problems(document)
    problems += _encryption_problems(document.destinations, os.environ if environ is None else environ)
    problems += _remote_login_problems(document.destinations, os.environ if environ is None else environ)
    problems += notifier_problems(document.notifiers, os.environ if environ is None else environ)
    if problems:
        raise ConfigError(problems, source=source)
    return Config(path=config_path, **dict(document))


def parse_schedule(
    mapping: Mapping[str, Any], sources: Set[str], *, destinations: Set[str] = frozenset(),
    notifiers: Set[str] = frozenset(), default_validation_level: str = ValidationLevel.STANDARD,
) -> ScheduleConfig:
    """Validate one schedule given at run time (e.g. over the control socket), as a [[schedules]] table.

    `sources`, `destinations` and `notifiers` are the configured names; `true` for validate_after_backup means
    `default_validation_level`. Problems are reported together as `schedule.<key>: problem`.
    """
    try:
        context = {"default_validation_level": default_validation_level}
        schedule = ScheduleConfig.model_validate(mapping, context=context)
    except ValidationError as exc:
        raise ConfigError([_describe(error, prefix=("schedule",)) for error in exc.errors()]) from None
    if schedule.source not in sources:
        configured = ", ".join(sorted(sources)) or "none"
        raise ConfigError([f"schedule.source: unknown source {schedule.source!r} (configured: {configured})"])
    problems = _unknown_destinations("schedule", schedule, destinations)
    if problems := problems + unknown_notifiers("schedule", schedule.notify, notifiers):
        raise ConfigError(problems)
    return schedule


def parse_destination(
    mapping: Mapping[str, Any], taken: Set[str], *, environ: Mapping[str, str] | None = None
) -> DestinationConfig:
    """Validate one destination given at run time (e.g. over the control socket), as a [[destinations]] table.

    Paths must be absolute (there is no config file to resolve them against); key and login files are
    checked as at load time; `taken` are the names already in use. Problems are reported together as
    `destination.<key>: problem`.
    """
    try:
        destination = DestinationConfig.model_validate(mapping)
    except ValidationError as exc:
        raise ConfigError([_describe(error, prefix=("destination",)) for error in exc.errors()]) from None
    if destination.name in taken:
        raise ConfigError([f"destination.name: a destination named {destination.name!r} already exists"])
    environ = os.environ if environ is None else environ
    problems = [_relocate(p) for p in _encryption_problems([destination], environ)]
    problems += [_relocate(p) for p in _remote_login_problems([destination], environ)]
    if problems:
        raise ConfigError(problems)
    return destination


def _relocate(problem: str) -> str:
    """`destinations[0].key: ...` (the one-item list) as `destination.key: ...`."""
    return "destination" + problem.removeprefix("destinations[0]")


def _default_level(data: dict[str, Any]) -> str:
    """validation.default_level as written, for `validate_after_backup = true` (its own errors come later)."""
    validation = data.get("validation")
    level = validation.get("default_level", ValidationLevel.STANDARD) if isinstance(validation, dict) else None
    return level if level in VALIDATION_LEVELS else ValidationLevel.STANDARD


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        problem = f"TOML syntax error: {exc}"
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (byte {exc.start})"
    except RecursionError:
        problem = "TOML syntax error: values nested too deeply"
    except (OSError, ValueError) as exc:
        problem = f"cannot read config file {str(path)!r}: {getattr(exc, 'strerror', None) or exc}"
    raise ConfigError([problem], source=source)


def _describe(error: ErrorDetails, prefix: tuple[str, ...] = ()) -> str:
    """Turn one pydantic error into `a.b[0].c: problem`, in our words rather than pydantic's."""
    loc, kind, value, ctx = prefix + tuple(error["loc"]), error["type"], error["input"], error.get("ctx", {})
    if kind == PROBLEM:
        message = error["msg"]
    elif kind == "missing":
        message = "required section missing" if len(loc) == 1 else "required key missing"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]} (got {_show(value)})"
    elif kind == "literal_error":
        expected = ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
        message = f"unknown {loc[-1]} {_show(value)} (expected {expected})"
    elif kind in _BOUNDS:
        bound, symbol = _BOUNDS[kind]
        message = f"must be {symbol} {ctx[bound]:g} (got {_show(value)})"
    elif kind == "string_pattern_mismatch":
        message = f"must match {ctx['pattern']} (got {_show(value)})"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "finite_number":
        message = f"must be a finite number (got {_show(value)})"
    else:
        message = f"invalid value {_show(value)}"
    return f"{_location(loc)}: {message}"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            text += f".{key}" if text else key
    return text


_show = show_value


def _cross_field_problems(document: ConfigDocument) -> list[str]:
    problems = []
    for section, noun, names in (
        ("sources", "source", [s.name for s in document.sources]),
        ("destinations", "destination", [d.name for d in document.destinations]),
    ):
        if not names:
            problems.append(f"{section}: at least one {noun} is required")
        problems += _duplicates(section, "name", f"{noun} name", names)
    schedules = document.schedules
    problems += _duplicates("schedules", "name", "schedule name", [schedule.name for schedule in schedules])
    problems += _duplicates("notifiers", "name", "notifier name", [n.name for n in document.notifiers])
    rules = document.validation.rules
    problems += _duplicates("validation.rules", "id", "rule id", [rule.id for rule in rules])
    known = [source.name for source in document.sources]
    for index, rule in enumerate(rules):
        for position, name in enumerate(rule.sources):
            if name not in known:
                problems.append(
                    f"validation.rules[{index}].sources[{position}]: unknown source {name!r}"
                    f" (configured: {', '.join(known) or 'none'})"
                )
    destinations = {d.name for d in document.destinations}
    notifiers = {n.name for n in document.notifiers}
    for index, schedule in enumerate(schedules):
        if schedule.source not in known:
            configured = ", ".join(known) or "none"
            problems.append(f"schedules[{index}].source: unknown source {schedule.source!r} (configured: {configured})")
        problems += _unknown_destinations(f"schedules[{index}]", schedule, destinations)
        problems += unknown_notifiers(f"schedules[{index}]", schedule.notify, notifiers)
    for index, source in enumerate(document.sources):
        if source.min_copies > len(destinations) > 0:
            problems.append(f"sources[{index}].min_copies: {source.min_copies} copies asked for, but only"
                            f" {len(destinations)} destination(s) are configured")
    return problems


def _unknown_destinations(where: str, schedule: ScheduleConfig, configured: Set[str]) -> list[str]:
    return [f"{where}.destinations[{i}]: unknown destination {name!r} (configured: {', '.join(sorted(configured))})"
            for i, name in enumerate(schedule.destinations) if name not in configured]


def unknown_notifiers(where: str, names: Sequence[str], configured: Set[str]) -> list[str]:
    """A problem for each name in `names` (a `notify` list at `where`) that names no [[notifiers]] table."""
    known = ", ".join(sorted(configured)) or "none"
    return [f"{where}.notify[{i}]: unknown notifier {name!r} (configured: {known})"
            for i, name in enumerate(names) if name not in configured]


def _control_problems(document: ConfigDocument) -> list[str]:
    problems = []
    control = document.control
    size = len(os.fsencode(control.socket))
    if size > MAX_SOCKET_PATH_BYTES:
        problems.append(
            f"control.socket: {str(control.socket)!r} is {size} bytes, longer than the {MAX_SOCKET_PATH_BYTES}"
            " a Unix socket path may have; choose a shorter path"
        )
    if control.group is not None:
        try:
            grp.getgrnam(control.group)
        except KeyError:
            problems.append(
                f"control.group: no group {control.group!r} on this machine; create it (e.g. with systemd-sysusers)"
                " or remove the key to allow the daemon's user only"
            )
    return problems


def _duplicates(section: str, key: str, what: str, values: list[str]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value in first:
            problems.append(f"{section}[{index}].{key}: duplicate {what} {value!r} (first at {section}[{first[value]}])")
        else:
            first[value] = index
    return problems


def _encryption_problems(destinations: Sequence[DestinationConfig], environ: Mapping[str, str]) -> list[str]:
    problems = []
    for index, destination in enumerate(destinations):
        encryption, where = destination.encryption, f"destinations[{index}].encryption"
        if encryption is None:
            continue
        if encryption.key_file is not None:
            if problem := _key_file_problem(encryption.key_file):
                problems.append(f"{where}.key_file: {problem}")
        elif not environ.get(encryption.passphrase_env or ""):
            problems.append(
                f"{where}.passphrase_env: environment variable {encryption.passphrase_env!r} is not set or empty;"
                " set it in backupd's environment"
            )
    return problems


def _remote_login_problems(destinations: Sequence[DestinationConfig], environ: Mapping[str, str]) -> list[str]:
    """sftp and smb logins: the files they name exist (secrets readable by the owner only), the variable is set."""
    problems = []
    for index, destination in enumerate(destinations):
        where = f"destinations[{index}]"
        for key, secret in (("key_file", True), ("credentials_file", True), ("known_hosts", False)):
            path = getattr(destination, key)
            if path is not None and (problem := _login_file_problem(path, secret=secret)):
                problems.append(f"{where}.{key}: {problem}")
        if destination.password_env is not None and not environ.get(destination.password_env):
            problems.append(
                f"{where}.password_env: environment variable {destination.password_env!r} is not set or empty;"
                " set it in backupd's environment"
            )
    return problems


def _key_file_problem(path: Path) -> str | None:
    """Why `path` cannot serve as a key file, with the fix; None when it can."""
    shown, quoted = repr(str(path)), shlex.quote(str(path))
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{shown} does not exist; create one with: backupd keygen {quoted}"
    except OSError as exc:
        return f"{shown} cannot be read ({exc.strerror}); check the path and its directories"
    if not stat.S_ISREG(info.st_mode):
        return f"{shown} is not a regular file; point key_file at a key made with: backupd keygen PATH"
    if info.st_size != KEY_SIZE:
        return (
            f"{shown} is {info.st_size} bytes, expected exactly {KEY_SIZE}; point key_file at the right key"
            f" or create one with: backupd keygen {quoted}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        access = "readable" if mode & 0o044 else "accessible"
        return f"{shown} is {access} by group or others (mode {mode:04o}); run: chmod 600 {quoted}"
    return None
