"""The ceiling: raw aiokafka moving the corpus bytes as chunk-sized messages, nothing else.

Run as two processes (``python -m bench.ceiling consume ...`` and ``... produce ...``) so each
gets a core, as the systems under test do. No hashing, no framing, nothing written to disk:
the consumer only counts. Client settings match filestream's uploader and worker (acks=all,
idempotent producer, 64 MiB in flight, 4 MiB per-partition fetches, no CRC checks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

__all__ = ["expected_messages", "main"]

INFLIGHT_BYTES = 64 * 1024 * 1024
MAX_FETCH_BYTES = 4 * 1024 * 1024


def expected_messages(sizes: Sequence[int], chunk_size: int) -> int:
    """Messages the producer sends for files of these sizes (an empty file is one message)."""
    return sum(max(1, -(-size // chunk_size)) for size in sizes)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def produce(bootstrap: str, topic: str, partitions: int, root: Path, chunk_size: int) -> None:
    """Send every file under ``root`` in chunk-sized messages, round-robin over partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=max(chunk_size + 4096, 1 << 20),
                                max_request_size=MAX_FETCH_BYTES * 2)
    await producer.start()
    inflight: collections.deque[tuple[asyncio.Future[object], int]] = collections.deque()
    used = 0
    index = 0
    try:
        for path in _files(root):
            with open(path, "rb") as f:
                for _ in range(expected_messages([os.fstat(f.fileno()).st_size], chunk_size)):
                    data = f.read(chunk_size)
                    while used + len(data) > INFLIGHT_BYTES and inflight:
                        done, size = inflight.popleft()
                        await done
                        used -= size
                    inflight.append((await producer.send(topic, data, partition=index % partitions), len(data)))
                    used += len(data)
                    index += 1
        for done, _ in inflight:
            await done
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, partitions: int, messages: int, timeout: float) -> dict[str, float]:
    """Read ``messages`` messages from every partition; report when the last one arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=MAX_FETCH_BYTES, check_crcs=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:  # resolve the start positions before the producer starts
            await consumer.position(tp)
        print("ready", flush=True)
        count = received = 0
        deadline = time.monotonic() + timeout
        while count < messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {count} of {messages} messages in {timeout:.0f} s")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                count += len(records)
                received += sum(len(r.value or b"") for r in records)
        return {"done": time.monotonic(), "messages": count, "bytes": received}
    finally:
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.ceiling produce|consume ...``."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("role", choices=("produce", "consume"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--root", type=Path, help="produce: the corpus directory")
    parser.add_argument("--chunk-size", type=int, default=524_288)
    parser.add_argument("--messages", type=int, help="consume: how many messages to wait for")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.role == "produce":
        asyncio.run(produce(args.bootstrap, args.topic, args.partitions, args.root, args.chunk_size))
    else:
        result = asyncio.run(consume(args.bootstrap, args.topic, args.partitions, args.messages, args.timeout))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
