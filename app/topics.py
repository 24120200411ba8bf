"""The topics of a filestream deployment and the event records they carry."""

from __future__ import annotations

import faust

from .application import app

__all__ = ["CompletedFile", "chunk_topic", "dead_letter_topic", "files_topic"]


class CompletedFile(faust.Record, serializer="json"):
    """A reassembled, verified file, staged on the disk of the worker that holds it."""

    key: str  #: table key of the file version (see :func:`app.paths.file_key`)
    relpath: str  #: checked relative output path
    file_hash: str  #: SHA-512 hex of the whole file
    size: int
    mtime: float
    holder: str  #: staging area id of the worker that has the bytes
    partition: int
    first_offset: int


_partitions = app.settings.partitions
# internal=True makes the worker create these topics (with the right partitions and message
# size) before subscribing, instead of letting the broker auto-create them with its defaults.
_declared = {"internal": True, "config": {"max.message.bytes": str(app.settings.max_fetch_bytes)}}

#: File chunks, keyed by relative path; values in OpenMSIStream's wire format.
chunk_topic = app.topic(
    app.settings.chunk_topic,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=_partitions,
    **_declared,
)

#: One event per completed file; co-partitioned with the chunk topic so the worker that
#: staged a file is the one whose processor agents receive it.
files_topic = app.topic(
    app.settings.files_topic,
    key_type=str,
    value_type=CompletedFile,
    partitions=_partitions,
    **_declared,
)

#: Rejected messages (original key and value, reason in headers) and failed-file reports.
dead_letter_topic = app.topic(
    app.settings.dead_letter_topic,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=1,
    **_declared,
)
