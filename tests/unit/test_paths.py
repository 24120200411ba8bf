"""Path safety (app/paths.py): relative output paths that can never leave the output root,
and the keys and names a file version travels under."""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.paths import UnsafePathError, file_key, message_key, output_relpath, resolve_under, staging_name

# --- accepted paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subdir", "filename", "append", "expected"),
    [
        ("", "file.dat", "", "file.dat"),
        ("a", "b.txt", "", "a/b.txt"),
        ("run 7/raw data", "spectrum 1.h5", "", "run 7/raw data/spectrum 1.h5"),
        ("Messungen/Größe", "naïve résumé.csv", "", "Messungen/Größe/naïve résumé.csv"),
        ("日本/データ", "ファイル.bin", "", "日本/データ/ファイル.bin"),
        ("a", "b.txt", "_v2", "a/b_v2.txt"),
        ("", "archive.tar.gz", "-copy", "archive.tar-copy.gz"),
        ("", "README", "_x", "README_x"),
        ("", ".bashrc", "_x", ".bashrc_x"),
        ("x", "confidential.txt", "", "x/confidential.txt"),  # "con" as a prefix only
        ("console", "com10.txt", "", "console/com10.txt"),
        ("ab:c/..c", "...", "", "ab:c/..c/..."),  # colon not after a single letter; dots not alone
        ("", "x" * 255, "", "x" * 255),
    ],
)
def test_output_relpath_accepts_plain_names(subdir: str, filename: str, append: str, expected: str) -> None:
    rel = output_relpath(subdir, filename, append)
    assert isinstance(rel, PurePosixPath)
    assert str(rel) == expected
    assert not rel.is_absolute()


def test_append_goes_between_stem_and_suffix() -> None:
    rel = output_relpath("d", "image.tiff", "_0001")
    assert rel.name == "image_0001.tiff"
    assert rel.suffix == ".tiff"
    assert rel.parent == PurePosixPath("d")


@pytest.mark.parametrize(
    ("subdir", "filename"),
    [
        ("/etc", "passwd"),
        ("/", "x"),
        ("..", "x"),
        ("a/../..", "x"),
        ("a/..", "x"),
        (".", "x"),
        ("a/./b", "x"),
        ("a//b", "x"),
        ("a/", "x"),
        ("", ".."),
        ("", "."),
        ("", ""),
        ("a", ""),
        ("a\x00b", "x"),
        ("", "x\x00.txt"),
        ("..\\x", "y"),
        ("a\\b", "y"),
        ("", "..\\evil"),
        ("", "a\\b"),
        ("", "a/b"),
        ("", "/abs"),
        ("C:", "x"),
        ("c:foo", "x"),
        ("", "C:"),
        ("", "c:foo.txt"),
        ("z:\\", "x"),
        ("a\nb", "x"),
        ("", "x\ty"),
        ("", "bell\x07"),
        ("", "del\x7f"),
        ("", "esc\x1b[31m"),
        ("CON", "x"),
        ("", "nul"),
        ("", "NUL.txt"),
        ("", "com1.log"),
        ("", "LPT9"),
        ("prn.d", "x"),
        ("aux", "x"),
        ("x" * 256, "y"),
        ("", "x" * 256),
        ("", "é" * 128),  # 256 bytes in UTF-8
    ],
    ids=repr,
)
def test_output_relpath_rejects_unsafe(subdir: str, filename: str) -> None:
    with pytest.raises(UnsafePathError):
        output_relpath(subdir, filename)


@pytest.mark.parametrize(
    ("filename", "append"),
    [
        ("report.txt", "/../../etc/cron.d/x"),
        ("report.txt", "/x"),
        ("report", "\\x"),
        ("report", "\x00"),
        ("report", "\n"),
        ("x", "y" * 255),
    ],
    ids=repr,
)
def test_filename_append_cannot_smuggle_a_path(filename: str, append: str) -> None:
    with pytest.raises(UnsafePathError):
        output_relpath("", filename, append)


def test_unsafe_path_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        output_relpath("..", "x")


path_text = st.text(
    alphabet=st.sampled_from(["/", "\\", ".", ":", "C", "c", "a", " ", "\x00", "\n", "~", "é", "n", "u", "l"])
    | st.characters(codec="utf-8"),  # what decode_chunk can produce
    max_size=40,
)


@given(subdir=path_text, filename=path_text, append=st.text(max_size=10) | path_text)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_accepted_path_stays_strictly_inside_the_root(
    tmp_path: Path, subdir: str, filename: str, append: str
) -> None:
    try:
        rel = output_relpath(subdir, filename, append)
    except UnsafePathError:
        return
    assert not rel.is_absolute()
    assert all(part not in ("", ".", "..") for part in rel.parts)
    assert all("\x00" not in part and "\\" not in part for part in rel.parts)
    target = resolve_under(tmp_path, rel)
    root = tmp_path.resolve()
    assert target != root
    assert target.is_relative_to(root)
    assert Path(os.path.normpath(root / rel)) == target
    assert list(target.relative_to(root).parts) == list(rel.parts)


