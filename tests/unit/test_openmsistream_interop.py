"""Wire compatibility with OpenMSIStream, checked against OpenMSIStream's real code.

OpenMSIStream cannot live in filestream's venv (kafkacrypto pulls in Rust-compiled
``cryptography``), so it runs in its own venv, ``<repo>/.venv-openmsistream``, through
``tests/interop/openmsistream_codec.py``. Every request goes to it in one batched subprocess
call per test module. A missing venv is a failure, not a skip: CI must run these checks.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path, PurePosixPath

import msgpack
import pytest

from app.codec import Chunk, ChunkDecodeError, decode_chunk, encode_chunk
from app.uploader import FileUpload, chunk_file, file_digest

REPO = Path(__file__).resolve().parents[2]
CODEC_SCRIPT = REPO / "tests" / "interop" / "openmsistream_codec.py"
OPENMSISTREAM_VERSION = "1.8.8"
PYTHON_ENV = "FILESTREAM_OPENMSISTREAM_PYTHON"
DEFAULT_PYTHON = REPO / ".venv-openmsistream" / "bin" / "python"

CHUNK_SIZE = 64 * 1024
FILE_MTIME = 1_700_000_123.456789


def _chunk(data: bytes, **fields: object) -> Chunk:
    values: dict[str, object] = {
        "filename": "data.bin",
        "file_hash": hashlib.sha512(b"whole file " + data).digest(),
        "chunk_hash": hashlib.sha512(data).digest(),
        "offset": 0,
        "index": 1,
        "total": 1,
        "subdir": "",
        "filename_append": "",
        "data": data,
        "mtime": 0.0,
    }
    values.update(fields)
    return Chunk(**values)  # type: ignore[arg-type]


#: Field combinations both sides must agree on, in both directions and byte for byte.
CASES: dict[str, Chunk] = {
    "root_mtime_0": _chunk(b"plain data\n", mtime=0.0),
    "unicode_nested_subdir": _chunk(
        bytes(range(256)) * 3,
        filename="résumé 📄.txt",
        subdir="données/ü/深い/層",
        offset=768,
        index=2,
        total=3,
        mtime=1_712_345_678.123456,
    ),
    "empty_data": _chunk(b"", filename="empty.dat", subdir="a/b", mtime=1_600_000_000.0),
    "filename_append": _chunk(
        b"x" * 1000,
        filename="scan.tif",
        subdir="run_7",
        filename_append="_copy2",
        offset=4000,
        index=5,
        total=9,
        mtime=1.5,
    ),
    "large_offset_and_counts": _chunk(
        os.urandom(4096),
        filename="huge.raw",
        subdir="big",
        offset=5 * 2**30 + 17,
        index=1_310_721,
        total=16_777_216,
        mtime=4_102_444_800.0,
    ),
    "integral_mtime": _chunk(b"\x00" * 10, filename="z", mtime=1_700_000_000.0),
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _fields(chunk: Chunk) -> dict[str, object]:
    out = asdict(chunk)
    for name in ("file_hash", "chunk_hash", "data"):
        out[name] = _b64(out[name])
    return out


def _as_chunk(fields: dict) -> Chunk:
    """An OpenMSIStream-decoded chunk in our terms: its "no mtime" (None) is our 0.0."""
    return Chunk(
        filename=fields["filename"],
        file_hash=_unb64(fields["file_hash"]),
        chunk_hash=_unb64(fields["chunk_hash"]),
        offset=fields["offset"],
        index=fields["index"],
        total=fields["total"],
        subdir=fields["subdir"],
        filename_append=fields["filename_append"],
        data=_unb64(fields["data"]),
        mtime=0.0 if fields["mtime"] is None else fields["mtime"],
    )


def _openmsistream_python() -> Path:
    configured = os.environ.get(PYTHON_ENV)
    python = Path(configured) if configured else DEFAULT_PYTHON
    if not python.exists():
        pytest.fail(
            f"OpenMSIStream interop python not found at {python}.\n"
            "These tests run OpenMSIStream's own serializer in a separate venv (it cannot be installed "
            "in .venv: kafkacrypto needs Rust-compiled cryptography). The project's setup script creates it; "
            "to create it by hand, from the repository root:\n"
            f"    python3 -m venv .venv-openmsistream && .venv-openmsistream/bin/pip install "
            f"openmsistream=={OPENMSISTREAM_VERSION}\n"
            f"or set {PYTHON_ENV} to a python that has openmsistream {OPENMSISTREAM_VERSION} installed.",
            pytrace=False,
        )
    return python


def _run_openmsistream(batch: list[dict], cwd: Path) -> list[dict]:
    proc = subprocess.run(
        [str(_openmsistream_python()), "-I", str(CODEC_SCRIPT)],
        input=json.dumps({"batch": batch}).encode(),
        capture_output=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{CODEC_SCRIPT.name} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}", pytrace=False
        )
    response = json.loads(proc.stdout)
    assert response["openmsistream_version"] == OPENMSISTREAM_VERSION, (
        f"interop venv has openmsistream {response['openmsistream_version']}, expected {OPENMSISTREAM_VERSION}"
    )
    results = response["results"]
    assert len(results) == len(batch)
    return results


def _write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (FILE_MTIME, FILE_MTIME))
    return path


def _corrupt(chunk: Chunk) -> Chunk:
    return replace(chunk, data=b"tampered" + chunk.data)


#: A pre-mtime producer's message: the first nine fields only.
LEGACY_NINE = msgpack.packb(
    ["old.bin", hashlib.sha512(b"old").digest(), hashlib.sha512(b"old").digest(), 0, 1, 1, "legacy", "", b"old"],
    use_bin_type=True,
)


@pytest.fixture(scope="module")
def oms(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Everything OpenMSIStream is asked, in one subprocess call."""
    work = tmp_path_factory.mktemp("openmsistream")
    root = work / "upload_root"
    files = {
        # several chunks with a short tail, in a nested unicode subdirectory
        "multi": (_write_file(root / "sub" / "ü" / "data.bin", os.urandom(5 * CHUNK_SIZE + 123)), "sub/ü/data.bin"),
        # an exact multiple of the chunk size, at the root
        "exact": (_write_file(root / "exact.bin", os.urandom(2 * CHUNK_SIZE)), "exact.bin"),
        "single": (_write_file(root / "d" / "small.txt", b"one small chunk\n"), "d/small.txt"),
        "empty": (_write_file(root / "empty.txt", b""), "empty.txt"),
    }
    batch: list[dict] = []
    slots: dict[tuple, int] = {}

    def ask(slot: tuple, request: dict) -> None:
        slots[slot] = len(batch)
        batch.append(request)

    for name, chunk in CASES.items():
        ask(("encode", name), {"op": "encode", "chunk": _fields(chunk)})
        ask(("decode", name), {"op": "decode", "value": _b64(encode_chunk(chunk))})
        ask(("decode_corrupt", name), {"op": "decode", "value": _b64(encode_chunk(_corrupt(chunk)))})
    ask(("encode", "mtime_none"), {"op": "encode", "chunk": {**_fields(CASES["root_mtime_0"]), "mtime": None}})
    ask(("decode", "legacy_nine"), {"op": "decode", "value": _b64(LEGACY_NINE)})
    negative = replace(CASES["root_mtime_0"], mtime=-86_400.0)
    ask(("decode", "negative_mtime"), {"op": "decode", "value": _b64(encode_chunk(negative))})
    for name, (path, _rel) in files.items():
        ask(("chunk_file", name), {"op": "chunk_file", "path": str(path), "root": str(root), "chunk_size": CHUNK_SIZE})
    results = _run_openmsistream(batch, work)
    answers = {slot: results[i] for slot, i in slots.items()}
    return {"answers": answers, "files": files, "negative": negative}


