"""Fetch, format, start, check and stop a single-node Apache Kafka 4.x broker.

The broker runs in KRaft mode (combined broker + controller) on 127.0.0.1 and
needs only Java 17+ and Maven: the jars come from Maven Central through
``mvn dependency:copy-dependencies`` and are cached under the cache directory.

Layout (``<cache>`` is ``$FILESTREAM_CACHE_DIR`` or ``~/.cache/filestream``)::

    <cache>/kafka-<version>/pom.xml        tiny pom naming the broker jars
    <cache>/kafka-<version>/lib/           every jar (complete once lib.complete exists)
    <state_root>/<port>/                   per-port state, state_root defaults to <cache>/brokers
        server.properties  log4j2.properties  broker.pid  broker.log  data/

Stdlib only, so tests and CLIs can import it cheaply.  Usage::

    python -m app.local_broker up|down|status|wipe [--port N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "BrokerSetupError",
    "BrokerStatus",
    "LocalBroker",
    "default_cache_dir",
    "ensure_java_and_maven",
    "find_java",
    "find_maven",
    "main",
    "probe_broker",
    "wait_until_ready",
]

KAFKA_VERSION = "4.1.1"
"""Version of ``org.apache.kafka:kafka_2.13`` fetched from Maven Central."""

LOG4J_VERSION = "2.24.3"
"""log4j2 version pinned for the slf4j 1.7 binding (Kafka 4.x logs through slf4j 1.7)."""

MIN_JAVA_MAJOR = 17
INSTALL_HINT = "apt-get install openjdk-17-jre-headless maven"
HOST = "127.0.0.1"

_log = logging.getLogger(__name__)

_LOG_ROTATE_BYTES = 32 * 1024 * 1024
_COMPLETE_MARKER = "lib.complete"
_PROC = Path("/proc")
# Popen objects of brokers started by this process, kept so they are reaped
# (no zombies) and never garbage-collected while the broker still runs.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerSetupError(RuntimeError):
    """Java/Maven missing or too old, fetch failed, broker did not come up.

    The message says what to install or do, and where the broker log is.
    """


@dataclass(frozen=True)
class BrokerStatus:
    """Snapshot of one local broker: is its process alive, and where its files are."""

    running: bool
    pid: int | None
    bootstrap: str
    log_path: Path
    state_dir: Path


# --------------------------------------------------------------------------- #
# Java and Maven
# --------------------------------------------------------------------------- #


def default_cache_dir() -> Path:
    """Return ``$FILESTREAM_CACHE_DIR`` or ``~/.cache/filestream``."""
    env = os.environ.get("FILESTREAM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "filestream"


def find_java() -> str | None:
    """Return the java executable: ``$JAVA_HOME/bin/java`` if set and present, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def find_maven() -> str | None:
    """Return the ``mvn`` executable on PATH, or None."""
    return shutil.which("mvn")


