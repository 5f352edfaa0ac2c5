"""Blobs on an fsspec filesystem (the path S3-compatible storage takes), with real fsspec backends.

No S3 server runs on this machine; the same code path is exercised with fsspec's local-file and
in-memory filesystems. ``s3://`` needs ``s3fs`` (the ``s3`` extra) and is documented in docs/store.md.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import POLICY, SOURCE, Backend, StoreEnv
from kerasguard.errors import StoreError
from kerasguard.store import MasterKey, ModelStore
from kerasguard.store.db import AuditRow

fsspec = pytest.importorskip("fsspec")


@pytest.fixture(params=["file", "memory"])
def blob_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'objects'}"
    return f"memory://kgtest-{secrets.token_hex(4)}/blobs"


def objects(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    return {str(p).rsplit("/", 1)[-1]: fs.cat_file(p) for p in fs.ls(root, detail=False)}


def test_round_trip_on_fsspec(tmp_path: Path, blob_url: str, master: MasterKey) -> None:
    store, admin = ModelStore.init(tmp_path / "s", master, blob_url=blob_url, policy=POLICY)
    try:
        model = tmp_path / "m.keras"
        payload = b"config.json" + os.urandom(200_000)
        model.write_bytes(payload)
        info = store.push(admin, model, name="m", version="1", source=SOURCE, namespace="team")
        stored = objects(blob_url)
        assert len(stored) == 1
        (data,) = stored.values()
        assert b"config.json" not in data and payload[:64] not in data
        assert list((tmp_path / "s" / "blobs").iterdir()) == []  # nothing local
        assert list((tmp_path / "s" / "tmp").iterdir()) == []
        out = store.pull(admin, "m", "1", tmp_path / "out.keras", namespace="team", expect_digest=info.digest)
        assert out.read_bytes() == payload
        store.delete(admin, "m", "1", "done", namespace="team")
        assert objects(blob_url) == {}
    finally:
        store.close()


def test_tampered_object_refused(tmp_path: Path, blob_url: str, master: MasterKey) -> None:
    store, admin = ModelStore.init(tmp_path / "s", master, blob_url=blob_url, policy=POLICY)
    try:
        model = tmp_path / "m.keras"
        model.write_bytes(os.urandom(50_000))
        store.push(admin, model, name="m", version="1", source=SOURCE, namespace="team")
        fs, root = fsspec.core.url_to_fs(blob_url)
        (path,) = fs.ls(root, detail=False)
        data = bytearray(fs.cat_file(path))
        data[100] ^= 0xFF
        fs.pipe_file(path, bytes(data))
        with pytest.raises(StoreError, match="team/m:1"):
            store.pull(admin, "m", "1", tmp_path / "out.keras", namespace="team")
        fs.rm_file(path)
        with pytest.raises(StoreError, match="blob of model team/m:1 is missing"):
            store.pull(admin, "m", "1", tmp_path / "out.keras", namespace="team")
    finally:
        store.close()


def test_reopen_keeps_blob_url(
    make_store: Callable[..., StoreEnv], tmp_path: Path, master: MasterKey
) -> None:
    url = f"file://{tmp_path / 'objects'}"
    store, admin = ModelStore.init(tmp_path / "s", master, blob_url=url, policy=POLICY)
    model = tmp_path / "m.keras"
    model.write_bytes(os.urandom(10_000))
    store.push(admin, model, name="m", version="1", source=SOURCE, namespace="team")
    store.close()
    again = ModelStore.open(tmp_path / "s", master, policy=POLICY)
    assert (
        again.pull(admin, "m", "1", tmp_path / "o.keras", namespace="team").read_bytes() == model.read_bytes()
    )
    again.close()


def test_a_node_with_a_wrong_blob_url_says_where_it_looked(
    tmp_path: Path, make_store: Callable[..., StoreEnv], backend: Backend
) -> None:
    """A node whose store.toml points blob_url elsewhere: the error names the location (password
    redacted) and the hint names blob_url, for the model and for its attachments."""
    from kerasguard.store import AttachmentError, NewAttachment

    env = make_store(db_url=backend.db_url)
    model = tmp_path / "m.keras"
    model.write_bytes(os.urandom(20_000))
    items = [NewAttachment("training_record", "train.json", b"{}", {"epochs": 1})]
    env.store.push(
        env.admin, model, name="m", version="1", source=SOURCE, namespace="team", attachments=items
    )
    # the local store: the blobs/ folder is named
    (env.root / "blobs").rename(tmp_path / "away")
    (env.root / "blobs").mkdir(mode=0o700)
    with pytest.raises(StoreError) as info:
        env.store.pull(env.admin, "m", "1", tmp_path / "out.keras", namespace="team")
    assert f"(looked in {env.root / 'blobs'})" in info.value.message
    # the node's store.toml points at the wrong bucket, with credentials in the URL
    wrong = f"memory://user:s3cret@kgtest-{secrets.token_hex(4)}/blobs"
    with (env.root / "store.toml").open("a") as fh:
        fh.write(f'blob_url = "{wrong}"\n')
    store = env.reopen()
    with pytest.raises(StoreError) as info:
        store.pull(env.admin, "m", "1", tmp_path / "out.keras", namespace="team")
    with pytest.raises(AttachmentError) as att:
        store.read_attachment(env.admin, "m", "1", kind="training_record", namespace="team")
    for error in (info.value, att.value):
        assert "missing from the store (looked in memory://user:***@kgtest-" in error.message, error.message
        assert error.hint is not None and "check blob_url in its store.toml" in error.hint
        assert "s3cret" not in error.diagnostics()
    with store.transaction() as s:  # the failures are audited with the location, redacted too
        details = s.execute(select(AuditRow.detail).where(AuditRow.result == "failed")).scalars().all()
    assert details and all("s3cret" not in d for d in details)
    assert any("looked in memory://user:***@" in d for d in details)
