"""Allocator tuning (app/allocator.py)."""

from __future__ import annotations

import platform

import pytest

from app.allocator import keep_buffers_warm


def test_tuning_applies_with_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt tuning is glibc's")
    assert keep_buffers_warm() is True
