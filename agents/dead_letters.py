"""Dead-lettering: nothing rejected is lost, and the worker keeps going.

A rejected message is copied to the dead-letter topic with its original key and value; the
reason and its origin travel in headers. A file that fails as a whole (hash mismatch,
processor failure, abandoned upload) is reported there as a small JSON document.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from faust.types import Message

from app.application import app
from app.topics import dead_letter_topic

__all__ = ["dead_letter_file", "dead_letter_message"]

log = logging.getLogger(__name__)


def _headers(reason: str, detail: str, **origin: Any) -> list[tuple[str, bytes]]:
    fields = {"reason": reason, "detail": detail, "time": f"{time.time():.3f}", **origin}
    return [(f"filestream.{name}", str(value).encode()) for name, value in fields.items()]


async def dead_letter_message(message: Message, reason: str, detail: str) -> None:
    """Copy ``message`` to the dead-letter topic with why it was rejected."""
    log.warning("dead-letter %s[%s]@%s: %s: %s", message.topic, message.partition, message.offset, reason, detail)
    app.stats.count("dead_letters")
    await dead_letter_topic.send(
        key=message.key,
        value=message.value,
        headers=_headers(reason, detail, topic=message.topic, partition=message.partition, offset=message.offset),
        force=True,
    )


async def dead_letter_file(relpath: str, reason: str, detail: str, **facts: Any) -> None:
    """Report a whole file version that could not be delivered."""
    log.warning("file %s failed: %s: %s", relpath, reason, detail)
    app.stats.count("files_failed")
    report = {"relpath": relpath, "reason": reason, "detail": detail, **facts}
    await dead_letter_topic.send(
        key=relpath.encode(),
        value=json.dumps(report, sort_keys=True).encode(),
        headers=_headers(reason, detail, kind="file"),
        force=True,
    )
