"""Helpers for tests against the real local broker: worker processes, uploads, raw producing,
dead-letter reading and tree comparison. Every wait is bounded and says what it waited for."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[2]
FILESTREAM = Path(sys.executable).with_name("filestream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tree_digests(root: Path) -> dict[str, str]:
    """``{relative posix path: sha512 hex}`` of every file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha512(path.read_bytes()).hexdigest()
    return out


@dataclass
class WorkerProcess:
    """A ``filestream worker`` subprocess with its own data directory and web port."""

    name: str
    env: dict[str, str]
    workdir: Path
    datadir: Path
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        self.datadir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "FILESTREAM_DATADIR": str(self.datadir), "FILESTREAM_WEB_PORT": str(self.web_port)}
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([str(FILESTREAM), "worker", "-l", "info"], cwd=self.workdir, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1
        return self

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/filestream/status/", timeout=2) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_assigned(self, partitions: int | None = None, timeout: float = 90) -> dict[str, Any]:
        """Wait until the worker serves status with ``partitions`` active partitions (any if None)."""

        def ready() -> dict[str, Any] | None:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            st = self.status()
            # both topics: processors only see files of partitions assigned on the files topic too
            if (st and st["active_partitions"] and st["files_partitions"] == st["active_partitions"]
                    and (partitions is None or len(st["active_partitions"]) == partitions)):
                return st
            return None

        return wait_for(ready, timeout, f"worker {self.name} to be assigned partitions")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as in a crash."""
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def committed_offset(bootstrap: str, deployment: Deployment, partition: int = 0) -> int:
    """The worker group's committed offset of one chunk-topic partition (-1 if none)."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(deployment.env["FILESTREAM_APP_ID"])
        finally:
            await admin.close()
        meta = offsets.get(TopicPartition(deployment.chunk_topic, partition))
        return meta.offset if meta is not None else -1

    return asyncio.run(run())


def topic_end_offset(bootstrap: str, topic: str, partition: int = 0) -> int:
    """The next offset to be written in one partition of ``topic``."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            return (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _dead_letter(record: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": record.key, "value": record.value}
    entry.update({k.removeprefix("filestream."): v.decode() for k, v in record.headers})
    return entry


class Deployment:
    """One isolated filestream deployment on the shared test broker: its own app id, topics,
    output directory and workers."""

    def __init__(self, bootstrap: str, root: Path, *, partitions: int = 4, chunk_size: int = 64 * 1024,
                 **settings: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.root = root
        self.partitions = partitions
        self.output = root / "output"
        self.chunk_topic = f"t-{tag}.chunks"
        self.dead_letter_topic = f"t-{tag}.dead-letter"
        self.env = {
            **os.environ,
            "FILESTREAM_BROKER": bootstrap,
            "FILESTREAM_APP_ID": f"t-{tag}",
            "FILESTREAM_CHUNK_TOPIC": self.chunk_topic,
            "FILESTREAM_FILES_TOPIC": f"t-{tag}.files",
            "FILESTREAM_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "FILESTREAM_PARTITIONS": str(partitions),
            "FILESTREAM_CHUNK_SIZE": str(chunk_size),
            "FILESTREAM_OUTPUT_DIR": str(self.output),
            "FILESTREAM_SESSION_TIMEOUT": "6",
            "FILESTREAM_HEARTBEAT_INTERVAL": "1",
            "FILESTREAM_COMMIT_INTERVAL": "1",
            "PYTHONUNBUFFERED": "1",
            **{f"FILESTREAM_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str = "w1", datadir: Path | None = None) -> WorkerProcess:
        w = WorkerProcess(name, self.env, self.root, datadir or self.root / f"{name}-data")
        self.workers.append(w)
        return w

    @staticmethod
    def upload_command(*paths: Path) -> list[str]:
        return [str(FILESTREAM), "upload", *map(str, paths)]

    def upload(self, *paths: Path, args: Iterable[str] = (), timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``filestream upload`` and return the finished process (check returncode yourself)."""
        return subprocess.run([*self.upload_command(*paths), *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    def produce(self, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send raw ``(key, value)`` messages to the chunk topic, in order, acknowledged."""
        async def run() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                        max_request_size=4 * 1024 * 1024)
            await producer.start()
            try:
                for key, value in messages:
                    await producer.send(self.chunk_topic, value, key=key)
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(run())

    def dead_letters(self, expect: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Read at least ``expect`` dead letters: ``{"key", "value", headers...}`` each."""

        async def run() -> list[dict[str, Any]]:
            consumer = AIOKafkaConsumer(self.dead_letter_topic, bootstrap_servers=self.bootstrap,
                                        auto_offset_reset="earliest", enable_auto_commit=False)
            await consumer.start()
            found: list[dict[str, Any]] = []
            try:
                deadline = time.monotonic() + timeout
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    found.extend(_dead_letter(r) for records in batch.values() for r in records)
                    # once enough arrived, one more empty poll shows whether more are there
                    if (len(found) >= expect and not batch) or time.monotonic() > deadline:
                        break
            finally:
                await consumer.stop()
            return found

        found = asyncio.run(run())
        assert len(found) >= expect, f"expected at least {expect} dead letters, found {len(found)}: {found}"
        return found

    def wait_output(self, expected: dict[str, str], timeout: float = 180) -> dict[str, str]:
        """Wait until the output tree holds exactly ``expected`` (relpath -> sha512)."""
        last: dict[str, str] = {}

        def done() -> bool:
            nonlocal last
            for w in self.workers:
                if w.proc is not None and w.starts and not w.alive() and w.proc.returncode not in (0, -9):
                    raise AssertionError(f"worker {w.name} died ({w.proc.returncode}):\n{w.log_tail()}")
            last = tree_digests(self.output) if self.output.exists() else {}
            return last == expected

        try:
            wait_for(done, timeout, "the output tree to match the uploaded files", interval=0.5)
        except AssertionError:
            missing = sorted(set(expected) - set(last))
            wrong = sorted(k for k in expected if k in last and last[k] != expected[k])
            extra = sorted(set(last) - set(expected))
            logs = "\n".join(f"--- {w.name} status: {w.status()}\n{w.log_tail(60)}" for w in self.workers)
            raise AssertionError(f"output mismatch: {len(missing)} missing {missing[:10]}, {len(wrong)} corrupt "
                                 f"{wrong[:10]}, {len(extra)} unexpected {extra[:10]}\n{logs}") from None
        return last

    def stop_all(self) -> None:
        for w in self.workers:
            if w.alive():
                try:
                    w.terminate(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()
