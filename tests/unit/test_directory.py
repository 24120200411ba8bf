"""The directory processor's file placement (agents/directory.py place_file)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

import pytest

from agents.directory import place_file
from app.paths import UnsafePathError


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    path = tmp_path / "staging" / "complete" / ("ab" * 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(5000))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def all_files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


def no_link(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_places_bytes_creating_parents(staged: Path, root: Path) -> None:
    rel = PurePosixPath("run 7/Größe/spectrum 1.h5")
    target = place_file(staged, root, rel)
    assert target == (root / rel).resolve()
    assert target.read_bytes() == staged.read_bytes()
    assert all_files(root) == ["run 7", "run 7/Größe", "run 7/Größe/spectrum 1.h5"]  # no temporaries
    assert staged.exists()  # the staged copy is the caller's to remove


def test_mode_follows_the_umask(staged: Path, root: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    target = place_file(staged, root, PurePosixPath("f"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_sets_mtime_when_given(staged: Path, root: Path) -> None:
    mtime = 1_600_000_000.25
    target = place_file(staged, root, PurePosixPath("a/f.dat"), mtime)
    assert target.stat().st_mtime == pytest.approx(mtime, abs=1e-6)


def test_leaves_mtime_alone_without_one(staged: Path, root: Path) -> None:
    os.utime(staged, (1_500_000_000, 1_500_000_000))
    before = staged.stat().st_mtime
    target = place_file(staged, root, PurePosixPath("f"), 0.0)
    assert target.stat().st_mtime == before


def test_overwrites_an_existing_file_atomically(staged: Path, root: Path) -> None:
    (root / "d").mkdir()
    existing = root / "d" / "f.dat"
    existing.write_bytes(b"old version")
    old_inode = existing.stat().st_ino
    with open(existing, "rb") as reader:  # someone reading the old version meanwhile
        target = place_file(staged, root, PurePosixPath("d/f.dat"))
        assert reader.read() == b"old version"  # replaced by rename, never rewritten in place
    assert target.read_bytes() == staged.read_bytes()
    assert target.stat().st_ino != old_inode
    assert all_files(root) == ["d", "d/f.dat"]


def test_placing_the_same_version_twice_by_copy_is_harmless(
    staged: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", no_link)
    place_file(staged, root, PurePosixPath("f"))
    target = place_file(staged, root, PurePosixPath("f"))
    assert target.read_bytes() == staged.read_bytes()
    assert all_files(root) == ["f"]


def test_placing_the_same_version_twice_is_harmless(staged: Path, root: Path) -> None:
    place_file(staged, root, PurePosixPath("f"))
    target = place_file(staged, root, PurePosixPath("f"))  # e.g. a retried processor
    assert target.read_bytes() == staged.read_bytes()
    assert all_files(root) == ["f"]


def test_copies_when_hard_links_fail(staged: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "link", no_link)
    mtime = 1_650_000_000.0
    target = place_file(staged, root, PurePosixPath("x/y/z.bin"), mtime)
    assert target.read_bytes() == staged.read_bytes()
    assert target.stat().st_ino != staged.stat().st_ino  # a real copy
    assert target.stat().st_nlink == 1
    assert target.stat().st_mtime == mtime
    assert all_files(root) == ["x", "x/y", "x/y/z.bin"]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES])
def test_other_no_link_errors_also_copy(staged: Path, root: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", fail)
    assert place_file(staged, root, PurePosixPath("f")).read_bytes() == staged.read_bytes()


def test_unexpected_link_error_propagates_and_leaves_nothing(
    staged: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", fail)
    with pytest.raises(OSError) as info:
        place_file(staged, root, PurePosixPath("d/f"))
    assert info.value.errno == errno.EIO
    assert all_files(root) == ["d"]


def test_a_failure_after_the_temporary_exists_removes_it(
    staged: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "d" / "f").mkdir(parents=True)  # a directory where the file should go: rename fails
    (root / "d" / "f" / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        place_file(staged, root, PurePosixPath("d/f"))
    assert all_files(root) == ["d", "d/f", "d/f/inside"]


def test_missing_staged_file_raises_and_leaves_nothing(tmp_path: Path, root: Path) -> None:
    with pytest.raises(FileNotFoundError):
        place_file(tmp_path / "gone", root, PurePosixPath("f"))
    assert all_files(root) == []


def test_refuses_a_parent_symlink_pointing_outside(staged: Path, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside, target_is_directory=True)
    for rel in ("evil/f.dat", "evil/sub/f.dat"):
        with pytest.raises(UnsafePathError):
            place_file(staged, root, PurePosixPath(rel))
    assert list(outside.iterdir()) == []
    assert all_files(root) == ["evil"]


def test_refuses_a_deeper_parent_symlink_pointing_outside(staged: Path, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(UnsafePathError):
        place_file(staged, root, PurePosixPath("a/b/c/f.dat"))
    assert list(outside.iterdir()) == []


def test_refuses_a_final_symlink_pointing_outside(staged: Path, root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (root / "f.dat").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        place_file(staged, root, PurePosixPath("f.dat"))
    assert victim.read_bytes() == b"keep me"


def test_refuses_parent_references(staged: Path, root: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        place_file(staged, root, PurePosixPath("../escaped"))
    assert not (tmp_path / "escaped").exists()


def test_bytes_are_durable_before_any_name_shows_them(
    staged: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else f"fsync-ino-{os.fstat(fd).st_ino}")
        real_fsync(fd)

    def link(src: object, dst: object, **kwargs: object) -> None:
        calls.append("link")
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    place_file(staged, root, PurePosixPath("new/f.dat"))
    assert calls == [f"fsync-ino-{staged.stat().st_ino}", "link", "fsync-dir"]
