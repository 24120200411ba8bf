"""Every setting of filestream, read from the environment with the ``FILESTREAM_`` prefix.

This is the only module that reads ``os.environ``. Each field's environment name is
``FILESTREAM_`` plus the field name in upper case (``chunk_size`` -> ``FILESTREAM_CHUNK_SIZE``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ENV_PREFIX", "Settings", "SettingsError"]

ENV_PREFIX = "FILESTREAM_"
_SECRET = {"sasl_password"}


class SettingsError(ValueError):
    """An environment variable that does not parse as its setting's type."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class Settings:
    """Typed, immutable configuration. Build it with :meth:`from_env`."""

    broker: str = field(default="kafka://127.0.0.1:9092", metadata=_doc(
        "Kafka bootstrap servers, comma-separated; `kafka://` is added when missing."))
    app_id: str = field(default="filestream", metadata=_doc(
        "Faust application id: the consumer group, and the prefix of changelog topics."))
    chunk_topic: str = field(default="filestream.chunks", metadata=_doc(
        "Topic carrying file chunks (OpenMSIStream DataFileChunk format)."))
    files_topic: str = field(default="filestream.files", metadata=_doc(
        "Topic announcing each reassembled, verified file to the processor agents."))
    dead_letter_topic: str = field(default="filestream.dead-letter", metadata=_doc(
        "Topic receiving every message or file that could not be processed, with its reason."))
    partitions: int = field(default=4, metadata=_doc(
        "Partitions of the chunk and files topics and of the tables (the unit of scale-out)."))
    replication_factor: int = field(default=1, metadata=_doc(
        "Replication factor of topics that filestream creates."))
    chunk_size: int = field(default=524_288, metadata=_doc(
        "Bytes of file data per chunk message when uploading."))
    output_dir: Path = field(default=Path("output"), metadata=_doc(
        "Root directory the directory processor writes reassembled files under."))
    datadir: Path = field(default=Path("filestream-data"), metadata=_doc(
        "Worker state on local disk: partial and staged files, table stores."))
    web_host: str = field(default="127.0.0.1", metadata=_doc("Address the status web server binds."))
    web_port: int = field(default=6066, metadata=_doc("Port of the status web server."))
    io_threads: int = field(default=4, metadata=_doc(
        "Threads for blocking work (disk writes, hashing, S3 calls) off the event loop."))
    stream_buffer: int = field(default=16, metadata=_doc(
        "Chunk messages buffered per worker ahead of the agent (memory: this times chunk size)."))
    reassembly_lanes: int = field(default=8, metadata=_doc(
        "Files reassembled concurrently at most (chunks of one file are always handled in order)."))
    processor_lanes: int = field(default=8, metadata=_doc(
        "Files each processor works on concurrently at most (versions of one path always in order)."))
    lane_depth: int = field(default=2, metadata=_doc(
        "Messages queued per lane of an agent (memory: this times reassembly lanes times chunk size)."))
    max_fetch_bytes: int = field(default=4 * 1024 * 1024, metadata=_doc(
        "Largest fetch per partition from the broker; must exceed the largest chunk message."))
    upload_inflight_bytes: int = field(default=64 * 1024 * 1024, metadata=_doc(
        "Chunk bytes the uploader may have sent but not yet had acknowledged."))
    processor_attempts: int = field(default=5, metadata=_doc(
        "Attempts a processor gets on one file before the file is dead-lettered."))
    abandon_after: float = field(default=24 * 3600.0, metadata=_doc(
        "Seconds without a new chunk after which a partial file is abandoned and reported."))
    finished_retention: float = field(default=7 * 24 * 3600.0, metadata=_doc(
        "Seconds a finished file is remembered, so its redelivered chunks are ignored; keep it at least "
        "the chunk topic's retention."))
    shutdown_timeout: float = field(default=60.0, metadata=_doc(
        "Seconds a stopping worker may take to finish in-flight work and commit before it exits anyway."))
    journal: str = field(default="", metadata=_doc(
        "If set, a file that gets one JSON line per successful processor run (audits, fault tests)."))
    session_timeout: float = field(default=30.0, metadata=_doc(
        "Consumer group session timeout, seconds (also bounds rebalance time)."))
    heartbeat_interval: float = field(default=3.0, metadata=_doc(
        "Consumer group heartbeat interval, seconds."))
    commit_interval: float = field(default=2.8, metadata=_doc(
        "Seconds between offset commits."))
    producer_linger: float = field(default=0.005, metadata=_doc(
        "Seconds the worker's producer waits to batch table writes and announcements into one request."))
    security_protocol: str = field(default="PLAINTEXT", metadata=_doc(
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."))
    sasl_mechanism: str = field(default="PLAIN", metadata=_doc(
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)."))
    sasl_username: str = field(default="", metadata=_doc("SASL user name."))
    sasl_password: str = field(default="", metadata=_doc("SASL password (never printed)."))
    ssl_cafile: str = field(default="", metadata=_doc("CA bundle for SSL / SASL_SSL."))
    ssl_certfile: str = field(default="", metadata=_doc("Client certificate for mutual TLS."))
    ssl_keyfile: str = field(default="", metadata=_doc("Client key for mutual TLS."))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``FILESTREAM_*`` variables (``os.environ`` by default), then apply overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        if min(self.partitions, self.chunk_size, self.io_threads, self.reassembly_lanes, self.processor_lanes,
               self.lane_depth) < 1:
            raise SettingsError("partitions, chunk_size, io_threads, lanes and lane_depth must be positive")
        if self.max_fetch_bytes < self.chunk_size + 4096:
            raise SettingsError("max_fetch_bytes must exceed chunk_size plus message overhead")
        if self.security_protocol not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            raise SettingsError(f"unknown security_protocol {self.security_protocol!r}")

    @property
    def broker_urls(self) -> list[str]:
        """Bootstrap servers as Faust URLs."""
        return [u if "://" in u else f"kafka://{u}" for u in (s.strip() for s in self.broker.split(",")) if u]

    @property
    def bootstrap_servers(self) -> list[str]:
        """Bootstrap servers as ``host:port`` for aiokafka clients."""
        return [u.split("://", 1)[1] for u in self.broker_urls]

    def describe(self) -> list[tuple[str, str, str]]:
        """``(environment name, value, doc)`` for every setting, secrets masked."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = "****" if f.name in _SECRET and value else str(value)
            rows.append((ENV_PREFIX + f.name.upper(), shown, f.metadata.get("doc", "")))
        return rows

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{n}={v}" for n, v, _ in self.describe()) + ")"


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "Path": Path}.get(str(f.type), str)
    try:
        if kind is int:
            return int(raw.replace("_", ""))
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        return raw
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
