"""The chunk wire format (app/codec.py): round trips, OpenMSIStream field order, and a decoder
that turns every bad input into a ChunkDecodeError with the right reason."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.codec import MAX_TOTAL_CHUNKS, Chunk, ChunkDecodeError, decode_chunk, encode_chunk

REASONS = {"empty", "not_msgpack", "bad_shape", "bad_field", "impossible_chunk", "chunk_hash_mismatch"}
FILE_HASH = hashlib.sha512(b"the whole file").digest()


def sha(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def fields(**changes: object) -> list[object]:
    """A valid 10-item chunk array (as OpenMSIStream orders it), with some items replaced."""
    data = changes.pop("data", b"some chunk data")
    item = {
        "filename": "file.dat",
        "file_hash": FILE_HASH,
        "chunk_hash": sha(data) if isinstance(data, bytes) else sha(b""),
        "offset": 0,
        "index": 1,
        "total": 1,
        "subdir": "a/b",
        "filename_append": "",
        "data": data,
        "mtime": 1_700_000_000.5,
    }
    for name, value in changes.items():
        assert name in item, name
        item[name] = value
    return list(item.values())


def pack(items: object) -> bytes:
    return msgpack.packb(items, use_bin_type=True)


def reason_of(value: bytes | None, **kwargs: bool) -> str:
    with pytest.raises(ChunkDecodeError) as info:
        decode_chunk(value, **kwargs)
    assert str(info.value).startswith(info.value.reason + ":")
    return info.value.reason


@st.composite
def chunks(draw: st.DrawFn) -> Chunk:
    data = draw(st.binary(max_size=4096))
    total = draw(st.integers(1, MAX_TOTAL_CHUNKS))
    return Chunk(
        filename=draw(st.text(min_size=1)),
        file_hash=draw(st.binary(min_size=64, max_size=64)),
        chunk_hash=sha(data),
        offset=draw(st.integers(0, 2**64 - 1)),
        index=draw(st.integers(1, total)),
        total=total,
        subdir=draw(st.text()),
        filename_append=draw(st.text()),
        data=data,
        mtime=draw(st.floats(allow_nan=False, allow_infinity=False)),
    )


# --- round trips --------------------------------------------------------------------------------


@given(chunks())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_encode_decode_round_trip(chunk: Chunk) -> None:
    assert decode_chunk(encode_chunk(chunk)) == chunk
    assert decode_chunk(encode_chunk(chunk), verify=False) == chunk


@given(chunks())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_nine_item_array_from_older_producers_decodes_with_zero_mtime(chunk: Chunk) -> None:
    items = msgpack.unpackb(encode_chunk(chunk), raw=False)
    old = decode_chunk(pack(items[:9]))
    assert old.mtime == 0.0
    assert isinstance(old.mtime, float)
    assert old == dataclasses.replace(chunk, mtime=0.0)


def test_integer_mtime_is_accepted_and_becomes_float() -> None:
    chunk = decode_chunk(pack(fields(mtime=1234)))
    assert chunk.mtime == 1234.0
    assert isinstance(chunk.mtime, float)


# --- exact encoding -----------------------------------------------------------------------------


def test_encoding_is_openmsistream_array_of_ten_in_order() -> None:
    data = bytes(range(256)) * 3
    chunk = Chunk(
        filename="spectrum ü.h5",
        file_hash=FILE_HASH,
        chunk_hash=sha(data),
        offset=3 * 768,
        index=4,
        total=9,
        subdir="run 7/raw",
        filename_append="_copy",
        data=data,
        mtime=1_700_000_123.25,
    )
    value = encode_chunk(chunk)
    assert value[0] == 0x9A  # fixarray of 10 items

    items = msgpack.unpackb(value, raw=False)
    assert isinstance(items, list)
    assert len(items) == 10
    filename, file_hash, chunk_hash, offset, index, total, subdir, append, payload, mtime = items
    # strings travel as msgpack str, digests and data as msgpack bin
    assert filename == "spectrum ü.h5" and type(filename) is str
    assert file_hash == FILE_HASH and type(file_hash) is bytes
    assert chunk_hash == sha(data) and type(chunk_hash) is bytes
    assert offset == 2304 and type(offset) is int
    assert index == 4 and type(index) is int
    assert total == 9 and type(total) is int
    assert subdir == "run 7/raw" and type(subdir) is str
    assert append == "_copy" and type(append) is str
    assert payload == data and type(payload) is bytes
    assert mtime == 1_700_000_123.25 and type(mtime) is float


def test_integer_mtime_is_encoded_as_float() -> None:
    data = b"x"
    chunk = Chunk("f", FILE_HASH, sha(data), 0, 1, 1, "", "", data, mtime=7)
    assert msgpack.unpackb(encode_chunk(chunk), raw=False)[9] == 7.0
    assert type(msgpack.unpackb(encode_chunk(chunk), raw=False)[9]) is float


def test_chunk_end_and_is_last() -> None:
    data = b"12345"
    chunk = Chunk("f", FILE_HASH, sha(data), 10, 3, 3, "", "", data)
    assert chunk.end == 15
    assert chunk.is_last
    assert not Chunk("f", FILE_HASH, sha(data), 10, 2, 3, "", "", data).is_last


# --- garbage never escapes as anything but ChunkDecodeError --------------------------------------


def decode_or_reason(value: bytes) -> Chunk | str:
    try:
        chunk = decode_chunk(value)
    except ChunkDecodeError as exc:
        assert exc.reason in REASONS
        return exc.reason
    assert isinstance(chunk, Chunk)
    return chunk


@given(st.binary(max_size=512))
@settings(max_examples=400)
def test_arbitrary_bytes_decode_or_raise_chunk_decode_error(value: bytes) -> None:
    decode_or_reason(value)


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.binary(max_size=80)
    | st.text(max_size=20)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
)
map_keys = st.text(max_size=5) | st.binary(max_size=5) | st.integers(-(2**63), 2**64 - 1)
structures = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=12) | st.dictionaries(map_keys, children, max_size=5),
    max_leaves=40,
)


@given(structures)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_msgpack_structures_raise_only_chunk_decode_error(value: object) -> None:
    decode_or_reason(pack(value))


@given(st.lists(leaves, min_size=9, max_size=10))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arrays_of_nine_or_ten_arbitrary_items_raise_only_chunk_decode_error(items: list[object]) -> None:
    decode_or_reason(pack(items))


@given(st.integers(0, 9), leaves)
@settings(max_examples=300)
def test_one_field_replaced_by_anything_raises_only_chunk_decode_error(position: int, replacement: object) -> None:
    items = fields(offset=0, index=2, total=3)
    items[position] = replacement
    result = decode_or_reason(pack(items))
    if isinstance(result, Chunk):
        # only a value that fits the field's type and range can be accepted
        assert result.filename and 1 <= result.index <= result.total and result.offset >= 0


def test_deeply_nested_value_is_not_msgpack_or_bad_shape() -> None:
    value = b"\x91" * 3000 + b"\x01"
    assert reason_of(value) in {"not_msgpack", "bad_shape"}


# --- each reason --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"", None])
def test_empty(value: bytes | None) -> None:
    assert reason_of(value) == "empty"


@pytest.mark.parametrize(
    "value",
    [
        b"\xc1",  # the one byte msgpack never uses
        b"\x9a\x01",  # array of 10 announced, one item present
        pack(fields()) + b"\x00",  # trailing data
        pack({1: 2}),  # non-string map key
        b"\xdb\x00\x00\x00\x10abc",  # str32 announcing more bytes than present
    ],
)
def test_not_msgpack(value: bytes) -> None:
    assert reason_of(value) == "not_msgpack"


@pytest.mark.parametrize(
    "items",
    [1, "text", b"bytes", {"filename": "x"}, None, 1.5, [], fields()[:8], [*fields(), 0.0]],
)
def test_bad_shape(items: object) -> None:
    assert reason_of(pack(items)) == "bad_shape"


@pytest.mark.parametrize(
    "changes",
    [
        {"filename": 5},
        {"filename": None},
        {"filename": b"\xff\xfe.dat"},  # bin, not UTF-8
        {"filename": ""},
        {"subdir": b"\xc3\x28"},  # invalid UTF-8 sequence
        {"subdir": 3},
        {"filename_append": ["x"]},
        {"file_hash": FILE_HASH[:63]},
        {"file_hash": FILE_HASH + b"\x00"},
        {"file_hash": None},
        {"chunk_hash": sha(b"some chunk data")[:63]},
        {"chunk_hash": 12},
        {"offset": True},
        {"offset": 1.0},
        {"offset": "0"},
        {"index": True},
        {"total": True},
        {"total": 1.0},
        {"data": 42},
        {"data": None},
        {"mtime": math.nan},
        {"mtime": math.inf},
        {"mtime": -math.inf},
        {"mtime": True},
        {"mtime": "yesterday"},
        {"mtime": None},
    ],
    ids=repr,
)
def test_bad_field(changes: dict[str, object]) -> None:
    assert reason_of(pack(fields(**changes))) == "bad_field"


def test_empty_filename_is_bad_field_in_nine_item_array_too() -> None:
    assert reason_of(pack(fields(filename="")[:9])) == "bad_field"


@pytest.mark.parametrize(
    "changes",
    [
        {"index": 0, "total": 1},
        {"index": 0, "total": 5},
        {"index": -1, "total": 5},
        {"index": 6, "total": 5},
        {"index": 2, "total": 1},
        {"index": 1, "total": 0},
        {"index": 1, "total": -3},
        {"index": 1, "total": MAX_TOTAL_CHUNKS + 1},
        {"index": 1, "total": 2**64 - 1},
        {"offset": -1},
        {"offset": -(2**63)},
    ],
    ids=repr,
)
def test_impossible_chunk(changes: dict[str, object]) -> None:
    assert reason_of(pack(fields(**changes))) == "impossible_chunk"


def test_largest_total_is_possible() -> None:
    chunk = decode_chunk(pack(fields(index=MAX_TOTAL_CHUNKS, total=MAX_TOTAL_CHUNKS)))
    assert chunk.index == chunk.total == MAX_TOTAL_CHUNKS
    assert chunk.is_last


def test_chunk_hash_mismatch_and_verify_false_skips_it() -> None:
    items = fields(data=b"original")
    items[8] = b"tampered"
    value = pack(items)
    assert reason_of(value) == "chunk_hash_mismatch"
    chunk = decode_chunk(value, verify=False)
    assert chunk.data == b"tampered"
    assert chunk.chunk_hash == sha(b"original")


def test_verify_false_still_checks_everything_else() -> None:
    items = fields(data=b"original")
    items[8] = b"tampered"
    items[4] = 0
    assert reason_of(pack(items), verify=False) == "impossible_chunk"


def test_decode_error_is_a_value_error_with_detail() -> None:
    with pytest.raises(ValueError, match="bad_shape") as info:
        decode_chunk(pack([1, 2, 3]))
    assert isinstance(info.value, ChunkDecodeError)
    assert "3" in info.value.detail
