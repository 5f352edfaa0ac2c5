"""Unzipped Keras model directories: roles as in the archive, links never followed, bounded walk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kerasguard.formats.artifact import Artifact
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.policy import Limits
from support.zipcraft import CONFIG, METADATA


def read_dir(path: Path, limits: Limits | None = None) -> Artifact:
    ctx = ReadContext(limits or Limits())
    ctx.start_file()
    try:
        return open_artifact(path, ctx)
    finally:
        ctx.close()


def make_dir(root: Path, **files: bytes) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_bytes(CONFIG)
    (model / "metadata.json").write_bytes(METADATA)
    (model / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\nnot really")
    for name, data in files.items():
        target = model / name.replace("__", ".")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return model


def entries(art: Artifact) -> dict[str, str]:
    return {e.name: e.kind for e in art.dirs[0].entries}


@pytest.mark.keras
def test_directory_saved_by_keras() -> None:
    from support import kerasfiles

    art = read_dir(kerasfiles.saved("mlp", "dir"))
    assert art.format == "keras_dir"
    assert entries(art) == {
        "assets": "dir",
        "config.json": "file",
        "metadata.json": "file",
        "model.weights.h5": "file",
    }
    roles = {d.role for d in art.json_docs}
    assert roles == {"model_config", "metadata"}
    assert any(m.name == "model.weights.h5" and m.kind == "hdf5" for m in art.members)
    assert art.size == sum(e.size for e in art.dirs[0].entries)
    assert not [p for p in art.problems if p.kind in ("corrupt", "limit", "io")]


def test_assets_and_unexpected_files_are_read_and_listed(tmp_path: Path) -> None:
    model = make_dir(tmp_path, **{"assets/vocab.txt": b"a\nb\n", "payload.pkl": b"\x80\x04N."})
    art = read_dir(model)
    found = entries(art)
    assert found["assets/vocab.txt"] == "file" and found["payload.pkl"] == "file"
    assert any(m.name == "payload.pkl" and m.kind == "pickle" for m in art.members)
    member = next(m for m in art.members if m.name == "assets/vocab.txt")
    assert member.location.member == "assets/vocab.txt" and member.location.file == str(model)


def test_symlinked_config_is_recorded_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(b'{"class_name": "Lambda"}')
    model = make_dir(tmp_path)
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(outside)
    art = read_dir(model)
    (entry,) = [e for e in art.dirs[0].entries if e.name == "config.json"]
    assert entry.kind == "symlink" and entry.link_target == str(outside)
    assert not [d for d in art.json_docs if d.role == "model_config"]  # never read through the link


def test_symlinked_directory_is_not_walked(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.pem").write_bytes(b"-----BEGIN")
    model = make_dir(tmp_path)
    (model / "assets").symlink_to(secret, target_is_directory=True)
    art = read_dir(model)
    assert entries(art)["assets"] == "symlink"
    assert not any("key.pem" in e.name for e in art.dirs[0].entries)


@pytest.mark.timeout(30)
def test_fifo_is_never_opened(tmp_path: Path) -> None:
    model = make_dir(tmp_path)
    os.mkfifo(model / "model.weights.npz")
    art = read_dir(model)  # opening the FIFO would block until the timeout
    assert entries(art)["model.weights.npz"] == "other"


def test_entry_limit(tmp_path: Path) -> None:
    model = make_dir(tmp_path, **{f"assets/{i}.txt": b"x" for i in range(30)})
    art = read_dir(model, Limits(max_members=10))
    assert art.dirs[0].truncated and len(art.dirs[0].entries) == 10
    assert any(p.kind == "limit" and "max_members=10" in p.message for p in art.problems)


def test_deep_directories_stop(tmp_path: Path) -> None:
    model = make_dir(tmp_path)
    deep = model / "assets"
    for i in range(40):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    art = read_dir(model)
    assert any(p.kind == "limit" and "nesting" in p.message for p in art.problems)


def test_unreadable_subdirectory_is_an_io_problem(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every directory: permissions cannot make one unreadable")
    model = make_dir(tmp_path, **{"assets/x.txt": b"x"})
    (model / "assets").chmod(0)
    try:
        art = read_dir(model)
    finally:
        (model / "assets").chmod(0o755)
    assert any(p.kind == "io" for p in art.problems)
