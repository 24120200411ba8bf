"""Integration tests of app.local_broker against a real Apache Kafka 4.x broker.

The jars come from the shared cache ($FILESTREAM_CACHE_DIR or ~/.cache/filestream, fetched
once with Maven); broker state lives in pytest tmp dirs.  The main broker listens on
127.0.0.1:19192 (controller 19193), or on two free ports when those are taken.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app import local_broker
from app.local_broker import (
    KAFKA_VERSION,
    BrokerSetupError,
    LocalBroker,
    ensure_java_and_maven,
    probe_broker,
    wait_until_ready,
)

from .harness import free_port

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
MAX_REQUEST = 8 * 1024 * 1024


# --------------------------------------------------------------------------- helpers


def _port_pair(preferred: int) -> tuple[int, int]:
    """(port, controller_port): preferred and preferred+1 when free, else two free ports."""
    if local_broker._port_free(preferred) and local_broker._port_free(preferred + 1):
        return preferred, preferred + 1
    return free_port(), free_port()


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_REQUEST)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, count: int, *, group: str | None = None, timeout: float = 30.0
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_REQUEST,
        fetch_max_bytes=4 * MAX_REQUEST,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    values.extend(record.value for record in records if record.value is not None)
        if group is not None:
            await consumer.commit()
    except TimeoutError:
        pytest.fail(f"consumed only {len(values)} of {count} records from {topic} within {timeout}s")
    finally:
        await consumer.stop()
    return values


def _make_fake_mvn(bin_dir: Path) -> Path:
    """A stand-in for mvn: writes jars into -DoutputDirectory, fails when FAKE_MVN_MODE=fail."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    mvn = bin_dir / "mvn"
    mvn.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac; done\n'
        'echo "$FAKE_MVN_MODE" >> "$FAKE_MVN_CALLS"\n'
        'mkdir -p "$out" && touch "$out/some-dependency-1.0.jar"\n'
        'if [ "$FAKE_MVN_MODE" = fail ]; then echo "[ERROR] simulated transfer failure"; exit 1; fi\n'
        f'touch "$out/kafka_2.13-{KAFKA_VERSION}.jar"\n'
    )
    mvn.chmod(0o755)
    return mvn


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker with tmp state and the shared jar cache; every test calls up() itself."""
    port, controller_port = _port_pair(19192)
    instance = LocalBroker(port, controller_port=controller_port, state_root=tmp_path_factory.mktemp("brokers"))
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture
def squatter() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not Kafka, to stand in for a reused pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- the real broker


def test_up_is_idempotent_and_status_reports_running(broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    first = broker.up()
    second = broker.up()
    assert first.running and first.pid is not None
    assert second.pid == first.pid
    assert first.bootstrap == broker.bootstrap == f"{HOST}:{broker.port}"
    assert first.log_path == broker.log_path and broker.log_path.is_file()
    assert broker.pid_path.read_text().strip() == str(first.pid)
    assert broker.status() == first
    assert probe_broker(HOST, broker.port) == [(1, HOST, broker.port)]

    # Another process's view: no Popen handle, identity from /proc/PID/cmdline.
    monkeypatch.setattr(local_broker, "_CHILDREN", {})
    other = LocalBroker(broker.port, controller_port=broker.controller_port, state_root=broker.state_dir.parent)
    assert other.status().pid == first.pid
    assert other.up(timeout=30).pid == first.pid


def test_produce_and_consume_round_trip(broker: LocalBroker) -> None:
    broker.up()
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    big = os.urandom(3 * 1024 * 1024)  # above Kafka's 1 MiB default message.max.bytes
    values = [b"one", b"two", big]
    asyncio.run(_produce(broker.bootstrap, topic, values))  # creates the topic implicitly
    assert asyncio.run(_consume(broker.bootstrap, topic, len(values), group=f"g-{topic}")) == values


def test_transactional_produce(broker: LocalBroker) -> None:
    """Transaction state topic works with replication factor 1 and min ISR 1."""
    broker.up()
    topic = f"txn-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=f"tx-{topic}")
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed")
        finally:
            await producer.stop()

    asyncio.run(run())
    assert asyncio.run(_consume(broker.bootstrap, topic, 1)) == [b"committed"]


def test_down_then_up_keeps_data(broker: LocalBroker) -> None:
    before = broker.up()
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    asyncio.run(_produce(broker.bootstrap, topic, [b"survives restart"]))

    assert broker.down() is True
    stopped = broker.status()
    assert not stopped.running and stopped.pid is None
    assert not broker.pid_path.exists()
    with pytest.raises(OSError):
        socket.create_connection((HOST, broker.port), timeout=2).close()
    assert broker.down() is False  # nothing left to stop

    started = time.monotonic()
    after = broker.up()
    print(f"broker restart to ready: {time.monotonic() - started:.2f}s")
    assert after.running and after.pid != before.pid
    assert asyncio.run(_consume(broker.bootstrap, topic, 1)) == [b"survives restart"]


def test_stale_pid_files_are_removed(broker: LocalBroker, squatter: subprocess.Popen[bytes]) -> None:
    broker.up()
    broker.down()

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=30)
    broker.pid_path.write_text(f"{finished.pid}\n")  # dead pid
    status = broker.status()
    assert not status.running and status.pid is None
    assert not broker.pid_path.exists()

    broker.pid_path.write_text(f"{squatter.pid}\n")  # pid reused by another program
    assert not broker.status().running
    assert not broker.pid_path.exists()

    broker.pid_path.write_text(f"{squatter.pid}\n")
    assert broker.down() is False
    status = broker.up()
    assert status.running and status.pid != squatter.pid
    assert squatter.poll() is None, "the unrelated process must not be signalled"


def test_cli_status_prints_bootstrap_pid_and_log(broker: LocalBroker, capsys: pytest.CaptureFixture[str]) -> None:
    pid = broker.up().pid
    argv = ["--port", str(broker.port), "--controller-port", str(broker.controller_port)]
    argv += ["--state-root", str(broker.state_dir.parent)]
    assert local_broker.main(["status", *argv]) == 0
    out = capsys.readouterr().out
    assert f"bootstrap: {broker.bootstrap}" in out
    assert f"pid:       {pid}" in out
    assert str(broker.log_path) in out


# --------------------------------------------------------------------------- failures


def test_port_taken_by_another_program_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind((HOST, 0))
        other.listen()
        port = int(other.getsockname()[1])
        candidate = LocalBroker(port, controller_port=free_port(), state_root=tmp_path)
        with pytest.raises(BrokerSetupError, match="already in use") as info:
            candidate.up(timeout=30)
    assert f"pid {os.getpid()}" in str(info.value)
    assert not candidate.status().running


def test_broker_exiting_at_start_reports_log_tail(tmp_path: Path) -> None:
    candidate = LocalBroker(free_port(), controller_port=free_port(), state_root=tmp_path, heap="not-a-size")
    try:
        with pytest.raises(BrokerSetupError) as info:
            candidate.up(timeout=60)
    finally:
        candidate.down()
    message = str(info.value)
    assert "did not come up" in message
    assert str(candidate.log_path) in message
    assert "Invalid maximum heap size" in message  # the JVM's own words, quoted from broker.log
    assert not candidate.status().running


def test_missing_java_is_reported_with_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerSetupError, match=r"java not found.*openjdk-17"):
        ensure_java_and_maven()
    candidate = LocalBroker(free_port(), cache_dir=tmp_path / "cache", state_root=tmp_path / "state")
    with pytest.raises(BrokerSetupError, match="java not found"):
        candidate.up(timeout=5)
    assert not (tmp_path / "cache").exists(), "nothing is fetched without java"


def test_old_java_and_missing_maven_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_java = shutil.which("java")
    assert real_java, "these tests need java on PATH"
    monkeypatch.delenv("JAVA_HOME", raising=False)
    old = tmp_path / "old-bin"
    old.mkdir()
    (old / "java").write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    (old / "java").chmod(0o755)
    monkeypatch.setenv("PATH", str(old))
    with pytest.raises(BrokerSetupError, match=r"Java 11.*needs Java 17"):
        ensure_java_and_maven()

    only_java = tmp_path / "java-only-bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(real_java)
    monkeypatch.setenv("PATH", str(only_java))
    ensure_java_and_maven(maven=False)
    with pytest.raises(BrokerSetupError, match=r"mvn not found.*maven"):
        ensure_java_and_maven()


def test_cli_reports_setup_error_with_nonzero_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    code = local_broker.main(["up", "--port", str(free_port()), "--state-root", str(tmp_path / "state")])
    assert code != 0
    assert "java not found" in capsys.readouterr().err


def test_interrupted_or_failed_fetch_never_counts_as_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "mvn-calls.txt"
    _make_fake_mvn(tmp_path / "fake-bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'fake-bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MVN_CALLS", str(calls))
    candidate = LocalBroker(free_port(), cache_dir=tmp_path / "cache", state_root=tmp_path / "state")

    monkeypatch.setenv("FAKE_MVN_MODE", "fail")
    with pytest.raises(BrokerSetupError, match="simulated transfer failure"):
        candidate.fetch()
    assert not candidate.jars_ready()
    assert not candidate.lib_dir.exists()
    assert not list(candidate.kafka_home.glob("lib.partial-*"))

    # What a killed fetch leaves behind: a partial dir and even a populated lib/ without the marker.
    (candidate.kafka_home / "lib.partial-999999").mkdir()
    candidate.lib_dir.mkdir()
    (candidate.lib_dir / f"kafka_2.13-{KAFKA_VERSION}.jar").touch()
    assert not candidate.jars_ready()

    monkeypatch.setenv("FAKE_MVN_MODE", "ok")
    assert candidate.fetch() == candidate.lib_dir
    assert candidate.jars_ready()
    assert (candidate.lib_dir / "some-dependency-1.0.jar").is_file()
    assert not list(candidate.kafka_home.glob("lib.partial-*"))
    assert "<artifactId>kafka_2.13</artifactId>" in (candidate.kafka_home / "pom.xml").read_text()

    monkeypatch.setenv("FAKE_MVN_MODE", "fail")
    candidate.fetch()  # complete: Maven is not run again
    assert calls.read_text().split() == ["fail", "ok"]


def test_wait_until_ready_times_out_on_a_closed_port() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerSetupError, match="not ready after"):
        wait_until_ready(HOST, free_port(), timeout=0.5)
    assert time.monotonic() - started < 5


def test_wait_until_ready_rejects_a_peer_that_is_not_kafka() -> None:
    stop = threading.Event()
    with socket.socket() as server:
        server.bind((HOST, 0))
        server.listen()
        server.settimeout(0.05)
        port = int(server.getsockname()[1])

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with pytest.raises(BrokerSetupError, match="did not answer like a Kafka broker"):
                wait_until_ready(HOST, port, timeout=1.0)
        finally:
            stop.set()
            thread.join(timeout=5)
