"""Kafka side of the resource measurements: a private broker, a bounded raw producer, and byte
counts per topic (log segment sizes on the broker's disk, or record payloads read back)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.local_broker import KAFKA_VERSION, LocalBroker

from .resources_synth import Message
from .resources_worker import free_port

__all__ = ["BrokerHandle", "ProduceResult", "delete_topics", "group_offsets", "payload_bytes", "produce",
           "start_broker", "topic_log_bytes"]

INFLIGHT_BYTES = 64 * 1024 * 1024
MAX_REQUEST = 4 * 1024 * 1024


@dataclass
class BrokerHandle:
    """Where the broker is; ``local`` is set when this process started it (then its disk is ours)."""

    bootstrap: str
    local: LocalBroker | None = None
    pid: int | None = None

    @property
    def data_dir(self) -> Path | None:
        return self.local.data_dir if self.local is not None else None

    @property
    def kafka_version(self) -> str:
        return KAFKA_VERSION if self.local is not None else "external broker"

    def stop(self) -> None:
        if self.local is not None:
            self.local.down()


def start_broker(state_root: Path) -> BrokerHandle:
    """A fresh single-node broker on spare ports, state under ``state_root``; deleted topics go
    from disk after 1 s (not 60 s) so disk use stays bounded between cases."""
    broker = LocalBroker(free_port(), controller_port=free_port(), state_root=state_root,
                         extra_properties={"file.delete.delay.ms": "1000", "log.flush.scheduler.interval.ms": "1000"})
    status = broker.up(timeout=180)
    return BrokerHandle(status.bootstrap, broker, status.pid)


@dataclass(frozen=True)
class ProduceResult:
    """What one :func:`produce` call sent: messages, value+key bytes, last offset per partition."""

    messages: int
    bytes: int
    seconds: float
    end_offsets: dict[int, int]


async def _produce(bootstrap: str, topic: str, messages: Iterable[Message]) -> ProduceResult:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=1 << 20, max_request_size=MAX_REQUEST, request_timeout_ms=60_000)
    await producer.start()
    inflight: collections.deque[tuple[asyncio.Future[object], int]] = collections.deque()
    used = count = total = 0
    ends: dict[int, int] = {}
    started = time.monotonic()

    async def settle() -> None:
        nonlocal used
        fut, size = inflight.popleft()
        meta = await fut
        ends[meta.partition] = max(ends.get(meta.partition, -1), meta.offset + 1)  # type: ignore[attr-defined]
        used -= size

    try:
        for key, value in messages:
            while inflight and used + len(value) > INFLIGHT_BYTES:
                await settle()
            inflight.append((await producer.send(topic, value, key=key), len(value)))
            used += len(value)
            count += 1
            total += len(key) + len(value)
        while inflight:
            await settle()
    finally:
        await producer.stop()
    return ProduceResult(count, total, time.monotonic() - started, ends)


def produce(bootstrap: str, topic: str, messages: Iterable[Message]) -> ProduceResult:
    """Send ``messages`` to ``topic`` (acks=all, idempotent, 64 MiB in flight), all acknowledged."""
    return asyncio.run(_produce(bootstrap, topic, messages))


def topic_log_bytes(data_dir: Path, topics: Iterable[str]) -> dict[str, int]:
    """Sum of ``*.log`` segment sizes of each topic's partition directories (``<topic>-<n>``).

    Index files are preallocated and left out; a deleted topic (``...-delete``) counts nothing.
    """
    wanted = set(topics)
    sizes = dict.fromkeys(wanted, 0)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(data_dir):
            topic, sep, partition = entry.name.rpartition("-")
            if not (sep and partition.isdigit() and topic in wanted and entry.is_dir()):
                continue
            with contextlib.suppress(FileNotFoundError):
                for seg in os.scandir(entry.path):
                    if seg.name.endswith(".log"):
                        with contextlib.suppress(FileNotFoundError):
                            sizes[topic] += seg.stat().st_size
    return sizes


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


async def _payload_bytes(bootstrap: str, topic: str) -> tuple[int, int]:
    parts = await _partitions(bootstrap, topic)
    if not parts:
        return 0, 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, check_crcs=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_REQUEST)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = size = 0
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, recs in batch.items():
                for r in recs:
                    records += 1
                    size += len(r.key or b"") + len(r.value or b"") + sum(len(k) + len(v) for k, v in r.headers)
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return records, size
    finally:
        await consumer.stop()


def payload_bytes(bootstrap: str, topic: str) -> tuple[int, int]:
    """``(records, key+value+header bytes)`` of every record of ``topic`` (compaction may drop some)."""
    return asyncio.run(_payload_bytes(bootstrap, topic))


async def _group_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def group_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """Committed offsets of ``group``: ``{(topic, partition): offset}``."""
    return asyncio.run(_group_offsets(bootstrap, group))


async def _delete(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = sorted(t for t in await admin.list_topics() if t.startswith((f"{prefix}.", f"{prefix}-")))
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic named ``<prefix>.*`` or ``<prefix>-*`` (a case's app id: its topics and changelogs)."""
    return asyncio.run(_delete(bootstrap, prefix))
