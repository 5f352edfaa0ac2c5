"""Folders shared by a whole test session, made by pytest's ``tmp_path_factory`` (pytest keeps the
folders of the last few runs under its base temp and removes older ones; nothing registers ``atexit``).

``tests/conftest.py`` hands the factory over at session start; helpers that cache real saved models
across tests (``kerasfiles``, ``kgconfig``) ask for their folder here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_factory: pytest.TempPathFactory | None = None
_dirs: dict[str, Path] = {}


def use_factory(factory: pytest.TempPathFactory) -> None:
    global _factory
    _factory = factory
    _dirs.clear()


def shared_dir(name: str) -> Path:
    """The session's folder ``name``, made on first use."""
    if name not in _dirs:
        if _factory is None:
            raise RuntimeError("support.workdirs needs pytest's tmp_path_factory: call it from a test")
        _dirs[name] = _factory.mktemp(name, numbered=False)
    return _dirs[name]
