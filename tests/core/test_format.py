"""Properties of the artifact container framing (backupd.core.format)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from backupd.core import format as fmt
from backupd.errors import CorruptArtifact, UnsupportedVersion

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
headers = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
fewer = settings(max_examples=40)
page_sizes = st.sampled_from([1 << n for n in range(9, 17)])
digests = st.binary(min_size=fmt.DIGEST_SIZE, max_size=fmt.DIGEST_SIZE)
DECODE_ERRORS = (CorruptArtifact, UnsupportedVersion)


def split_header(raw: bytes) -> tuple[bytes, bytes, bytes]:
    header_len = fmt.decode_preamble(raw)
    pre = raw[: fmt.PREAMBLE_SIZE]
    body = raw[fmt.PREAMBLE_SIZE : fmt.PREAMBLE_SIZE + header_len]
    stored = raw[fmt.PREAMBLE_SIZE + header_len :]
    return pre, body, stored


@fewer
@given(headers)
def test_header_round_trip(header):
    raw, d = fmt.encode_header(header)
    pre, body, stored = split_header(raw)
    assert stored == d and len(stored) == fmt.DIGEST_SIZE
    decoded, d2 = fmt.decode_header(pre, body, stored)
    assert decoded == header and d2 == d


@fewer
@given(headers, headers)
def test_header_digest_tells_headers_apart(a, b):
    assert (fmt.encode_header(a)[1] == fmt.encode_header(b)[1]) == (a == b)


def test_header_too_large_is_refused():
    with pytest.raises(ValueError, match="too large"):
        fmt.encode_header({"x": "y" * fmt.MAX_HEADER_LEN})


@fewer
@given(headers, st.data())
def test_any_flipped_header_byte_is_detected(header, data):
    raw, _ = fmt.encode_header(header)
    i = data.draw(st.integers(0, len(raw) - 1), label="offset")
    bit = data.draw(st.integers(0, 7), label="bit")
    bad = bytearray(raw)
    bad[i] ^= 1 << bit
    with pytest.raises(DECODE_ERRORS):
        fmt.decode_header(*split_header(bytes(bad)))


@given(st.integers(0, 0xFFFF).filter(lambda v: v != fmt.VERSION))
def test_other_versions_are_unsupported(version):
    raw, _ = fmt.encode_header({"a": 1})
    bumped = raw[:8] + struct.pack(">H", version) + raw[10:]
    with pytest.raises(UnsupportedVersion) as exc:
        fmt.decode_preamble(bumped)
    assert exc.value.details["version"] == version
    assert exc.value.hint


@given(st.binary(max_size=64))
@example(b"")
@example(fmt.MAGIC)
@example(fmt.PREAMBLE.pack(fmt.MAGIC, fmt.VERSION, fmt.MAX_HEADER_LEN + 1, 0))
def test_decode_preamble_on_random_bytes(raw):
    try:
        n = fmt.decode_preamble(raw)
    except DECODE_ERRORS:
        return
    assert raw.startswith(fmt.MAGIC) and 0 <= n <= fmt.MAX_HEADER_LEN


@given(st.binary(max_size=32), st.binary(max_size=256), st.binary(max_size=40))
def test_decode_header_on_random_bytes(pre, body, stored):
    with pytest.raises(DECODE_ERRORS):
        fmt.decode_header(pre, body, stored)


json_bodies = json_values.map(lambda v: json.dumps(v).encode())


@given(st.binary(max_size=512) | st.text(max_size=64).map(str.encode) | json_bodies)
@example(b"[" * 5000)  # deep nesting: json raises RecursionError
@example(b"\xff\xfe")
@example(b"NaN")
def test_decode_header_with_a_valid_digest_on_any_body(body):
    # The header digest is a plain checksum, so a body with a matching digest is easy to forge:
    # whatever it holds must still be refused as corrupt or parsed into an object.
    pre = fmt.PREAMBLE.pack(fmt.MAGIC, fmt.VERSION, len(body), 0)
    try:
        header, _ = fmt.decode_header(pre, body, fmt.digest(pre + body))
    except DECODE_ERRORS:
        return
    assert isinstance(header, dict)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), digests)
def test_trailer_round_trip(count, end, whole):
    raw = fmt.encode_trailer(count, end, whole)
    assert len(raw) == fmt.TRAILER_SIZE
    assert fmt.decode_trailer(raw) == fmt.Trailer(count, end, whole)


@given(st.binary(max_size=2 * fmt.TRAILER_SIZE))
def test_decode_trailer_on_random_bytes(raw):
    try:
        t = fmt.decode_trailer(raw)
    except DECODE_ERRORS:
        return
    assert raw.startswith(fmt.TRAILER_MAGIC) and len(raw) == fmt.TRAILER_SIZE and isinstance(t, fmt.Trailer)


@st.composite
def page_sets(draw):
    page_size = draw(page_sizes)
    numbers = draw(st.lists(st.integers(1, 2**32 - 1), max_size=6, unique=True))
    seed = draw(st.binary(min_size=1, max_size=16))
    pages = (seed * (page_size * len(numbers) // len(seed) + 1))[: page_size * len(numbers)]
    return page_size, numbers, pages


@given(page_sets())
def test_pages_round_trip(case):
    page_size, numbers, pages = case
    payload = fmt.encode_pages(numbers, pages)
    got_numbers, got_pages = fmt.decode_pages(payload, page_size)
    assert list(got_numbers) == numbers
    assert bytes(got_pages) == pages


@given(page_sets(), st.data())
def test_pages_with_a_wrong_length_are_corrupt(case, data):
    page_size, numbers, pages = case
    payload = fmt.encode_pages(numbers, pages)
    cut = data.draw(st.integers(0, len(payload) - 1), label="cut")
    with pytest.raises(CorruptArtifact):
        fmt.decode_pages(payload[:cut], page_size)
    with pytest.raises(CorruptArtifact):
        fmt.decode_pages(payload + b"\x00", page_size)


def test_page_zero_is_corrupt():
    with pytest.raises(CorruptArtifact, match="page 0"):
        fmt.decode_pages(fmt.encode_pages([0], b"\x00" * 512), 512)


@given(st.binary(max_size=600), page_sizes)
def test_decode_pages_on_random_bytes(payload, page_size):
    try:
        numbers, pages = fmt.decode_pages(payload, page_size)
    except DECODE_ERRORS:
        return
    assert len(pages) == len(numbers) * page_size and all(n >= 1 for n in numbers)


@given(digests, st.integers(0, 2**64 - 1), st.sampled_from(sorted(fmt.BLOCK_KINDS)), st.binary(max_size=256))
def test_plain_block_round_trip(header_digest, seq, kind, payload):
    body = fmt.seal_plain(header_digest, seq, kind, payload)
    assert fmt.open_plain(header_digest, seq, body) == (kind, payload)


@given(digests, st.integers(0, 2**32), st.binary(max_size=128), st.data())
def test_plain_block_detects_any_flip_and_any_misplacement(header_digest, seq, payload, data):
    body = fmt.seal_plain(header_digest, seq, fmt.KIND_PAGES, payload)
    i = data.draw(st.integers(0, len(body) - 1), label="offset")
    bit = data.draw(st.integers(0, 7), label="bit")
    bad = bytearray(body)
    bad[i] ^= 1 << bit
    with pytest.raises(CorruptArtifact) as exc:
        fmt.open_plain(header_digest, seq, bytes(bad))
    assert exc.value.details == {"block": seq}
    # the same block read at another position, or in another artifact, is refused too
    with pytest.raises(CorruptArtifact):
        fmt.open_plain(header_digest, seq + 1, body)
    other = bytes([header_digest[0] ^ 1]) + header_digest[1:]
    with pytest.raises(CorruptArtifact):
        fmt.open_plain(other, seq, body)


@given(digests, st.integers(0, 2**32), st.binary(max_size=128))
def test_open_plain_on_random_bytes(header_digest, seq, body):
    try:
        kind, payload = fmt.open_plain(header_digest, seq, body)
    except DECODE_ERRORS:
        return
    assert fmt.seal_plain(header_digest, seq, kind, payload) == body  # only a genuine seal opens


def test_frame_block_refuses_oversized_bodies():
    assert fmt.frame_block(b"abc") == b"\x00\x00\x00\x03abc"
    with pytest.raises(ValueError, match="too large"):
        fmt.frame_block(memoryview(bytearray(fmt.MAX_BLOCK_LEN + 1)))
