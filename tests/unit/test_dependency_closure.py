"""The runtime dependency closure is Rust-free (DEVELOPERS.md): checked on the installed packages."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

#: Well-known Rust-built packages, named so a failure says exactly what crept in.
KNOWN_RUST = {"orjson", "rocksdict", "cramjam", "pydantic-core", "cryptography", "rpds-py", "tiktoken",
              "tokenizers", "polars", "jiter", "watchfiles", "bcrypt", "maturin", "ruff", "uv"}
RUST_MARKERS = re.compile(rb"rust_panic|/rustc/[0-9a-f]{8}|RUST_BACKTRACE")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(root: str = "filestream") -> set[str]:
    """Distributions needed at run time: requirements without extras, recursively."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return seen


def test_closure_has_the_pinned_core() -> None:
    closure = runtime_closure()
    assert {"faust-streaming", "mode-streaming", "aiokafka", "msgpack", "click", "boto3"} <= closure
    assert metadata.version("faust-streaming") == "0.15.3"
    assert metadata.version("mode-streaming") == "0.7.1"
    assert metadata.version("aiokafka") == "0.14.0"


def test_no_rust_compiled_extension_in_the_runtime_closure() -> None:
    closure = runtime_closure()
    assert not closure & KNOWN_RUST, f"Rust-built packages in the runtime closure: {closure & KNOWN_RUST}"
    offenders = []
    for name in closure:
        dist = metadata.distribution(name)
        for file in dist.files or []:
            if file.suffix in {".so", ".pyd"} or ".so." in file.name:
                path = Path(str(file.locate()))
                if RUST_MARKERS.search(path.read_bytes()):
                    offenders.append(f"{name}: {file}")
    assert not offenders, f"Rust-compiled extensions in the runtime closure: {offenders}"


def test_the_check_recognises_a_rust_binary(tmp_path: Path) -> None:
    fake = tmp_path / "x.so"
    fake.write_bytes(b"\x7fELF...library/std/src/panicking.rs\x00rust_panic\x00")
    assert RUST_MARKERS.search(fake.read_bytes())