@pytest.mark.parametrize(
    ("subdir", "filename", "append"), [("", "\ud800", ""), ("\udcff", "x", ""), ("", "x", "\udc80")]
)
def test_lone_surrogates_are_unsafe_paths(subdir: str, filename: str, append: str) -> None:
    with pytest.raises(UnsafePathError):
        output_relpath(subdir, filename, append)


@given(st.lists(st.sampled_from(["..", ".", "", "a", "b"]), min_size=1, max_size=6), st.sampled_from(["x", ".."]))
@settings(max_examples=200)
def test_dot_components_are_rejected_anywhere(parts: list[str], filename: str) -> None:
    assume(parts != [""])  # an empty subdir is the root itself
    assume(any(p in ("..", ".", "") for p in parts) or filename == "..")
    with pytest.raises(UnsafePathError):
        output_relpath("/".join(parts), filename)


# --- resolve_under ------------------------------------------------------------------------------


def test_resolve_under_refuses_a_planted_symlink_to_outside(tmp_path: Path) -> None:
    root = tmp_path / "out"
    outside = tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "evil").symlink_to(outside, target_is_directory=True)
    rel = output_relpath("evil", "x.dat")  # a plain name: only the link makes it escape
    with pytest.raises(UnsafePathError):
        resolve_under(root, rel)
    with pytest.raises(UnsafePathError):
        resolve_under(root, PurePosixPath("evil/deeper/x.dat"))


def test_resolve_under_refuses_a_file_symlink_to_outside(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("x")
    (root / "target.dat").symlink_to(secret)
    with pytest.raises(UnsafePathError):
        resolve_under(root, PurePosixPath("target.dat"))


def test_resolve_under_follows_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert resolve_under(tmp_path, PurePosixPath("alias/f")) == (tmp_path / "real" / "f").resolve()


def test_resolve_under_refuses_the_root_itself_and_parents(tmp_path: Path) -> None:
    for rel in (PurePosixPath("."), PurePosixPath(".."), PurePosixPath("a/../.."), PurePosixPath("a/..")):
        with pytest.raises(UnsafePathError):
            resolve_under(tmp_path, rel)


def test_resolve_under_a_file_where_a_directory_is_expected_is_not_an_escape(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert resolve_under(tmp_path, PurePosixPath("f/g")) == tmp_path.resolve() / "f" / "g"  # writing fails later


def test_resolve_under_sees_a_link_created_after_an_earlier_call(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    assert resolve_under(root, PurePosixPath("d/x")) == root / "d" / "x"
    (tmp_path / "elsewhere").mkdir()
    (root / "d").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafePathError):
        resolve_under(root, PurePosixPath("d/x"))


def test_resolve_under_a_root_that_is_itself_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert resolve_under(tmp_path / "link", PurePosixPath("a/b")) == (tmp_path / "real" / "a" / "b").resolve()


# --- keys and names -----------------------------------------------------------------------------


def test_message_key_is_the_relative_path_in_utf8() -> None:
    rel = output_relpath("Größe", "a b.txt")
    assert message_key(rel) == "Größe/a b.txt".encode()
    assert message_key(rel) == message_key("Größe/a b.txt")
    assert message_key(rel) != message_key(output_relpath("Größe", "a b2.txt"))


def digest(content: bytes) -> bytes:
    return hashlib.sha512(content).digest()


key_fields = st.tuples(st.text(max_size=30), st.binary(max_size=20), st.integers(1, 10**6))


@given(key_fields)
@settings(max_examples=200)
def test_file_key_is_deterministic(args: tuple[str, bytes, int]) -> None:
    relpath, content, total = args
    assert file_key(relpath, digest(content), total) == file_key(relpath, digest(content), total)


@given(key_fields, st.binary(max_size=20), st.integers(1, 10**6), st.text(max_size=30))
@settings(max_examples=200)
def test_file_key_differs_for_another_hash_total_or_path(
    args: tuple[str, bytes, int], other_content: bytes, other_total: int, other_path: str
) -> None:
    relpath, content, total = args
    key = file_key(relpath, digest(content), total)
    if other_content != content:
        assert file_key(relpath, digest(other_content), total) != key
    if other_total != total:
        assert file_key(relpath, digest(content), other_total) != key
    if other_path != relpath:
        assert file_key(other_path, digest(content), total) != key


def test_file_key_is_distinct_for_distinct_output_paths() -> None:
    h = digest(b"same content")
    assert output_relpath("", "f", "y") != output_relpath("", "f+y", "")
    assert file_key(output_relpath("", "f", "y"), h, 1) != file_key(output_relpath("", "f+y", ""), h, 1)
    assert file_key("a#b", h, 1) != file_key("a", h, 1)


@given(st.text(), st.text())
@settings(max_examples=200)
def test_staging_name_is_64_hex_chars_and_injective_in_practice(key: str, other: str) -> None:
    name = staging_name(key)
    assert len(name) == 64
    assert set(name) <= set(string.hexdigits.lower())
    assert staging_name(key) == name
    if other != key:
        assert staging_name(other) != name


def test_staging_name_handles_lone_surrogates() -> None:
    assert len(staging_name("bad\udcffname")) == 64
    assert staging_name("bad\udcffname") != staging_name("bad\udcfename")
