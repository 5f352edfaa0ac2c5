"""Fixtures of the gateway tests: Keras models saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.servehelp import build_models


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("keras")
    pytest.importorskip("fastapi")
    return build_models(tmp_path_factory.mktemp("serve-models"))
