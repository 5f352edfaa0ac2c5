"""Shared fixtures. Keras runs on the JAX CPU backend; it is imported only by tests that need it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")


@pytest.fixture(scope="session", autouse=True)
def _shared_workdirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Session folders of the support helpers come from pytest's tmp_path_factory (no atexit folders)."""
    from support import workdirs

    workdirs.use_factory(tmp_path_factory)


@pytest.fixture
def fork_despite_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of the scan workers, not of their fork guard (tested in fresh interpreters): threads left
    in this process by earlier tests (JAX's pools, the sandbox's spawner thread) would make ``can_fork``
    refuse, and the scan would quietly run in one process instead of the workers under test."""
    from kerasguard.scanning import workers as scan_workers

    monkeypatch.setattr(scan_workers, "can_fork", lambda: True)
