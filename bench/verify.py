"""Watch an output tree until every corpus file is there with the right SHA-512.

A file is hashed once it has its full size and, on filesystems that report allocation, no
holes (a consumer writing chunks at their offsets leaves holes until the last one lands), so a
file is usually read once. A mismatching file is retried after it changes, or after a pause.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from .corpus import Corpus

__all__ = ["VerificationError", "Verifier"]

_RETRY_AFTER = 2.0


class VerificationError(RuntimeError):
    """Files missing, corrupt or unexpected in an output tree, or a consumer that died."""


class Verifier:
    """Tracks which corpus files have been verified under ``output`` and when."""

    def __init__(self, corpus: Corpus, output: Path) -> None:
        self.corpus = corpus
        self.output = output
        self.pending: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)  # dir -> name -> (size, hex)
        for relpath, spec in corpus.files.items():
            parent, _, name = relpath.rpartition("/")
            self.pending[parent][name] = spec
        self.remaining = corpus.n_files
        self.last_verified = 0.0
        self.hashed_bytes = 0
        self.mismatches = 0
        self._full_since: dict[str, float] = {}
        self._failed: dict[str, tuple[int, float]] = {}  # relpath -> (mtime_ns, when)

    def poll(self) -> int:
        """Check what is present now; return how many files remain unverified."""
        for parent in list(self.pending):
            names = self.pending[parent]
            try:
                entries = list(os.scandir(self.output / parent if parent else self.output))
            except FileNotFoundError:
                continue
            for entry in entries:
                spec = names.get(entry.name)
                if spec is not None and self._check(parent, entry, spec):
                    del names[entry.name]
                    self.remaining -= 1
            if not names:
                del self.pending[parent]
        return self.remaining

    def _check(self, parent: str, entry: os.DirEntry[str], spec: tuple[int, str]) -> bool:
        size, expected = spec
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return False
        if st.st_size != size:
            return False
        relpath = f"{parent}/{entry.name}" if parent else entry.name
        now = time.monotonic()
        full_since = self._full_since.setdefault(relpath, now)
        if st.st_blocks * 512 < size and now - full_since < _RETRY_AFTER:
            return False  # holes: chunks still missing
        failed = self._failed.get(relpath)
        if failed is not None and failed[0] == st.st_mtime_ns and now - failed[1] < _RETRY_AFTER:
            return False
        with open(entry.path, "rb") as f:
            digest = hashlib.file_digest(f, "sha512").hexdigest()
        self.hashed_bytes += size
        if digest != expected:
            self.mismatches += 1
            self._failed[relpath] = (st.st_mtime_ns, time.monotonic())
            return False
        self.last_verified = time.monotonic()
        return True

    def wait(self, timeout: float, healthy: Callable[[], None], interval: float = 0.1) -> float:
        """Poll until every file is verified; return the monotonic time the last one was.

        ``healthy`` raises if a process under test has failed; a timeout raises
        VerificationError naming what is missing.
        """
        deadline = time.monotonic() + timeout
        while self.poll():
            healthy()
            if time.monotonic() > deadline:
                missing = [f"{d}/{n}".lstrip("/") for d, names in self.pending.items() for n in names]
                raise VerificationError(f"{self.remaining} of {self.corpus.n_files} files not verified after "
                                        f"{timeout:.0f} s (e.g. {sorted(missing)[:5]}); {self.mismatches} "
                                        f"hash mismatches seen")
            time.sleep(interval)
        return self.last_verified

    def unexpected(self) -> list[str]:
        """Files in the output tree that are not in the corpus (after everything arrived)."""
        found = []
        for dirpath, _, filenames in os.walk(self.output):
            for name in filenames:
                if name.startswith(".") and name.endswith(".filestream-tmp"):
                    continue  # filestream's temporary name while placing a file (a redelivery may leave one briefly)
                rel = Path(dirpath, name).relative_to(self.output).as_posix()
                if rel not in self.corpus.files:
                    found.append(rel)
        return sorted(found)