def _ok(result: dict) -> dict:
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_openmsistream_encoded_chunks_decode_identically(oms: dict, name: str) -> None:
    value = _unb64(_ok(oms["answers"]["encode", name])["value"])
    assert decode_chunk(value) == CASES[name]


@pytest.mark.parametrize("name", list(CASES))
def test_our_chunks_deserialize_in_openmsistream(oms: dict, name: str) -> None:
    # OpenMSIStream's deserializer verifies the chunk hash itself and raises if it is wrong.
    decoded = _ok(oms["answers"]["decode", name])["chunk"]
    chunk = CASES[name]
    assert _as_chunk(decoded) == chunk
    assert decoded["mtime"] == (chunk.mtime or None)  # OpenMSIStream reads 0.0 as "no mtime"
    assert decoded["chunk_size"] == len(chunk.data)
    assert decoded["filepath"] == str(PurePosixPath(chunk.subdir, chunk.filename))


@pytest.mark.parametrize("name", list(CASES))
def test_encoding_is_byte_identical(oms: dict, name: str) -> None:
    assert encode_chunk(CASES[name]) == _unb64(_ok(oms["answers"]["encode", name])["value"])


def test_openmsistream_without_mtime_encodes_like_our_zero(oms: dict) -> None:
    assert _unb64(_ok(oms["answers"]["encode", "mtime_none"])["value"]) == encode_chunk(CASES["root_mtime_0"])


