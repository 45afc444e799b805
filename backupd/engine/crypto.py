"""Keys and encryption: 0600 key files, Argon2id passphrases, key ids, and XChaCha20-Poly1305 secretstream.

The artifact header carries `key_id` (a keyed BLAKE2b of the key, never the key) so a wrong key is
reported as such before any decryption is attempted.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash

from backupd.errors import CorruptArtifact, KeyUnusable, WrongKey

KEY_SIZE = 32
CIPHER = "xchacha20poly1305-secretstream"
ARGON_OPS = 3
ARGON_MEM = 32 * 1024 * 1024
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES


def key_id(key: bytes) -> str:
    return hashlib.blake2b(key, digest_size=8, person=b"backupd.keyid.1").hexdigest()


def keygen(path: Path) -> str:
    """Write a new random key file with mode 0600 (refusing to overwrite); returns its key id."""
    key = os.urandom(KEY_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyUnusable(f"key file {path} already exists", hint="choose another path; never overwrite a key") from None
    except OSError as exc:
        raise KeyUnusable(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key_id(key)


def read_key_file(path: Path) -> bytes:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise KeyUnusable(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyUnusable(
                f"key file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"run: chmod 600 {path}",
            )
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyUnusable(f"cannot read key file {path}: {exc.strerror}") from None
    if len(data) != KEY_SIZE:
        raise KeyUnusable(f"key file {path} holds {len(data)} bytes, expected {KEY_SIZE}")
    return data


@dataclass
class Keyring:
    """The key of one destination: a raw key, or a passphrase turned into keys per salt."""

    raw_key: bytes | None = None
    passphrase: bytes | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self._derived: dict[bytes, bytes] = {}
        self._write_salt: bytes | None = None

    @classmethod
    def from_key_file(cls, path: Path) -> "Keyring":
        return cls(raw_key=read_key_file(path), description=f"key file {path}")

    @classmethod
    def from_passphrase(cls, passphrase: str, env_name: str) -> "Keyring":
        return cls(passphrase=passphrase.encode(), description=f"passphrase from ${env_name}")

    def _derive(self, salt: bytes, ops: int, mem: int) -> bytes:
        if salt not in self._derived:
            assert self.passphrase is not None
            self._derived[salt] = nacl.pwhash.argon2id.kdf(KEY_SIZE, self.passphrase, salt, opslimit=ops, memlimit=mem)
        return self._derived[salt]

    def for_writing(self) -> tuple[bytes, dict[str, Any]]:
        """The key for a new artifact and the header fields that let a reader find it again."""
        if self.raw_key is not None:
            return self.raw_key, {"cipher": CIPHER, "key_id": key_id(self.raw_key), "kdf": None}
        if self._write_salt is None:
            self._write_salt = os.urandom(nacl.pwhash.argon2id.SALTBYTES)
        key = self._derive(self._write_salt, ARGON_OPS, ARGON_MEM)
        kdf = {"alg": "argon2id13", "salt": self._write_salt.hex(), "ops": ARGON_OPS, "mem": ARGON_MEM}
        return key, {"cipher": CIPHER, "key_id": key_id(key), "kdf": kdf}

    def for_reading(self, enc: dict[str, Any]) -> bytes:
        """The key an artifact's header asks for; WrongKey if ours is not it."""
        if enc.get("cipher") != CIPHER:
            raise CorruptArtifact(f"unknown cipher {enc.get('cipher')!r}")
        kdf = enc.get("kdf")
        if kdf is None:
            if self.raw_key is None:
                raise WrongKey(
                    "wrong key: the artifact was encrypted with a key file, but a passphrase is configured",
                    hint="configure encryption.key_file with the key this backup was made with",
                )
            key = self.raw_key
        else:
            if self.passphrase is None:
                raise WrongKey(
                    "wrong key: the artifact was encrypted with a passphrase, but a key file is configured",
                    hint="configure encryption.passphrase_env with the passphrase this backup was made with",
                )
            try:
                salt, ops, mem = bytes.fromhex(kdf["salt"]), int(kdf["ops"]), int(kdf["mem"])
            except (KeyError, ValueError, TypeError, OverflowError):
                raise CorruptArtifact("artifact header has a malformed kdf section") from None
            if kdf.get("alg") != "argon2id13":
                raise CorruptArtifact(f"artifact header names an unsupported kdf {kdf.get('alg')!r}")
            # out-of-range parameters would otherwise escape from libsodium as a bare ValueError
            argon = nacl.pwhash.argon2id
            if len(salt) != argon.SALTBYTES or not (
                argon.OPSLIMIT_MIN <= ops <= 64 and argon.MEMLIMIT_MIN <= mem <= 1 << 30
            ):
                raise CorruptArtifact("artifact header has out-of-range kdf parameters")
            key = self._derive(salt, ops, mem)
        want = enc.get("key_id")
        if key_id(key) != want:
            raise WrongKey(
                f"wrong key: encrypted with key id {want}, configured key id {key_id(key)} ({self.description})",
                hint="point the destination's encryption at the key this backup was made with",
                details={"artifact_key_id": want, "configured_key_id": key_id(key)},
            )
        return key


class Sealer:
    """Push side of a secretstream: each block becomes one message; the last is tagged FINAL."""

    def __init__(self, key: bytes):
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, key)

    def seal(self, plaintext: bytes, ad: bytes, final: bool = False) -> bytes:
        return sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, plaintext, ad, TAG_FINAL if final else TAG_MESSAGE
        )


class Opener:
    """Pull side of a secretstream; authentication failures become CorruptArtifact naming the block."""

    def __init__(self, key: bytes, stream_header: bytes):
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, stream_header, key)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise CorruptArtifact("artifact stream header is corrupt") from None

    def open(self, ciphertext: bytes, ad: bytes, seq: int) -> tuple[bytes, bool]:
        """Returns (plaintext, is_final)."""
        try:
            plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, ciphertext, ad)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise CorruptArtifact(
                f"block {seq} failed authentication: the artifact is corrupt or was tampered with",
                details={"block": seq},
            ) from None
        return plain, tag == TAG_FINAL
