"""The building blocks of the config models: the strict section base, field types (paths, names,
durations, sizes, words of the core vocabulary) and the problem messages their checks raise.

Relative paths resolve against the `base_dir` given in the validation context (the directory of
the config file). Durations ("90s", "1h30m" or seconds) become float seconds.
"""

from __future__ import annotations

import os
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError, core_schema

from backupd.core.access import PRINCIPAL_PATTERN
from backupd.core.units import parse_duration, parse_size
from backupd.core.vocab import Word

PROBLEM = "config_problem"  # error type of the checks below; load.py reports their message as is
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
GROUP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"
_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother = 100, 60
_repr.maxlevel = 2


def show_value(value: object) -> str:
    """A value as a problem message quotes it: TOML spelling for booleans, long values shortened."""
    return str(value).lower() if isinstance(value, bool) else _repr.repr(value)


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is `message`, reported as `path: message`."""
    # The message goes in as context: a literal "{" in it must not be read as a placeholder.
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": message})


_PATH_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def check_path_text(value: object, info: ValidationInfo) -> object:
    """`value`, refused when it is an empty path or contains a NUL character; `$NAME` and `${NAME}`
    expanded from the environment (the context's `environ`, else backupd's), never kept literally."""
    if value == "":
        raise PydanticCustomError(PROBLEM, "must not be empty")
    if isinstance(value, str) and "\0" in value:
        raise PydanticCustomError(PROBLEM, "must not contain a NUL character")
    if isinstance(value, str) and "$" in value:
        environ = (info.context or {}).get("environ", os.environ)
        names = [a or b for a, b in _PATH_VARIABLE.findall(value)]
        if missing := sorted({n for n in names if not environ.get(n)}):
            raise problem(f"names {', '.join('$' + n for n in missing)}, not set in backupd's environment; set it"
                          " (systemd: Environment= in a drop-in) or write the path out")
        value = _PATH_VARIABLE.sub(lambda m: environ[m.group(1) or m.group(2)], value)
        if "$" in value:
            raise problem("holds a $ that is not a variable ($NAME or ${NAME}); write the path without it")
    return value


def resolve(value: Path, info: ValidationInfo) -> Path:
    """Make a path absolute against the config file's directory, without following symlinks.

    With no `base_dir` in the context (a destination added at run time has no config file) a relative
    path is an error."""
    context = info.context or {}
    if "base_dir" not in context and not value.is_absolute():
        raise problem(f"must be an absolute path (got {str(value)!r}): there is no config file to be relative to")
    return Path(os.path.normpath(Path(context.get("base_dir", "/")) / value))


ConfigPath = Annotated[Path, Strict(False), BeforeValidator(check_path_text), AfterValidator(resolve)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Principal = Annotated[str, Field(pattern=PRINCIPAL_PATTERN)]


class Section(BaseModel):
    """Base of every config model: strict TOML types (no "3" for 3), unknown keys rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def converter(parse: Callable[[Any], Any], expected: str, types: tuple[type, ...]) -> Callable[[Any], Any]:
    """A before-validator running a core parser; its ValueError becomes the problem message."""

    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, types):
            raise problem(f"expected {expected} (got {show_value(value)})")
        try:
            return parse(value)
        except ValueError as exc:
            raise problem(str(exc)) from None

    return convert


def _bounded(low: float, *, inclusive: bool, shown: Callable[[float], str]) -> Callable[[float], float]:
    def check(value: float) -> float:
        if value < low or (value == low and not inclusive):
            raise problem(f"must be {'>=' if inclusive else '>'} {shown(low)} (got {shown(value)})")
        return value

    return check


def _seconds(value: float) -> str:
    return f"{value:g}s"


_DURATION_TEXT = 'a duration such as "90s", "15m" or "1h30m"'
Duration = Annotated[
    float, BeforeValidator(converter(parse_duration, _DURATION_TEXT, (str, int, float))), AfterValidator(
        _bounded(0, inclusive=True, shown=_seconds)
    )
]
PositiveDuration = Annotated[Duration, AfterValidator(_bounded(0, inclusive=False, shown=_seconds))]
_SIZE_TEXT = 'a size such as "256MiB" or a number of bytes'
Size = Annotated[int, BeforeValidator(converter(parse_size, _SIZE_TEXT, (str, int)))]


@dataclass(frozen=True)
class FromSection:
    """Annotated marker: validate a TOML table with `section` (errors keep their key paths), then
    turn the validated section into a core object with `convert` (a ValueError there is reported
    at the table's path)."""

    section: type[BaseModel]
    convert: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source_type: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def convert(section: Any) -> Any:
            try:
                return self.convert(section)
            except ValueError as exc:
                raise problem(str(exc)) from None

        return core_schema.chain_schema(
            [handler.generate_schema(self.section), core_schema.no_info_plain_validator_function(convert)]
        )


def one_of(words: type[Word]) -> BeforeValidator:
    """Validator of a field typed with a core vocabulary enum: its member for each of its strings; any
    other value is reported as `unknown <key> <value> (expected <its words>)`."""

    def member(value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            try:
                return words(value)
            except ValueError:
                pass
        raise problem(f"unknown {info.field_name} {show_value(value)} (expected {', '.join(words)})")

    return BeforeValidator(member)
