"""Deterministic benchmark corpora: file trees generated from a seed, with their SHA-512 digests.

Three shapes (sizes at ``scale`` 1; ``scale`` N divides the byte totals, the number of small
files and the largest mixed file by N):

- ``large``: 1 GiB as 8 files of 128 MiB;
- ``small``: 5,000 files of 16 KiB;
- ``mixed``: 1 GiB of files with log-uniform sizes from 1 KiB to 64 MiB, in subdirectories.

File contents are pseudo-random (incompressible), so no system gains from compression.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CORPORA", "Corpus", "CorpusSpec", "generate", "plan"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
_WRITE_BLOCK = 1 * MIB


@dataclass(frozen=True)
class CorpusSpec:
    """The shape of one corpus at scale 1."""

    name: str
    description: str


CORPORA: dict[str, CorpusSpec] = {
    "large": CorpusSpec("large", "8 files of 128 MiB (1 GiB)"),
    "small": CorpusSpec("small", "5,000 files of 16 KiB"),
    "mixed": CorpusSpec("mixed", "1 GiB, log-uniform sizes 1 KiB-64 MiB, in subdirectories"),
}


@dataclass(frozen=True)
class Corpus:
    """A generated corpus: its root directory and ``{relative posix path: (size, sha512 hex)}``."""

    name: str
    root: Path
    files: dict[str, tuple[int, str]]

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    @property
    def n_files(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"{self.name}: {self.n_files} files, {self.total_bytes / MIB:.1f} MiB"

    def subset(self, n_files: int, root: Path) -> Corpus:
        """The first ``n_files`` files (in path order) as hard links under ``root``: no bytes copied."""
        chosen = sorted(self.files)[:n_files]
        for relpath in chosen:
            target = root / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(self.root / relpath, target)
        return Corpus(self.name, root, {relpath: self.files[relpath] for relpath in chosen})


def plan(name: str, seed: int, scale: int = 1) -> list[tuple[str, int]]:
    """The ``(relative path, size)`` list of a corpus; the same for the same arguments."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    rng = random.Random(f"{seed}:{name}:plan")
    if name == "large":
        return [(f"large-{i:02d}.bin", 128 * MIB // scale) for i in range(8)]
    if name == "small":
        return [(f"small-{i:05d}.bin", 16 * KIB) for i in range(max(1, 5000 // scale))]
    if name == "mixed":
        return _mixed_plan(rng, total=GIB // scale, lo=KIB, hi=max(2 * KIB, 64 * MIB // scale))
    raise ValueError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")


def _mixed_plan(rng: random.Random, total: int, lo: int, hi: int) -> list[tuple[str, int]]:
    """Log-uniform sizes in [lo, hi] until ``total`` bytes; the last file is trimmed to hit it."""
    files: list[tuple[str, int]] = []
    used = 0
    while used < total:
        size = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        size = min(size, total - used)
        if size < lo and files:  # fold a tiny remainder into the previous file
            path, prev = files[-1]
            files[-1] = (path, prev + size)
            break
        depth = rng.randint(1, 3)
        parts = [f"{'dhk'[level]}{rng.randrange(4)}" for level in range(depth)]
        files.append(("/".join([*parts, f"m-{len(files):04d}.dat"]), size))
        used += size
    return files


def generate(name: str, root: Path, seed: int, scale: int = 1) -> Corpus:
    """Write corpus ``name`` under ``root`` (created, must be empty) and return it with digests."""
    root.mkdir(parents=True, exist_ok=False)
    rng = random.Random(f"{seed}:{name}:data")
    files: dict[str, tuple[int, str]] = {}
    for relpath, size in plan(name, seed, scale):
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha512()
        with open(path, "wb") as f:
            left = size
            while left:
                block = rng.randbytes(min(left, _WRITE_BLOCK))
                digest.update(block)
                f.write(block)
                left -= len(block)
        files[relpath] = (size, digest.hexdigest())
    return Corpus(name, root, files)
