"""Fixtures for tests against a real Apache Kafka broker started by the project's own code.

The session starts one broker on a spare port with fresh state (``FILESTREAM_TEST_BROKER`` names
an existing broker instead); each test gets its own deployment (app id, topics, directories).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.local_broker import LocalBroker

from .harness import Deployment, free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("FILESTREAM_TEST_BROKER")
    if existing:
        yield existing
        return
    port = free_port()
    broker = LocalBroker(port, controller_port=free_port(), state_root=tmp_path_factory.mktemp("broker"))
    status = broker.up()
    try:
        yield status.bootstrap
    finally:
        broker.down()


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(kafka_bootstrap, tmp_path)
    try:
        yield dep
    finally:
        dep.stop_all()
