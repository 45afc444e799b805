"""The [[destinations]] table (and its [encryption]): which keys each destination kind takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from backupd.config.fields import (ENV_NAME_PATTERN, PROBLEM, ConfigPath, Name, Section, check_path_text, one_of,
                                   problem, resolve)
from backupd.core.vocab import DestinationKind

_K = DestinationKind


class EncryptionConfig(Section):
    key_file: ConfigPath | None = Field(
        None, description="File holding exactly 32 random bytes, mode 0600 (create with `backupd keygen`)."
    )
    passphrase_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Environment variable holding a passphrase; the key is derived with Argon2id.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EncryptionConfig:
        if (self.key_file is None) == (self.passphrase_env is None):
            got = "neither" if self.key_file is None else "both"
            raise PydanticCustomError(
                PROBLEM, "set exactly one of key_file or passphrase_env (got {got})", {"got": got}
            )
        return self


# Keys only some kinds take: key -> the kinds that allow it, and the kinds that require it.
_KIND_KEYS: dict[str, tuple[tuple[DestinationKind, ...], tuple[DestinationKind, ...]]] = {
    "mount_point": ((_K.SHARE,), ()),
    "host": ((_K.SFTP,), (_K.SFTP,)),
    "port": ((_K.SFTP, _K.SMB), ()),
    "user": ((_K.SFTP, _K.SMB), (_K.SFTP, _K.SMB)),
    "key_file": ((_K.SFTP,), ()),
    "known_hosts": ((_K.SFTP,), (_K.SFTP,)),
    "server": ((_K.SMB,), (_K.SMB,)),
    "share": ((_K.SMB,), (_K.SMB,)),
    "password_env": ((_K.SMB,), ()),
    "credentials_file": ((_K.SMB,), ()),
    "require_encryption": ((_K.SMB,), ()),
}
DEFAULT_PORTS = {_K.SFTP: 22, _K.SMB: 445}
_LOCAL_PATH_KINDS = (_K.LOCAL, _K.SHARE)


def _compression_level(value: int) -> int:
    if not 1 <= value <= 22:
        raise PydanticCustomError(PROBLEM, "must be 1..22 (got {got})", {"got": value})
    return value


def _kind_key(description: str) -> Any:
    """A key only some kinds take (see _KIND_KEYS); validated even when absent, to report it missing."""
    return Field(None, validate_default=True, description=description)


class DestinationConfig(Section):
    """One [[destinations]] table. Keys of other kinds are errors; `port` and `require_encryption`
    get their kind's default (22 for sftp, 445 for smb; false) and stay None for kinds without them."""

    name: Name = Field(description="Unique destination name.")
    kind: Annotated[DestinationKind, one_of(DestinationKind)] = Field(
        description="Destination type: 'local' directory, mounted 'share', 'sftp' server or 'smb' server."
    )
    path: Annotated[Path, Strict(False), BeforeValidator(check_path_text)] = Field(
        description="local/share: directory on this machine (resolved against the config's directory);"
        " sftp: directory on the server; smb: directory inside the share."
    )
    compression_level: Annotated[int, AfterValidator(_compression_level)] = Field(
        3, description="zstd compression level, 1..22."
    )
    enabled: bool = Field(True, description="Whether backups are sent to this destination.")
    priority: int = Field(
        1, ge=1, description="1 is the most preferred; larger numbers are used after smaller ones."
    )
    encryption: EncryptionConfig | None = Field(None, description="Encrypt artifacts; omit to store them unencrypted.")
    max_age_days: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Retention: delete backups older than this many days here (chains permitting)."
    )
    max_count: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Retention: keep at most this many backups here (chains permitting)."
    )
    mount_point: ConfigPath | None = _kind_key(
        "share: the mount point that must be mounted before anything is written there."
    )
    host: Annotated[str, Field(min_length=1)] | None = _kind_key("sftp: server host name or address.")
    port: Annotated[int, Field(ge=1, le=65535)] | None = _kind_key("sftp/smb: server TCP port (sftp 22, smb 445).")
    user: Annotated[str, Field(min_length=1)] | None = _kind_key("sftp/smb: user name to log in as.")
    key_file: ConfigPath | None = _kind_key("sftp: private key file (mode 0600); omit to use the ssh-agent.")
    known_hosts: ConfigPath | None = _kind_key(
        "sftp: known_hosts file holding the server's host key; unknown or changed keys are refused."
    )
    server: Annotated[str, Field(min_length=1)] | None = _kind_key("smb: server host name or address.")
    share: Annotated[str, Field(min_length=1)] | None = _kind_key("smb: name of the share.")
    password_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = _kind_key(
        "smb: environment variable holding the password."
    )
    credentials_file: ConfigPath | None = _kind_key("smb: file (mode 0600) holding the password.")
    require_encryption: bool | None = _kind_key(
        "smb: refuse a server that does not encrypt (encryption is used whenever the server offers it)."
    )

    @field_validator("path", mode="after")
    @classmethod
    def _resolve_local_path(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve(value, info) if info.data.get("kind") in _LOCAL_PATH_KINDS else value

    @field_validator(*_KIND_KEYS, mode="after")
    @classmethod
    def _kind_allows(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        allowed, required = _KIND_KEYS[info.field_name or ""]
        if kind is None:  # the kind itself is wrong: reported on its own
            return value
        if value is not None and kind not in allowed:
            raise problem(f"not allowed for kind {kind!r}")
        if value is None and kind in required:
            raise problem("required key missing")
        return value

    @model_validator(mode="after")
    def _kind_defaults(self) -> DestinationConfig:
        if self.kind == _K.SMB and (self.password_env is None) == (self.credentials_file is None):
            got = "neither" if self.password_env is None else "both"
            raise problem(f"set exactly one of password_env or credentials_file (got {got})")
        # defaults that depend on the kind; the model is frozen, so set them the way pydantic does
        if self.kind in DEFAULT_PORTS and self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.kind])
        if self.kind == _K.SMB and self.require_encryption is None:
            object.__setattr__(self, "require_encryption", False)
        return self