def _java_info(java: str) -> tuple[int, str]:
    """Run ``java -version``; return the major version (8 for 1.8) and the full output."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerSetupError(
            f"cannot run {java} -version ({exc}); install Java {MIN_JAVA_MAJOR}+: {INSTALL_HINT}"
        ) from exc
    out = proc.stderr + proc.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if proc.returncode != 0 or not match:
        raise BrokerSetupError(
            f"{java} -version failed (exit {proc.returncode}): {out.strip()[:300]!r}; "
            f"install Java {MIN_JAVA_MAJOR}+: {INSTALL_HINT}"
        )
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major, out.strip()


def _require_java() -> tuple[str, str]:
    """Return a java 17+ executable and its ``-version`` text, or raise BrokerSetupError."""
    java = find_java()
    if java is None:
        raise BrokerSetupError(
            f"java not found (no $JAVA_HOME/bin/java, none on PATH); Apache Kafka 4.x needs "
            f"Java {MIN_JAVA_MAJOR}+: {INSTALL_HINT}"
        )
    major, version_text = _java_info(java)
    if major < MIN_JAVA_MAJOR:
        raise BrokerSetupError(
            f"{java} is Java {major}, Apache Kafka 4.x needs Java {MIN_JAVA_MAJOR}+: "
            f"{INSTALL_HINT} (or point JAVA_HOME at a newer JDK)"
        )
    return java, version_text


def _require_maven() -> str:
    """Return the mvn executable or raise BrokerSetupError."""
    mvn = find_maven()
    if mvn is None:
        raise BrokerSetupError(f"mvn not found on PATH; it is needed once to fetch the Kafka jars: {INSTALL_HINT}")
    return mvn


def ensure_java_and_maven(*, maven: bool = True) -> None:
    """Raise BrokerSetupError (saying what to install) unless Java 17+ and, if asked, Maven exist."""
    _require_java()
    if maven:
        _require_maven()


# --------------------------------------------------------------------------- #
# Minimal Kafka wire protocol: ApiVersions + Metadata
# --------------------------------------------------------------------------- #

_API_METADATA = 3
_API_VERSIONS = 18
_UNSUPPORTED_VERSION = 35
_MAX_RESPONSE = 64 * 1024 * 1024


class _ProtocolError(Exception):
    """The peer did not answer like a Kafka broker."""


class _Reader:
    """Cursor over a response body with Kafka primitive decoders."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _ProtocolError("truncated response")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise _ProtocolError("varint too long")

    def string(self, *, compact: bool) -> str | None:
        size = self.uvarint() - 1 if compact else self.int16()
        return None if size < 0 else self.take(size).decode("utf-8", "replace")

    def array_len(self, *, compact: bool) -> int:
        return self.uvarint() - 1 if compact else self.int32()

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _compact_str(text: str) -> bytes:
    raw = text.encode()
    return _uvarint(len(raw) + 1) + raw


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _ProtocolError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _roundtrip(
    sock: socket.socket, api_key: int, version: int, corr: int, body: bytes, *, flexible_req: bool
) -> _Reader:
    """Send one request (header v1, or v2 if flexible) and return a reader past the correlation id."""
    client_id = b"filestream-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    if flexible_req:
        header += b"\x00"
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 4 <= size <= _MAX_RESPONSE:
        raise _ProtocolError(f"implausible response size {size}")
    reader = _Reader(_recv_exact(sock, size))
    if reader.int32() != corr:
        raise _ProtocolError("correlation id mismatch")
    return reader


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    """ApiVersions v3 (falling back to v0); return {api_key: (min, max)}."""
    body = _compact_str("filestream") + _compact_str("1") + b"\x00"
    reader = _roundtrip(sock, _API_VERSIONS, 3, 1, body, flexible_req=True)
    # ApiVersions responses always use header v0 (no tagged fields), even for v3.
    error = reader.int16()
    compact = True
    if error == _UNSUPPORTED_VERSION:
        reader = _roundtrip(sock, _API_VERSIONS, 0, 2, b"", flexible_req=False)
        error = reader.int16()
        compact = False
    if error != 0:
        raise _ProtocolError(f"ApiVersions error code {error}")
    apis: dict[int, tuple[int, int]] = {}
    for _ in range(reader.array_len(compact=compact)):
        key, lo, hi = reader.int16(), reader.int16(), reader.int16()
        if compact:
            reader.skip_tags()
        apis[key] = (lo, hi)
    return apis


def _metadata_brokers(sock: socket.socket, lo: int, hi: int) -> list[tuple[int, str, int]]:
    """Metadata (no topics) at the best version in [1, 12]; return [(node_id, host, port)]."""
    version = min(hi, 12)
    if version < max(lo, 1):
        raise _ProtocolError(f"broker Metadata versions {lo}..{hi} not supported by this probe")
    flexible = version >= 9
    body = _uvarint(1) if flexible else struct.pack(">i", 0)  # empty topic list
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation
    if 8 <= version <= 10:
        body += b"\x00"  # include_cluster_authorized_operations
    if version >= 8:
        body += b"\x00"  # include_topic_authorized_operations
    if flexible:
        body += b"\x00"
    reader = _roundtrip(sock, _API_METADATA, version, 3, body, flexible_req=flexible)
    if flexible:
        reader.skip_tags()  # response header v1
    if version >= 3:
        reader.int32()  # throttle_time_ms
    brokers = []
    for _ in range(reader.array_len(compact=flexible)):
        node_id = reader.int32()
        host = reader.string(compact=flexible) or ""
        port = reader.int32()
        reader.string(compact=flexible)  # rack
        if flexible:
            reader.skip_tags()
        brokers.append((node_id, host, port))
    return brokers


