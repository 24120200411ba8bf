"""Run OpenMSIStream's own chunk code on request, for the interop tests.

This script is NOT run in filestream's venv: it is run by the python of a separate venv that
has ``openmsistream`` installed (``.venv-openmsistream``, see
``tests/unit/test_openmsistream_interop.py``), so that filestream itself never depends on
OpenMSIStream or its Rust-compiled dependencies. Nothing from OpenMSIStream is copied here; it
is imported and called.

Protocol: one JSON request on stdin, one JSON response on stdout. Bytes travel as base64.
A request is one operation ``{"op": ..., ...}`` or a batch ``{"batch": [op, op, ...]}``
(answered by ``{"openmsistream_version": ..., "results": [result, ...]}``, one result per
operation, in order). Operations:

``encode``
    ``{"op": "encode", "chunk": FIELDS}`` builds a real ``DataFileChunk`` (the way
    ``UploadDataFile`` does: a file path under a root directory) and serializes it with
    ``DataFileChunkSerializer``. Result: ``{"value": b64, "key": msg_key}``.
``decode``
    ``{"op": "decode", "value": b64}`` deserializes with ``DataFileChunkDeserializer``
    (which checks the chunk hash). Result: ``{"chunk": FIELDS}`` or ``{"error": text}``.
``chunk_file``
    ``{"op": "chunk_file", "path": ..., "root": ..., "chunk_size": n, "filename_append": ""}``
    lets ``UploadDataFile`` chunk a real file exactly as it does before producing (no broker
    is needed for that part) and serializes every chunk. Result: ``{"chunks": [{"key": str,
    "key_bytes": b64, "value": b64}, ...]}`` or ``{"error": text}``.

FIELDS is ``{"filename", "file_hash", "chunk_hash", "offset", "index", "total", "subdir",
"filename_append", "data", "mtime"}`` with the three byte fields in base64 and ``mtime`` a
float or null (OpenMSIStream's "no mtime"); ``decode`` adds ``"chunk_size"`` and ``"filepath"``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import pathlib
import sys
import traceback
from importlib.metadata import version

# Importing any openmsistream submodule runs the package __init__, which imports the whole
# library (confluent_kafka, kafkacrypto, ...), but nothing connects to a broker or reads a
# config file until a producer or consumer is made.
from confluent_kafka.serialization import StringSerializer
from openmsistream.data_file_io.entity.data_file_chunk import DataFileChunk
from openmsistream.data_file_io.entity.upload_data_file import UploadDataFile
from openmsistream.kafka_wrapper.serialization import DataFileChunkDeserializer, DataFileChunkSerializer
from openmsitoolbox.logging import OpenMSILogger

#: Stands in for the upload root of chunks built from fields alone; never touched on disk.
FAKE_ROOT = pathlib.Path("/openmsistream-interop-root")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _quiet_logger(name: str) -> OpenMSILogger:
    # Given a logger, LogOwner does not create "<class>.log" next to the file it handles.
    return OpenMSILogger(name, streamlevel=logging.ERROR, conf_global_logger=False)


def encode(request: dict) -> dict:
    fields = request["chunk"]
    data = _unb64(fields["data"])
    subdir_parts = pathlib.PurePosixPath(fields["subdir"]).parts
    chunk = DataFileChunk(
        FAKE_ROOT.joinpath(*subdir_parts, fields["filename"]),
        fields["filename"],
        _unb64(fields["file_hash"]),
        _unb64(fields["chunk_hash"]),
        fields["offset"],  # chunk_offset_read
        fields["offset"],  # chunk_offset_write
        len(data),
        fields["index"],
        fields["total"],
        rootdir=FAKE_ROOT,
        filename_append=fields["filename_append"],
        data=data,
        file_mtime=fields["mtime"],
    )
    return {"value": _b64(DataFileChunkSerializer()(chunk)), "key": chunk.msg_key}


def decode(request: dict) -> dict:
    try:
        chunk = DataFileChunkDeserializer()(_unb64(request["value"]))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "chunk": {
            "filename": chunk.filename,
            "file_hash": _b64(chunk.file_hash),
            "chunk_hash": _b64(chunk.chunk_hash),
            "offset": chunk.chunk_offset_write,
            "index": chunk.chunk_i,
            "total": chunk.n_total_chunks,
            "subdir": chunk.subdir_str,
            "filename_append": chunk.filename_append,
            "data": _b64(chunk.data),
            "mtime": chunk.file_mtime,
            "chunk_size": chunk.chunk_size,
            "filepath": str(chunk.filepath),
        }
    }


def chunk_file(request: dict) -> dict:
    path = pathlib.Path(request["path"]).resolve()
    root = pathlib.Path(request["root"]).resolve()
    upload = UploadDataFile(
        path,
        rootdir=root,
        filename_append=request.get("filename_append", ""),
        logger=_quiet_logger("UploadDataFile"),
    )
    # What upload_whole_file / DataFileUploadDirectory do before handing chunks to producers.
    upload.add_chunks_to_upload(chunk_size=request["chunk_size"], capture_mtime=True)
    if not upload.to_upload:  # add_chunks_to_upload logs and swallows its own errors
        return {"error": f"UploadDataFile could not chunk {path}"}
    serialize_value = DataFileChunkSerializer()
    serialize_key = StringSerializer()  # the key.serializer of OpenMSIStream's shipped configs
    chunks = []
    for chunk in upload.chunks_to_upload:
        # The serializer reads the chunk's bytes from the file (populate_with_file_data),
        # as it does when a producer sends it.
        value = serialize_value(chunk)
        chunks.append({"key": chunk.msg_key, "key_bytes": _b64(serialize_key(chunk.msg_key)), "value": _b64(value)})
    return {"chunks": chunks}


OPERATIONS = {"encode": encode, "decode": decode, "chunk_file": chunk_file}


def handle(request: dict) -> dict:
    op = request.get("op")
    if op not in OPERATIONS:
        return {"error": f"unknown op {op!r}"}
    try:
        return OPERATIONS[op](request)
    except Exception:
        return {"error": traceback.format_exc()}


def main() -> int:
    request = json.load(sys.stdin)
    # Anything OpenMSIStream prints must not corrupt the JSON answer.
    with contextlib.redirect_stdout(sys.stderr):
        if "batch" in request:
            response = {"results": [handle(item) for item in request["batch"]]}
        else:
            response = handle(request)
    response["openmsistream_version"] = version("openmsistream")
    json.dump(response, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
