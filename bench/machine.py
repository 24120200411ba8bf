"""What the benchmark ran on: CPU, memory, load, and the versions of everything involved."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["REPO", "describe_machine", "git_revision", "load_average"]

REPO = Path(__file__).resolve().parents[1]

_FILESTREAM_PACKAGES = ("filestream", "faust-streaming", "mode-streaming", "aiokafka", "msgpack")
_OMS_PACKAGES = ("openmsistream", "openmsitoolbox", "confluent-kafka", "msgpack")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _java() -> str:
    try:
        proc = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _oms_versions(python: Path) -> dict[str, str]:
    """Package versions inside the OpenMSIStream venv (and librdkafka's, through confluent_kafka)."""
    script = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        f"for n in {list(_OMS_PACKAGES)!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
        "try:\n"
        "    import confluent_kafka; out['librdkafka'] = confluent_kafka.libversion()[0]\n"
        "except Exception: pass\n"
        "print(json.dumps(out))\n"
    )
    try:
        proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return {"openmsistream": "not available"}
    return dict(json.loads(proc.stdout))


def git_revision(repo: Path) -> str:
    """Commit of the product code measured, and whether app/, agents/ or tables/ had local changes."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %ci %s"], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "app", "agents", "tables"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (+ uncommitted changes in app/, agents/ or tables/)" if dirty else "")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def describe_machine(kafka_version: str, oms_python: Path | None) -> dict[str, str]:
    """Facts for the results file, in display order."""
    facts = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": _memory(),
        "CPU model": _cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Java": _java(),
        "Kafka": kafka_version,
    }
    facts.update({f"{k} (.venv)": v for k, v in _versions(_FILESTREAM_PACKAGES).items()})
    if oms_python is not None and oms_python.exists():
        facts.update({f"{k} (.venv-openmsistream)": v for k, v in _oms_versions(oms_python).items()})
    return facts
