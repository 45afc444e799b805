"""Artifacts end to end: ArtifactWriter -> bytes -> ArtifactReader, with real zstd and real libsodium.

The only stand-in is `MemoryUpload`, an in-memory buffer with the Upload interface, so the bytes a
writer produces can be altered before they are read back.
"""

from __future__ import annotations

import io
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from backupd.core import format as fmt
from backupd.engine.crypto import CIPHER, Keyring
from backupd.engine.stream import ArtifactReader, ArtifactWriter
from backupd.errors import BackupdError, CorruptArtifact, UnsupportedVersion, WrongKey

HEADER = {"kind": "artifact", "backup_id": "20261126T160055.123456Z-3f9a1c", "source": "kb", "page_size": 512}
MANIFEST = b'{"backup_id":"20261126T160055.123456Z-3f9a1c","strategy":"full"}'
PASSPHRASE_ENV = "BACKUPD_TEST_PASSPHRASE"
MODES = ("plain", "key_file", "passphrase")


class MemoryUpload:
    """The Upload interface over a BytesIO."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.bytes_written = 0
        self.committed = self.aborted = False

    def write(self, data: bytes | memoryview) -> None:
        self.buffer.write(data)
        self.bytes_written += len(data)

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.aborted = True

    def __enter__(self) -> "MemoryUpload":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_key_file(path: Path, key: bytes) -> Path:
    path.write_bytes(key)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def executor():
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="zstd-test") as pool:
        yield pool


@pytest.fixture(scope="module")
def keyrings(tmp_path_factory) -> dict[str, Keyring | None]:
    """One keyring per mode, kept for the module so a passphrase is stretched only once per salt."""
    d = tmp_path_factory.mktemp("keys")
    return {
        "plain": None,
        "key_file": Keyring.from_key_file(write_key_file(d / "backup.key", bytes(range(32)))),
        "passphrase": Keyring.from_passphrase("correct horse battery staple", PASSPHRASE_ENV),
    }


def write_artifact(executor, keyring, blocks, manifest=MANIFEST, header=HEADER, level=3) -> tuple[bytes, int, str]:
    """Returns (artifact bytes, size reported by finish(), whole digest hex)."""
    up = MemoryUpload()
    w = ArtifactWriter(up, header, level=level, keyring=keyring, executor=executor, max_pending=2)
    for numbers, pages in blocks:
        w.add_pages(numbers, pages)
    size, whole = w.finish(manifest)
    assert up.bytes_written == size == w.size
    return up.buffer.getvalue(), size, whole


def read_artifact(raw: bytes, keyring) -> tuple[dict, list[tuple[int, int, bytes]], str | None]:
    reader = ArtifactReader(io.BytesIO(raw), keyring)
    blocks = list(reader.blocks())
    return reader.header, blocks, reader.whole_digest


def page_blocks(page_size: int, count: int, start: int = 1) -> list[tuple[list[int], bytes]]:
    out = []
    for b in range(count):
        numbers = [start + 3 * b, start + 3 * b + 1]
        out.append((numbers, b"".join(bytes([n % 251]) * page_size for n in numbers)))
    return out


def frames(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of every framed block in a well-formed artifact."""
    pos = fmt.PREAMBLE_SIZE + fmt.decode_preamble(raw) + fmt.DIGEST_SIZE
    out = []
    while pos < len(raw) - fmt.TRAILER_SIZE:
        (n,) = fmt.BLOCK_LEN.unpack_from(raw, pos)
        out.append((pos, pos + 4 + n))
        pos += 4 + n
    assert pos == len(raw) - fmt.TRAILER_SIZE
    return out


@st.composite
def contents(draw):
    page_size = draw(st.sampled_from([512, 1024, 4096, 65536]))
    blocks = []
    next_page = 1
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(0, 3))
        fill = draw(st.binary(min_size=1, max_size=8))
        blocks.append((list(range(next_page, next_page + n)), (fill * (n * page_size))[: n * page_size]))
        next_page += n + draw(st.integers(0, 5))
    manifest = json.dumps(draw(st.dictionaries(st.text(max_size=8), st.integers(), max_size=4))).encode()
    return page_size, blocks, manifest


