"""A read-only install still gets a numba cache it can write (containers, system installs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import numba_cache


def test_unwritable_package_dir_moves_the_cache(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(numba_cache.os, "access", lambda path, mode: False)
    numba_cache.ensure_writable_cache()
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    assert folder.is_dir() and tmp_path in folder.parents


def test_an_explicit_cache_dir_and_a_writable_install_are_left_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    numba_cache.ensure_writable_cache()
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/else"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(numba_cache.os, "access", lambda path, mode: True)
    numba_cache.ensure_writable_cache()
    assert "NUMBA_CACHE_DIR" not in os.environ
