"""One store and one gateway with the console for all console tests (starting them is the slow part)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.consolehelp import Site, build_models, make_site


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pytest.importorskip("keras")
    pytest.importorskip("fastapi")
    pytest.importorskip("jinja2")
    folder = tmp_path_factory.mktemp("console")
    models = folder / "models"
    models.mkdir()
    built = make_site(folder, build_models(models))
    try:
        yield built
    finally:
        built.gateway.stop()