def probe_broker(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Send ApiVersions then Metadata to host:port; return the listed brokers as (id, host, port).

    Raises OSError on connection problems and ValueError if the peer does not speak Kafka.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        try:
            apis = _api_versions(sock)
            if _API_METADATA not in apis:
                raise _ProtocolError("broker does not advertise the Metadata API")
            return _metadata_brokers(sock, *apis[_API_METADATA])
        except (_ProtocolError, struct.error) as exc:
            raise ValueError(f"{host}:{port} did not answer like a Kafka broker: {exc}") from exc


def wait_until_ready(
    host: str,
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
) -> list[tuple[int, str, int]]:
    """Poll host:port (short backoff, <= 0.2 s) until Metadata lists a broker; return the brokers.

    ``alive`` is checked between attempts; if it returns False the wait stops early.
    Raises BrokerSetupError on timeout or when ``alive()`` turns False.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    last = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        try:
            brokers = probe_broker(host, port, timeout=max(0.1, min(2.0, remaining)))
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if brokers:
                return brokers
            last = "Metadata response listed no brokers yet"
        if alive is not None and not alive():
            raise BrokerSetupError(f"broker process exited before {host}:{port} was ready ({last})")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerSetupError(f"{host}:{port} not ready after {timeout:.0f}s (last attempt: {last})")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.2)


# --------------------------------------------------------------------------- #
# Processes
# --------------------------------------------------------------------------- #


def _cmdline(pid: int) -> list[str] | None:
    """Return the argv of pid, or None if it is gone, a zombie, or unreadable."""
    if _PROC.is_dir():
        try:
            raw = (_PROC / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
    try:  # non-Linux fallback
        out = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return None
    return out.split() or None


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (reaping our own dead children)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"]):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _listening_pids(port: int) -> list[int]:
    """Best effort (Linux): pids holding a listening TCP socket on port."""
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        with contextlib.suppress(OSError):
            for line in (_PROC / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return []
    pids = []
    for proc in _PROC.iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.append(int(proc.name))
                    break
    return pids


def _port_free(port: int) -> bool:
    """True if 127.0.0.1:port can be bound (as the JVM would, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (serialises fetches and starts across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    """Return the last lines of a text file ('' if missing)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _announce(message: str) -> None:
    """Log message at INFO; also print it to stderr when logging is not configured."""
    _log.info(message)
    if not _log.hasHandlers():
        print(message, file=sys.stderr, flush=True)


def _random_cluster_id() -> str:
    """A Kafka cluster id: random UUID as 22-char base64url (Kafka avoids a leading '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _prop(value: object) -> str:
    """Escape a value for a Java .properties file."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n")


_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by app/local_broker.py: the jars of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.filestream</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <!-- Kafka logs through slf4j 1.7 and ships log4j2 without a binding in its pom. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

# Console only, so everything lands in broker.log.  Per-partition and config-dump
# loggers go to WARN: they repeat for each of dozens of internal partitions.
_LOG4J2 = """# Written by app/local_broker.py
status = warn
shutdownHook = disable
name = filestream-local-broker
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:filestream.log.level:-INFO}
rootLogger.appenderRef.stdout.ref = STDOUT
"""
_QUIET_LOGGERS = (
    "org.apache.kafka.common.config.AbstractConfig",
    "org.apache.kafka.common.utils.AppInfoParser",
    "org.apache.kafka.storage.internals.log",
    "org.apache.kafka.coordinator",
    "org.apache.kafka.image.loader",
    "org.apache.kafka.metadata.publisher",
    "org.apache.kafka.server.share",
    "kafka.log",
    "kafka.cluster.Partition",
    "kafka.server.ReplicaFetcherManager",
    "kafka.server.ClientQuotaManager$ThrottledChannelReaper",
    "kafka.server.KafkaRequestHandlerPool",
    "kafka.server.NodeToControllerRequestThread",
    "kafka.server.NodeToControllerChannelManagerImpl",
    "org.apache.kafka.server.purgatory",
    "org.apache.kafka.server.util.timer",
    "org.apache.kafka.queue.KafkaEventQueue",
    "kafka.server.ReplicaAlterLogDirsManager",
    "kafka.coordinator",
    "state.change.logger",
)

# TieredStopAtLevel=1 (C1 only) starts the broker ~0.6 s faster and measured no slower
# at 1 MiB messages: the broker mostly copies bytes, and no C2 threads compete for 2 cores.
_BASE_JVM_FLAGS = (
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


# --------------------------------------------------------------------------- #
# The broker
# --------------------------------------------------------------------------- #


class LocalBroker:
    """One single-node KRaft Kafka broker on 127.0.0.1:port, with state under ``state_root/port``.

    ``cache_dir`` holds the jars (shared by every port); ``state_root`` (default
    ``cache_dir/brokers``) holds the per-port state, so tests can keep state in a
    tmp dir while reusing the jar download.  With ``cds`` the first broker run dumps
    an AppCDS class archive at exit (kept in the jar cache once it validates), which
    roughly halves later JVM start times.
    """

    def __init__(
        self,
        port: int = 9092,
        *,
        controller_port: int | None = None,
        cache_dir: Path | None = None,
        state_root: Path | None = None,
        kafka_version: str = KAFKA_VERSION,
        heap: str = "512m",
        message_max_bytes: int = 16 * 1024 * 1024,
        extra_properties: dict[str, str] | None = None,
        extra_jvm_flags: Sequence[str] = (),
        cds: bool = True,
    ) -> None:
        self.port = port
        self.controller_port = port + 1 if controller_port is None else controller_port
        if self.controller_port == self.port:
            raise ValueError("controller_port must differ from port")
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.cache_dir = cache.absolute()
        root = Path(state_root).expanduser().absolute() if state_root else self.cache_dir / "brokers"
        self.state_dir = root / str(port)
        self.kafka_version = kafka_version
        self.heap = heap
        self.message_max_bytes = message_max_bytes
        self.extra_properties = dict(extra_properties or {})
        self.extra_jvm_flags = list(extra_jvm_flags)
        self.cds = cds

    # ---- paths ------------------------------------------------------------ #

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for Kafka clients."""
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """broker.log: JVM stdout+stderr and log4j console output, appended."""
        return self.state_dir / "broker.log"

    @property
    def kafka_home(self) -> Path:
        """``<cache>/kafka-<version>``: pom.xml and lib/."""
        return self.cache_dir / f"kafka-{self.kafka_version}"

    @property
    def lib_dir(self) -> Path:
        """Directory holding every broker jar."""
        return self.kafka_home / "lib"

    @property
    def pid_path(self) -> Path:
        """broker.pid of this port's broker."""
        return self.state_dir / "broker.pid"

    @property
    def properties_path(self) -> Path:
        """server.properties of this port's broker."""
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        """log.dirs (and KRaft metadata log) of this broker."""
        return self.state_dir / "data"

    # ---- jars ------------------------------------------------------------- #

    def jars_ready(self) -> bool:
        """True if a completed fetch left every jar in lib/."""
        return (self.kafka_home / _COMPLETE_MARKER).is_file() and (
            self.lib_dir / f"kafka_2.13-{self.kafka_version}.jar"
        ).is_file()

    def fetch(self) -> Path:
        """Fetch the jars with Maven once (skipped if already complete); return lib/."""
        if self.jars_ready():
            return self.lib_dir
        home = self.kafka_home
        with _locked(home / ".fetch.lock"):
            if self.jars_ready():
                return self.lib_dir
            mvn = _require_maven()
            (home / _COMPLETE_MARKER).unlink(missing_ok=True)
            for stale in home.glob("lib.partial-*"):
                shutil.rmtree(stale, ignore_errors=True)
            (home / "pom.xml").write_text(_POM.format(kafka=self.kafka_version, log4j=LOG4J_VERSION))
            partial = home / f"lib.partial-{os.getpid()}"
            _announce(
                f"local_broker: fetching Apache Kafka {self.kafka_version} jars from Maven Central "
                f"into {self.lib_dir} (first time only)..."
            )
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    [
                        mvn,
                        "-q",
                        "-B",
                        "-Dstyle.color=never",
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={partial}",
                        "-DincludeScope=runtime",
                    ],
                    cwd=home,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    check=False,
                )
            except BaseException as exc:
                shutil.rmtree(partial, ignore_errors=True)
                if isinstance(exc, (OSError, subprocess.TimeoutExpired)):
                    raise BrokerSetupError(f"running {mvn} failed: {exc}") from exc
                raise
            main_jar = partial / f"kafka_2.13-{self.kafka_version}.jar"
            if proc.returncode != 0 or not main_jar.is_file():
                shutil.rmtree(partial, ignore_errors=True)
                output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
                raise BrokerSetupError(
                    f"fetching org.apache.kafka:kafka_2.13:{self.kafka_version} with Maven failed "
                    f"(exit {proc.returncode}) in {home}; check that Maven Central is reachable "
                    f"(proxy/mirror in ~/.m2/settings.xml) and the version exists:\n{output}"
                )
            if self.lib_dir.exists():
                shutil.rmtree(self.lib_dir)
            partial.rename(self.lib_dir)
            jars = sorted(p.name for p in self.lib_dir.glob("*.jar"))
            tmp_marker = home / f"{_COMPLETE_MARKER}.tmp"
            tmp_marker.write_text(json.dumps({"kafka": self.kafka_version, "jars": jars}, indent=1))
            tmp_marker.replace(home / _COMPLETE_MARKER)
            _announce(f"local_broker: fetched {len(jars)} jars in {time.monotonic() - started:.1f}s")
        return self.lib_dir

    # ---- configuration ------------------------------------------------------ #

    def server_properties(self) -> dict[str, str]:
        """The broker configuration written to server.properties."""
        mmb = self.message_max_bytes
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.data_dir,
            "num.partitions": 1,
            "default.replication.factor": 1,
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.num.partitions": 4,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "message.max.bytes": mmb,
            "replica.fetch.max.bytes": mmb,
            "replica.fetch.response.max.bytes": max(10 * 1024 * 1024, mmb),
            "fetch.max.bytes": max(55 * 1024 * 1024, mmb),
            "socket.request.max.bytes": max(100 * 1024 * 1024, mmb + 1024 * 1024),
            "log.retention.hours": 168,
            "log.segment.bytes": 256 * 1024 * 1024,
            "num.network.threads": 2,
            "num.io.threads": 2,
        }
        props.update(self.extra_properties)
        return {key: str(value) for key, value in props.items()}

    def jvm_flags(self) -> list[str]:
        """JVM options for the broker (heap, GC, log4j2 config)."""
        return [
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            *_BASE_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            *self.extra_jvm_flags,
        ]

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        text = "# Written by app/local_broker.py on every start; edits are overwritten.\n"
        text += "".join(f"{k}={_prop(v)}\n" for k, v in self.server_properties().items())
        self.properties_path.write_text(text)
        log4j = _LOG4J2 + "".join(
            f"logger.q{i}.name = {name}\nlogger.q{i}.level = WARN\n" for i, name in enumerate(_QUIET_LOGGERS)
        )
        (self.state_dir / "log4j2.properties").write_text(log4j)

    def _format_storage(self, java: str, lib: Path, cds_archive: Path | None) -> None:
        """Format KRaft storage in data/ unless already formatted."""
        if (self.data_dir / "meta.properties").is_file():
            return
        if self.data_dir.exists():  # a format that never finished: nothing worth keeping
            shutil.rmtree(self.data_dir)
        cmd = [
            java,
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            *([f"-XX:SharedArchiveFile={cds_archive}"] if cds_archive else []),
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            "-Dfilestream.log.level=WARN",
            "-cp",
            f"{lib}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(self.properties_path),
        ]
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%F %T')} formatting {self.data_dir}\n".encode())
            log.flush()
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if proc.returncode != 0 or not (self.data_dir / "meta.properties").is_file():
            raise BrokerSetupError(
                f"formatting KRaft storage failed (exit {proc.returncode}); log {self.log_path}:\n"
                f"{_tail(self.log_path)}"
            )

    # ---- class-data sharing --------------------------------------------------- #

    def _cds_archive(self, java: str, version_text: str, lib: Path) -> Path:
        """Where the AppCDS archive for this JVM build and exact jar set lives (may not exist)."""
        digest = hashlib.sha256(f"{os.path.realpath(java)}\0{version_text}".encode())
        for jar in sorted(lib.glob("*.jar")):
            st = jar.stat()
            digest.update(f"\0{jar.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return self.kafka_home / "cds" / f"{digest.hexdigest()[:16]}.jsa"

    def _cds_flags(self, archive: Path) -> list[str]:
        """Use the archive if it exists, else have this run dump one at exit (see _settle_cds)."""
        marker = self.state_dir / "cds.pending"
        with contextlib.suppress(OSError, ValueError, KeyError):  # leftover of a run not stopped by down()
            Path(json.loads(marker.read_text())["pending"]).unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}"]
        archive.parent.mkdir(parents=True, exist_ok=True)
        pending = archive.with_name(f"{archive.stem}.{uuid.uuid4().hex[:12]}.tmp")
        marker.write_text(json.dumps({"pending": str(pending), "archive": str(archive)}))
        return [f"-XX:ArchiveClassesAtExit={pending}", "-Xlog:cds*=off"]

    def _settle_cds(self, *, clean_exit: bool) -> None:
        """After the broker exited: keep the archive it dumped if it validates, else drop it.

        A truncated archive crashes the JVM at start (SIGBUS), so an archive is only kept
        after a clean exit and a successful ``-Xshare:on`` trial run.
        """
        marker = self.state_dir / "cds.pending"
        try:
            info = json.loads(marker.read_text())
            pending, archive = Path(info["pending"]), Path(info["archive"])
        except (OSError, ValueError, KeyError):
            return
        marker.unlink(missing_ok=True)
        java = find_java()
        if not clean_exit or java is None or not pending.is_file():
            pending.unlink(missing_ok=True)
            return
        try:
            trial = subprocess.run(
                [
                    java,
                    "-Xshare:on",
                    f"-XX:SharedArchiveFile={pending}",
                    "-XX:+UseG1GC",
                    "-XX:TieredStopAtLevel=1",
                    "-XX:ErrorFile=/dev/null",
                    "-cp",
                    f"{self.lib_dir}/*",
                    "kafka.tools.StorageTool",
                    "random-uuid",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
            ok = trial.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            _log.info("discarding unusable CDS archive %s", pending)
            pending.unlink(missing_ok=True)
            return
        pending.replace(archive)
        for other in archive.parent.glob("*.jsa"):  # archives of older jar sets or JVMs
            if other != archive:
                other.unlink(missing_ok=True)
        _log.info("saved CDS archive %s for faster broker starts", archive)

    # ---- process control ---------------------------------------------------- #

    def _is_ours(self, pid: int) -> bool:
        """True if pid is a live kafka.Kafka JVM started with this state dir's server.properties."""
        if not _alive(pid):
            return False
        child = _CHILDREN.get(pid)
        if child is not None and isinstance(child.args, list):  # started by this process
            argv: list[str] | None = [str(arg) for arg in child.args]
        else:
            argv = _cmdline(pid)
        for _ in range(10):  # /proc/PID/cmdline reads empty for a moment while a JVM maps memory
            if argv is not None or not _alive(pid):
                break
            time.sleep(0.02)
            argv = _cmdline(pid)
        return argv is not None and "kafka.Kafka" in argv and str(self.properties_path) in argv

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _write_pid(self, pid: int) -> None:
        tmp = self.pid_path.with_name("broker.pid.tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_path)

    def _live_pid(self) -> int | None:
        """Pid of this state dir's running broker.

        A stale pid file (dead pid, or pid reused by another program) is removed; a broker
        of this state dir that lost its pid file is found again through its listening port.
        """
        pid = self._read_pid()
        if pid is not None and self._is_ours(pid):
            return pid
        if self.pid_path.exists():
            _log.info("removing stale pid file %s (pid %s)", self.pid_path, pid)
            self.pid_path.unlink(missing_ok=True)
        if self.state_dir.is_dir() and not _port_free(self.port):
            for holder in _listening_pids(self.port):
                if self._is_ours(holder):
                    self._write_pid(holder)
                    return holder
        return None

    def status(self) -> BrokerStatus:
        """Report whether this port's broker process is running (not whether it is ready)."""
        pid = self._live_pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.log_path, self.state_dir)

    def _fail(self, reason: str) -> BrokerSetupError:
        return BrokerSetupError(f"{reason}\nlast lines of {self.log_path}:\n{_tail(self.log_path)}")

    def _check_ports(self) -> None:
        for port, what in ((self.port, "broker"), (self.controller_port, "controller")):
            if _port_free(port):
                continue
            holders = []
            for pid in _listening_pids(port):
                argv = _cmdline(pid) or ["?"]
                if "kafka.Kafka" in argv[:-1]:  # name the other broker by its config file
                    holders.append(f"pid {pid}: Kafka broker of {argv[argv.index('kafka.Kafka') + 1]}")
                else:
                    holders.append(f"pid {pid}: {' '.join(argv)[:160]}")
            detail = "; ".join(holders) or "holder unknown"
            raise BrokerSetupError(
                f"{what} port {HOST}:{port} is already in use by another process ({detail}); "
                f"stop it or choose another port (state dir {self.state_dir})"
            )

    def up(self, timeout: float = 120.0) -> BrokerStatus:
        """Fetch, format and start the broker if needed; return once it answers Metadata.

        Idempotent: a running broker of this state dir is only waited for.  A broker this
        call started that is not ready within ``timeout`` is stopped again before raising.
        """
        java, version_text = _require_java()
        deadline = time.monotonic() + timeout
        lib = self.fetch()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.state_dir / ".lock"):
            pid = self._live_pid()
            started_here = pid is None
            if pid is None:
                archive = self._cds_archive(java, version_text, lib) if self.cds else None
                pid = self._start(java, lib, archive)
        try:
            wait_until_ready(
                HOST,
                self.port,
                max(1.0, deadline - time.monotonic()),
                alive=lambda: self._is_ours(pid),
            )
        except BrokerSetupError as exc:
            code = _CHILDREN[pid].returncode if pid in _CHILDREN else None
            suffix = f" (exit code {code})" if code is not None else ""
            error = self._fail(f"Kafka broker pid {pid} did not come up{suffix}: {exc}")
            if started_here:
                self.down(timeout=10.0)
            raise error from exc
        return self.status()

    def _start(self, java: str, lib: Path, cds_archive: Path | None) -> int:
        """Write config, format if needed, launch the JVM detached; return its pid."""
        self._check_ports()
        self._write_config()
        usable = cds_archive if cds_archive is not None and cds_archive.is_file() else None
        self._format_storage(java, lib, usable)
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_name("broker.log.1"))
        cds = self._cds_flags(cds_archive) if cds_archive is not None else []
        cmd = [java, *self.jvm_flags(), *cds, "-cp", f"{lib}/*", "kafka.Kafka", str(self.properties_path)]
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        self._write_pid(proc.pid)
        _log.info("started Kafka broker pid %d on %s (log %s)", proc.pid, self.bootstrap, self.log_path)
        return proc.pid

    def down(self, timeout: float = 30.0) -> bool:
        """Stop this port's broker (SIGTERM, then SIGKILL after timeout); True if one was running."""
        if not self.state_dir.is_dir():
            return False
        with _locked(self.state_dir / ".lock"):
            pid = self._live_pid()
            if pid is None:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            clean = self._wait_exit(pid, timeout)
            if not clean:
                _log.warning("broker pid %d ignored SIGTERM for %.0fs; sending SIGKILL", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
            self.pid_path.unlink(missing_ok=True)
            if pid in _CHILDREN and _CHILDREN[pid].returncode is not None:
                del _CHILDREN[pid]  # reaped; nothing left to track
            self._settle_cds(clean_exit=clean)
        return True

    @staticmethod
    def _wait_exit(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while _alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return True

    def wipe(self) -> None:
        """Stop the broker and delete this port's state dir (a fresh cluster on next up)."""
        self.down()
        shutil.rmtree(self.state_dir, ignore_errors=True)


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def _print_status(status: BrokerStatus) -> None:
    print(f"bootstrap: {status.bootstrap}")
    print(f"running:   {'yes' if status.running else 'no'}")
    print(f"pid:       {status.pid if status.pid is not None else '-'}")
    print(f"log:       {status.log_path}")
    print(f"state:     {status.state_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.local_broker up|down|status|wipe [--port N]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m app.local_broker", description="Local single-node Apache Kafka broker."
    )
    parser.add_argument("command", choices=("up", "down", "status", "wipe"))
    parser.add_argument("--port", type=int, default=9092, help="PLAINTEXT port (default 9092)")
    parser.add_argument("--controller-port", type=int, default=None, help="default: port+1")
    parser.add_argument("--cache-dir", type=Path, default=None, help="jar cache (default: $FILESTREAM_CACHE_DIR)")
    parser.add_argument("--state-root", type=Path, default=None, help="default: <cache-dir>/brokers")
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    broker = LocalBroker(
        args.port,
        controller_port=args.controller_port,
        cache_dir=args.cache_dir,
        state_root=args.state_root,
        heap=args.heap,
    )
    try:
        if args.command == "up":
            started = time.monotonic()
            status = broker.up(timeout=args.timeout)
            print(f"ready in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            print("stopped" if broker.down(timeout=min(args.timeout, 60.0)) else "not running")
            status = broker.status()
        elif args.command == "wipe":
            broker.wipe()
            print(f"wiped {broker.state_dir}")
            status = broker.status()
        else:
            status = broker.status()
    except BrokerSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_status(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
