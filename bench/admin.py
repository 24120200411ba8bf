"""Kafka administration for the benchmark: create and delete topics, watch a consumer group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

__all__ = ["create_topic", "delete_topics", "group_assignment", "group_is_stable"]

T = TypeVar("T")
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def _with_admin(bootstrap: str, job: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
    async def run() -> T:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            return await job(admin)
        finally:
            await admin.close()

    return asyncio.run(run())


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions (room for 8 MiB messages)."""

    async def job(admin: AIOKafkaAdminClient) -> None:
        new = NewTopic(topic, partitions, 1, topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([new])
        for _ in range(100):  # metadata propagates asynchronously
            described = await admin.describe_topics([topic])
            if described and described[0]["error_code"] == 0 and len(described[0]["partitions"]) == partitions:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} did not appear with {partitions} partitions")

    _with_admin(bootstrap, job)


def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; return their names."""

    async def job(admin: AIOKafkaAdminClient) -> list[str]:
        doomed = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if doomed:
            await admin.delete_topics(doomed)
        return doomed

    return _with_admin(bootstrap, job)


def group_is_stable(bootstrap: str, group_id: str, min_members: int = 1) -> bool:
    """True once the consumer group has ``min_members`` members and a completed rebalance (Stable)."""

    async def job(admin: AIOKafkaAdminClient) -> bool:
        try:
            responses = await admin.describe_consumer_groups([group_id])
        except KafkaError:
            return False
        for response in responses:
            for group in response.groups:
                error_code, _, state, _, _, members = group[:6]
                if error_code == 0 and state == "Stable" and len(members) >= min_members:
                    return True
        return False

    return _with_admin(bootstrap, job)


def group_assignment(bootstrap: str, group_id: str) -> dict[str, set[int]]:
    """``{topic: partitions}`` assigned to the members of a Stable consumer group ({} otherwise)."""

    async def job(admin: AIOKafkaAdminClient) -> dict[str, set[int]]:
        try:
            responses = await admin.describe_consumer_groups([group_id])
        except KafkaError:
            return {}
        assigned: dict[str, set[int]] = {}
        for response in responses:
            for group in response.groups:
                error_code, _, state, _, _, members = group[:6]
                if error_code != 0 or state != "Stable":
                    return {}
                for member in members:
                    raw = member[4]
                    if not raw:
                        continue
                    for topic, partitions in ConsumerProtocolMemberAssignment.decode(raw).assignment:
                        assigned.setdefault(topic, set()).update(partitions)
        return assigned

    return _with_admin(bootstrap, job)