@settings(max_examples=25, deadline=None)
@pytest.mark.parametrize("mode", MODES)
@given(content=contents(), level=st.sampled_from([1, 3, 19]))
def test_round_trip(executor, keyrings, mode, content, level):
    page_size, blocks, manifest = content
    header = dict(HEADER, page_size=page_size)
    raw, size, whole = write_artifact(executor, keyrings[mode], blocks, manifest, header, level)
    assert size == len(raw)
    got_header, got, got_whole = read_artifact(raw, keyrings[mode])

    assert {k: got_header[k] for k in header} == header
    assert got_header["compression"] == "zstd"
    assert (got_header["encryption"] is None) == (mode == "plain")
    assert got_whole == whole
    assert [seq for seq, _, _ in got] == list(range(len(blocks) + 1))
    assert [kind for _, kind, _ in got] == [fmt.KIND_PAGES] * len(blocks) + [fmt.KIND_MANIFEST]
    for (numbers, pages), (_, _, payload) in zip(blocks, got):
        got_numbers, got_pages = fmt.decode_pages(payload, page_size)
        assert list(got_numbers) == numbers and bytes(got_pages) == pages
    assert got[-1][2] == manifest


def test_encrypted_artifacts_do_not_show_their_pages(executor, keyrings):
    secret = b"top secret row " * 40
    pages = (secret * 2)[:1024]
    for mode in ("key_file", "passphrase"):
        raw, _, _ = write_artifact(executor, keyrings[mode], [([1, 2], pages)], level=1)
        assert b"top secret" not in raw and MANIFEST not in raw
    raw, _, _ = write_artifact(executor, keyrings["key_file"], [([1, 2], pages)], level=1)
    header = json.loads(raw[fmt.PREAMBLE_SIZE : fmt.PREAMBLE_SIZE + fmt.decode_preamble(raw)])
    assert header["encryption"]["cipher"] == CIPHER


def test_a_fresh_keyring_reads_what_another_wrote(executor, keyrings, tmp_path):
    blocks = page_blocks(512, 2)
    raw, _, _ = write_artifact(executor, keyrings["passphrase"], blocks)
    fresh = Keyring.from_passphrase("correct horse battery staple", PASSPHRASE_ENV)
    assert read_artifact(raw, fresh)[1][0][2] == fmt.encode_pages(*blocks[0])
    raw, _, _ = write_artifact(executor, keyrings["key_file"], blocks)
    fresh = Keyring.from_key_file(write_key_file(tmp_path / "copy.key", bytes(range(32))))
    assert read_artifact(raw, fresh)[1][-1][2] == MANIFEST


# --- altered artifacts: never a successful read ----------------------------------------------------


@pytest.fixture(scope="module")
def small_artifacts(executor, keyrings) -> dict[str, bytes]:
    return {mode: write_artifact(executor, keyrings[mode], page_blocks(512, 2))[0] for mode in MODES}


def expected_error(offset: int) -> type[BackupdError]:
    # the version is checked before anything else; every other byte is covered by a checksum or tag
    return UnsupportedVersion if offset in (8, 9) else CorruptArtifact


@pytest.mark.parametrize("mode", MODES)
def test_every_single_byte_flip_is_detected(small_artifacts, keyrings, mode):
    raw = small_artifacts[mode]
    read_artifact(raw, keyrings[mode])  # the unaltered artifact reads
    for offset in range(len(raw)):
        bad = bytearray(raw)
        bad[offset] ^= 0xFF
        with pytest.raises(BackupdError) as exc:
            read_artifact(bytes(bad), keyrings[mode])
        assert type(exc.value) is expected_error(offset), f"flip at byte {offset} of {len(raw)}"


