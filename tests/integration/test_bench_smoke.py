"""Smoke test of the benchmark harness (``python -m bench``) on a tiny corpus against the session broker.

Every selected system moves the corpus once; the harness itself verifies each output file's SHA-512
(a failed verification is a run error and a non-zero exit), and this test checks that the report
and the JSON dump carry figures and verification counts for every system.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.systems import openmsistream_available

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_bench_smoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    systems = ["ceiling", "filestream"] + (["openmsistream"] if openmsistream_available() else [])
    out, dump = tmp_path / "RESULTS.md", tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--bootstrap", kafka_bootstrap, "--systems", ",".join(systems),
         "--corpora", "mixed,small", "--scale", "256", "--chunk-sizes", "65536", "--repeat", "1",
         "--timeout", "90", "--out", str(out), "--json", str(dump), "--tmp", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=220, check=False,
    )
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    data = json.loads(dump.read_text())
    assert data["errors"] == []
    runs = data["runs"]
    for system in systems:
        for corpus in ("mixed", "small"):
            (run,) = [r for r in runs if r["system"] == system and r["corpus"] == corpus]
            assert run["wall_s"] > 0 and run["mb_s"] > 0 and run["files_s"] > 0
            assert run["producer_cpu_s"] > 0 and run["consumer_peak_rss"] > 0
            if system == "ceiling":
                assert any("messages counted" in note for note in run["notes"])  # it counts, it does not verify
            else:  # every file was found on disk with the corpus's SHA-512
                assert run["verified_files"] == run["files"] > 1
                assert run["verified_bytes"] >= run["bytes"] > 0

    report = out.read_text()
    labels = {"ceiling": "ceiling (raw aiokafka)", "filestream": "filestream", "openmsistream": "OpenMSIStream 1.8.8"}
    for system in systems:
        assert f"| mixed | 64 KiB | {labels[system]} | 1 |" in report
    assert "### Targets" in report and "## Machine" in report and "## Notes" in report
    assert "PASS" in proc.stdout or "MISS" in proc.stdout
