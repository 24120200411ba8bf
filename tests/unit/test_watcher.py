"""Which watched files are ready to upload (app/watcher.py ChangeTracker), with explicit times."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.watcher import ChangeTracker

SETTLE = 2.0
A1 = (100, 1_000_000_000)  # (size, mtime ns)
A2 = (150, 2_000_000_000)
A3 = (150, 3_000_000_000)


def test_new_file_is_ready_only_after_settling() -> None:
    t = ChangeTracker(SETTLE)
    assert t.ready({"a": A1}, now=10.0) == []  # first seen
    assert t.ready({"a": A1}, now=11.0) == []
    assert t.ready({"a": A1}, now=11.999) == []
    assert t.ready({"a": A1}, now=12.0) == ["a"]
    assert t.ready({"a": A1}, now=13.0) == ["a"]  # still ready until marked uploaded


def test_a_changing_file_keeps_resetting() -> None:
    t = ChangeTracker(SETTLE)
    t.ready({"a": A1}, now=0.0)
    now = 0.0
    for i in range(10):
        now += 1.5  # changes more often than SETTLE
        assert t.ready({"a": (100 + i, i)}, now=now) == []
        assert t.ready({"a": (100 + i, i)}, now=now + 1.0) == []
    assert t.ready({"a": (109, 9)}, now=now + SETTLE) == ["a"]


def test_a_change_of_mtime_alone_counts() -> None:
    t = ChangeTracker(SETTLE)
    t.ready({"a": A2}, now=0.0)
    assert t.ready({"a": A3}, now=5.0) == []  # same size, new mtime: restarts
    assert t.ready({"a": A3}, now=6.0) == []
    assert t.ready({"a": A3}, now=7.0) == ["a"]


def test_uploaded_file_is_not_ready_again_until_modified() -> None:
    t = ChangeTracker(SETTLE)
    t.ready({"a": A1}, now=0.0)
    assert t.ready({"a": A1}, now=2.0) == ["a"]
    t.mark_uploaded("a", A1)
    for now in (3.0, 10.0, 1000.0):
        assert t.ready({"a": A1}, now=now) == []
    assert t.ready({"a": A2}, now=1001.0) == []  # modified: settles again
    assert t.ready({"a": A2}, now=1002.0) == []
    assert t.ready({"a": A2}, now=1003.0) == ["a"]
    t.mark_uploaded("a", A2)
    assert t.ready({"a": A2}, now=1004.0) == []


def test_marking_an_older_signature_keeps_the_file_ready() -> None:
    # the file changed during its upload: the version on disk is still to be sent
    t = ChangeTracker(SETTLE)
    t.ready({"a": A1}, now=0.0)
    t.ready({"a": A2}, now=1.0)
    t.mark_uploaded("a", A1)
    assert t.ready({"a": A2}, now=3.0) == ["a"]


def test_baseline_files_are_not_ready_unless_modified() -> None:
    t = ChangeTracker(SETTLE)
    t.baseline({"old": A1, "other": A1})
    for now in (0.0, 5.0, 100.0):
        assert t.ready({"old": A1, "other": A1}, now=now) == []
    assert t.ready({"old": A2, "other": A1}, now=101.0) == []
    assert t.ready({"old": A2, "other": A1}, now=103.0) == ["old"]


def test_files_appearing_after_the_baseline_are_new() -> None:
    t = ChangeTracker(SETTLE)
    t.baseline({"old": A1})
    t.ready({"old": A1, "new": A2}, now=0.0)
    assert t.ready({"old": A1, "new": A2}, now=2.0) == ["new"]


def test_deleted_files_are_forgotten() -> None:
    t = ChangeTracker(SETTLE)
    t.baseline({"a": A1})
    t.ready({"a": A1, "b": A1}, now=0.0)
    t.ready({"a": A1, "b": A1}, now=2.0)
    t.mark_uploaded("b", A1)
    assert t.ready({}, now=3.0) == []  # both deleted
    # put back with the very same signature: a new file, uploaded again once settled
    assert t.ready({"a": A1, "b": A1}, now=4.0) == []
    assert t.ready({"a": A1, "b": A1}, now=6.0) == ["a", "b"]


def test_mark_uploaded_of_an_unknown_file_is_harmless() -> None:
    t = ChangeTracker(SETTLE)
    t.mark_uploaded("ghost", A1)
    t.ready({"ghost": A1}, now=0.0)
    assert t.ready({"ghost": A1}, now=2.0) == ["ghost"]


def test_ready_list_is_sorted() -> None:
    t = ChangeTracker(0.0)
    snapshot = {"z": A1, "a": A1, "m/x": A1}
    t.ready(snapshot, now=0.0)
    assert t.ready(snapshot, now=0.0) == ["a", "m/x", "z"]


signatures = st.tuples(st.integers(0, 3), st.integers(0, 3))


@given(st.lists(st.tuples(st.floats(0, 5), st.one_of(st.none(), signatures), st.booleans()), max_size=30))
@settings(max_examples=200)
def test_model_single_file(steps: list[tuple[float, tuple[int, int] | None, bool]]) -> None:
    """A file is ready iff it was seen unchanged for SETTLE seconds and that signature is not
    the one last marked uploaded."""
    t = ChangeTracker(SETTLE)
    now = 0.0
    sig = since = uploaded = None
    for dt, seen, upload in steps:
        now += dt
        if seen is None:
            assert t.ready({}, now=now) == []
            sig = since = uploaded = None
            continue
        if seen != sig:
            sig, since = seen, now
        expected = ["f"] if now - since >= SETTLE and uploaded != sig else []
        assert t.ready({"f": seen}, now=now) == expected
        if upload and expected:
            t.mark_uploaded("f", seen)
            uploaded = seen