@pytest.mark.parametrize("name", list(CASES))
def test_both_reject_a_corrupt_chunk(oms: dict, name: str) -> None:
    result = oms["answers"]["decode_corrupt", name]
    assert "chunk hash" in result.get("error", ""), result
    with pytest.raises(ChunkDecodeError) as raised:
        decode_chunk(encode_chunk(_corrupt(CASES[name])))
    assert raised.value.reason == "chunk_hash_mismatch"


def test_legacy_nine_field_chunks(oms: dict) -> None:
    ours = decode_chunk(LEGACY_NINE)
    theirs = _ok(oms["answers"]["decode", "legacy_nine"])["chunk"]
    assert theirs["mtime"] is None
    assert ours.mtime == 0.0
    assert _as_chunk(theirs) == ours


def test_pre_epoch_mtime_is_dropped_by_openmsistream(oms: dict) -> None:
    """A known difference: OpenMSIStream keeps only positive mtimes; we keep any finite one."""
    theirs = _ok(oms["answers"]["decode", "negative_mtime"])["chunk"]
    assert theirs["mtime"] is None
    assert decode_chunk(encode_chunk(oms["negative"])).mtime == -86_400.0


def _our_chunks(path: Path, rel: str) -> list[Chunk]:
    file_hash, size, mtime = file_digest(path)
    return list(chunk_file(FileUpload(path, PurePosixPath(rel)), CHUNK_SIZE, file_hash, size, mtime))


def _openmsistream_key(rel: str, index: int, total: int) -> str:
    relpath = PurePosixPath(rel)
    subdir = "" if str(relpath.parent) == "." else relpath.parent.as_posix()
    return f"{'_'.join(subdir.split('/'))}_{relpath.name}_chunk_{index}_of_{total}"


@pytest.mark.parametrize("name", ["multi", "exact", "single"])
def test_openmsistream_file_chunks_equal_ours(oms: dict, name: str) -> None:
    path, rel = oms["files"][name]
    theirs = _ok(oms["answers"]["chunk_file", name])["chunks"]
    ours = _our_chunks(path, rel)
    assert len(theirs) == len(ours) == max(1, -(-path.stat().st_size // CHUNK_SIZE))
    for mine, their in zip(ours, theirs, strict=True):
        value = _unb64(their["value"])
        decoded = decode_chunk(value)
        # field by field first, for a readable failure; both read st_mtime, so mtime is defined on both sides
        assert asdict(decoded) == asdict(mine)
        assert decoded.mtime == FILE_MTIME
        assert value == encode_chunk(mine)
        # Keys differ by design: OpenMSIStream keys each chunk "<subdir_with_underscores>_<name>_chunk_<i>_of_<n>"
        # (so a file's chunks spread over partitions); we key every chunk of a file with its relative path.
        assert their["key"] == _openmsistream_key(rel, mine.index, mine.total)
        assert _unb64(their["key_bytes"]) == their["key"].encode("utf-8")


def test_empty_file_has_no_openmsistream_chunks(oms: dict) -> None:
    """A known difference: OpenMSIStream sends nothing for an empty file; we send one empty chunk."""
    path, rel = oms["files"]["empty"]
    assert _ok(oms["answers"]["chunk_file", "empty"])["chunks"] == []
    [ours] = _our_chunks(path, rel)
    assert (ours.data, ours.index, ours.total) == (b"", 1, 1)


def test_openmsistream_is_not_in_our_venv() -> None:
    """The point of the separate venv: filestream's own interpreter must not have openmsistream."""
    assert importlib.util.find_spec("openmsistream") is None, f"openmsistream is installed in {sys.prefix}"