@settings(max_examples=60, deadline=None)
@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_any_bit_flips_are_detected(small_artifacts, keyrings, mode, data):
    raw = bytearray(small_artifacts[mode])
    offsets = data.draw(st.sets(st.integers(0, len(raw) - 1), min_size=1, max_size=3), label="offsets")
    for offset in offsets:
        raw[offset] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises((CorruptArtifact, UnsupportedVersion)):
        read_artifact(bytes(raw), keyrings[mode])


@pytest.mark.parametrize("mode", MODES)
def test_truncation_at_any_point_is_detected(small_artifacts, keyrings, mode):
    raw = small_artifacts[mode]
    for cut in range(len(raw)):
        with pytest.raises(CorruptArtifact):
            read_artifact(raw[:cut], keyrings[mode])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("extra", [b"\x00", b"BKPDEND\x00", None], ids=["zero", "trailer-magic", "itself"])
def test_appended_bytes_are_detected(small_artifacts, keyrings, mode, extra):
    raw = small_artifacts[mode]
    with pytest.raises(CorruptArtifact, match="after the trailer"):
        read_artifact(raw + (raw if extra is None else extra), keyrings[mode])


@pytest.mark.parametrize("mode", MODES)
def test_reordered_dropped_and_foreign_blocks_are_detected(executor, small_artifacts, keyrings, mode):
    raw = small_artifacts[mode]
    (a0, a1), (b0, b1), (m0, m1) = frames(raw)
    head, trailer = raw[:a0], raw[m1:]
    swapped = head + raw[b0:b1] + raw[a0:a1] + raw[m0:m1] + trailer
    dropped = head + raw[b0:b1] + raw[m0:m1] + trailer
    no_manifest = head + raw[a0:a1] + raw[b0:b1] + trailer
    # the same blocks under another artifact's header (same key, same content, different backup)
    other, _, _ = write_artifact(executor, keyrings[mode], page_blocks(512, 2), header=dict(HEADER, source="crm"))
    spliced = other[: frames(other)[0][0]] + raw[a0:]
    for name, bad in {"swapped": swapped, "dropped": dropped, "no manifest": no_manifest, "spliced": spliced}.items():
        with pytest.raises(CorruptArtifact):
            read_artifact(bad, keyrings[mode])
            pytest.fail(f"{name} artifact was read")


def refresh_trailer(raw: bytes) -> bytes:
    """Recompute the trailer of altered blocks, as a careless or hostile rewrite would."""
    body = raw[: -fmt.TRAILER_SIZE]
    count = len(frames(raw))
    return body + fmt.encode_trailer(count, len(body), fmt.digest(body))


@pytest.mark.parametrize("mode", MODES)
def test_block_tampering_with_a_refreshed_trailer_is_detected(small_artifacts, keyrings, mode):
    raw = small_artifacts[mode]
    (a0, a1), (b0, b1), (m0, m1) = frames(raw)
    for bad in (
        raw[:a0] + raw[b0:b1] + raw[a0:a1] + raw[m0:],  # swapped
        raw[:a0] + raw[b0:],  # first block dropped
    ):
        with pytest.raises(CorruptArtifact):
            read_artifact(refresh_trailer(bad), keyrings[mode])


# --- keys and versions ------------------------------------------------------------------------------


def test_wrong_key_file(executor, keyrings, tmp_path):
    raw, _, _ = write_artifact(executor, keyrings["key_file"], page_blocks(512, 1))
    other = Keyring.from_key_file(write_key_file(tmp_path / "other.key", bytes(32)))
    with pytest.raises(WrongKey, match="wrong key") as exc:
        read_artifact(raw, other)
    assert exc.value.code == "wrong_key" and exc.value.hint
    assert exc.value.details["artifact_key_id"] != exc.value.details["configured_key_id"]


def test_wrong_passphrase(executor, keyrings):
    raw, _, _ = write_artifact(executor, keyrings["passphrase"], page_blocks(512, 1))
    with pytest.raises(WrongKey, match="wrong key"):
        read_artifact(raw, Keyring.from_passphrase("incorrect horse", PASSPHRASE_ENV))


