"""Fixtures for the advisory and audit tests: fake installed environments, an isolated user database."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from kerasguard.advisories.database import AdvisoryDatabase, load_database
from support.audit_fakes import SiteFactory, write_dist, write_hdf5_library


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Imported records go to a per-test folder, never to the user's ~/.local/share."""
    home = tmp_path_factory.mktemp("kghome")
    monkeypatch.setenv("KERASGUARD_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shipped_db() -> AdvisoryDatabase:
    return load_database(include_imported=False)


@pytest.fixture
def make_site(tmp_path: Path) -> SiteFactory:
    counter = iter(range(10_000))

    def make(dists: Iterable[tuple[str, str]] | dict[str, str], *, hdf5: str | None = None) -> Path:
        site = tmp_path / f"site{next(counter)}" / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        items = dists.items() if isinstance(dists, dict) else dists
        for name, version in items:
            write_dist(site, name, version)
        if hdf5 is not None:
            write_hdf5_library(site, hdf5)
        return site

    return make
