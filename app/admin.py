"""Topic administration with a plain aiokafka admin client: creating and inspecting topics."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .security import aiokafka_security
from .settings import Settings

__all__ = ["TopologyError", "ensure_topic", "partition_count", "prepare_topics"]


class TopologyError(RuntimeError):
    """Topics whose layout breaks an assumption of filestream (e.g. co-partitioning)."""


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **aiokafka_security(settings))


async def ensure_topic(settings: Settings, topic: str, *, partitions: int | None = None) -> None:
    """Create ``topic`` if it does not exist, with filestream's partitions and message size."""
    admin = _admin(settings)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        new = NewTopic(topic, partitions or settings.partitions, settings.replication_factor,
                       topic_configs={"max.message.bytes": str(settings.max_fetch_bytes)})
        try:
            await admin.create_topics([new])
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


async def partition_count(settings: Settings, topic: str) -> int:
    """Number of partitions of an existing topic (0 if it does not exist)."""
    admin = _admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described[0].get("partitions") or []) if described else 0


async def prepare_topics(settings: Settings) -> None:
    """Create the worker's topics and check they are co-partitioned, before it joins its group.

    Topics created later, while the group forms, can be missing from the first assignment; and
    a chunk topic whose partitions differ from the files topic and the tables would announce
    files to workers that do not hold them.
    """
    await ensure_topic(settings, settings.chunk_topic)
    await ensure_topic(settings, settings.files_topic)
    await ensure_topic(settings, settings.dead_letter_topic, partitions=1)
    counts = {t: await partition_count(settings, t) for t in (settings.chunk_topic, settings.files_topic)}
    if set(counts.values()) != {settings.partitions}:
        raise TopologyError(f"topic partitions {counts} differ from FILESTREAM_PARTITIONS={settings.partitions}; "
                            "the chunk and files topics and FILESTREAM_PARTITIONS must agree")
