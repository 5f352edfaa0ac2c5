"""Installed versions read from metadata files: what an import would find, without importlib.metadata."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from kerasguard.distmeta import canonical_name, installed_version


def _dist(folder: Path, dirname: str, header: str) -> None:
    info = folder / dirname
    info.mkdir(parents=True)
    (info / "METADATA").write_text(header)


def test_matches_importlib_metadata_for_the_installed_keras() -> None:
    assert installed_version("keras") == metadata.version("keras")


def test_first_distribution_on_the_path_wins(tmp_path: Path) -> None:
    _dist(tmp_path / "a", "keras-3.9.0.dist-info", "Name: keras\nVersion: 3.9.0\n")
    _dist(tmp_path / "b", "keras-3.15.1.dist-info", "Name: keras\nVersion: 3.15.1\n")
    assert installed_version("keras", [str(tmp_path / "a"), str(tmp_path / "b")]) == "3.9.0"
    assert installed_version("keras", [str(tmp_path / "b"), str(tmp_path / "a")]) == "3.15.1"


def test_names_are_normalised_and_prefixes_do_not_match(tmp_path: Path) -> None:
    _dist(tmp_path, "keras_hub-0.20.0.dist-info", "Name: keras-hub\nVersion: 0.20.0\n")
    _dist(tmp_path, "Typing_Extensions-4.0.0.dist-info", "Name: typing_extensions\nVersion: 4.0.0\n")
    assert installed_version("keras", [str(tmp_path)]) is None
    assert installed_version("keras.hub", [str(tmp_path)]) == "0.20.0"
    assert installed_version("typing-extensions", [str(tmp_path)]) == "4.0.0"
    assert canonical_name("Keras__Hub.x") == "keras-hub-x"


def test_broken_metadata_is_skipped_not_raised(tmp_path: Path) -> None:
    (tmp_path / "keras-1.0.dist-info").mkdir()  # no METADATA file
    _dist(tmp_path, "keras-2.0.dist-info", "Name: keras\n\nVersion: 2.0\n")  # version after the header ends
    _dist(tmp_path, "keras-3.0.dist-info", "Name: tensorflow\nVersion: 3.0\n")  # folder name lies
    (tmp_path / "keras-4.0.dist-info" / "METADATA").parent.mkdir()
    (tmp_path / "keras-4.0.dist-info" / "METADATA").write_bytes(b"\xff\xfeName: keras\nVersion: 4.0\n")
    assert installed_version("keras", [str(tmp_path / "missing"), str(tmp_path)]) is None
    _dist(tmp_path / "later", "keras-5.0.dist-info", "Name: keras\nVersion: 5.0\n")
    assert installed_version("keras", [str(tmp_path), str(tmp_path / "later")]) == "5.0"