@pytest.mark.parametrize(("written", "read"), [("key_file", "passphrase"), ("passphrase", "key_file")])
def test_key_of_the_other_kind(executor, keyrings, written, read):
    raw, _, _ = write_artifact(executor, keyrings[written], page_blocks(512, 1))
    with pytest.raises(WrongKey, match="wrong key"):
        read_artifact(raw, keyrings[read])


@pytest.mark.parametrize("mode", ["key_file", "passphrase"])
def test_no_key_for_an_encrypted_artifact(executor, keyrings, mode):
    raw, _, _ = write_artifact(executor, keyrings[mode], page_blocks(512, 1))
    with pytest.raises(WrongKey, match="wrong key"):
        read_artifact(raw, None)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", [0, fmt.VERSION + 1, 0xFFFF])
def test_another_format_version_is_unsupported(small_artifacts, keyrings, mode, version):
    raw = small_artifacts[mode]
    bumped = raw[:8] + struct.pack(">H", version) + raw[10:]
    with pytest.raises(UnsupportedVersion) as exc:
        read_artifact(bumped, keyrings[mode])
    assert exc.value.details == {"version": version, "supported": [fmt.VERSION]}


# --- garbage -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
kdf_sections = st.none() | json_values | st.fixed_dictionaries(
    {
        "alg": st.sampled_from(["argon2id13", "scrypt"]) | json_values,
        "salt": st.sampled_from(["00" * 16, "00" * 3, "zz"]) | json_values,
        "ops": st.sampled_from([0, 1, 2, -1, 65, float("inf"), float("nan"), "3"]) | json_values,
        "mem": st.sampled_from([0, 8192, 1 << 31, -5]) | json_values,
    }
)
encryption_sections = st.none() | json_values | st.fixed_dictionaries(
    {
        "cipher": st.just(CIPHER) | json_values,
        "key_id": json_values,
        "kdf": kdf_sections,
        "stream_header": st.sampled_from(["00" * 24, "00" * 3]) | json_values,
    }
)


def forge_header(header: dict) -> bytes:
    """A header with a valid digest: the digest is a checksum, so anyone can make one."""
    body = json.dumps(header).encode()
    head = fmt.PREAMBLE.pack(fmt.MAGIC, fmt.VERSION, len(body), 0) + body
    return head + fmt.digest(head)


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=300), mode=st.sampled_from(MODES))
def test_random_bytes_raise_only_backupd_errors(keyrings, raw, mode):
    with pytest.raises(BackupdError):
        read_artifact(raw, keyrings[mode])


def argon2_section(salt="00" * 16, ops=3, mem=1 << 16):
    kdf = {"alg": "argon2id13", "salt": salt, "ops": ops, "mem": mem}
    return {"cipher": CIPHER, "key_id": "0" * 16, "kdf": kdf, "stream_header": "00" * 24}


@settings(max_examples=150, deadline=None)
@example(header={}, encryption=argon2_section(mem=0), tail=b"", mode="passphrase")
@example(header={}, encryption=argon2_section(ops=0), tail=b"", mode="passphrase")
@example(header={}, encryption=argon2_section(salt="00"), tail=b"", mode="passphrase")
@example(header={}, encryption=argon2_section(ops=float("inf")), tail=b"", mode="passphrase")
@given(
    header=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    encryption=encryption_sections,
    tail=st.binary(max_size=200),
    mode=st.sampled_from(MODES),
)
def test_forged_headers_and_random_blocks_raise_only_backupd_errors(keyrings, header, encryption, tail, mode):
    raw = forge_header(dict(header, encryption=encryption)) + tail
    with pytest.raises(BackupdError):
        read_artifact(raw, keyrings[mode])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), mode=st.sampled_from(MODES))
def test_random_bytes_after_a_genuine_header_raise_only_backupd_errors(small_artifacts, keyrings, data, mode):
    raw = small_artifacts[mode]
    start = frames(raw)[0][0]
    junk = data.draw(st.binary(max_size=400), label="junk")
    with pytest.raises(BackupdError):
        read_artifact(raw[:start] + junk, keyrings[mode])
