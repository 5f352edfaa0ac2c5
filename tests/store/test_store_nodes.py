"""Several nodes on one store (docs/deployment.md, "Several gateways"): one node initialises the store
on the real PostgreSQL server with shared blobs; another node's folder is seeded with ``store.toml``
alone, as the Kubernetes manifest's init container does, and must open it and see the same models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import POLICY, SOURCE, Backend
from kerasguard.errors import StoreError
from kerasguard.store import AccessDenied, MasterKey, ModelStore


def test_a_node_seeded_with_store_toml_alone_shares_the_store(
    tmp_path: Path, pg_url: str, master: MasterKey, keras_models: dict[str, Path]
) -> None:
    blobs = f"file://{tmp_path / 'shared-objects'}"
    first, admin = ModelStore.init(tmp_path / "node-a", master, db_url=pg_url, blob_url=blobs, policy=POLICY)
    second_root = tmp_path / "node-b"
    second_root.mkdir(mode=0o700)
    shutil.copy(tmp_path / "node-a" / "store.toml", second_root / "store.toml")
    with first, ModelStore.open(second_root, master, policy=POLICY) as second:
        assert sorted(p.name for p in second_root.iterdir()) == ["blobs", "store.toml", "tmp"]
        assert (second_root / "tmp").stat().st_mode & 0o777 == 0o700
        publisher = first.create_token(admin, "publisher", "team", "ci")
        info = first.push(publisher, keras_models["benign"], name="m", version="1", source=f"{SOURCE}/m")
        assert info.status == "admitted", info.reason
        # what one node pushed, the other pulls, byte for byte (blobs from the shared bucket)
        pulled = second.pull(publisher, "m", "1", tmp_path / "pulled.keras")
        assert Path(pulled).read_bytes() == keras_models["benign"].read_bytes()
        # a change made on one node is what the other reads: no per-node copy of the metadata
        first.promote(publisher, "m", "1", "production")
        assert second.show(publisher, "m", "1").stage == "production"
        reader = second.create_token(admin, "reader", "team", "dashboard")
        assert [m.name for m in first.list(reader)] == ["m"]
        token_id = next(t["id"] for t in second.list_tokens(admin, "team") if t["label"] == "dashboard")
        first.revoke_token(admin, token_id)
        with pytest.raises(AccessDenied):  # revoked on one node: refused on the other
            second.list(reader)


UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def test_a_failed_init_leaves_nothing_behind_and_can_be_run_again(
    tmp_path: Path, pg_url: str, master: MasterKey
) -> None:
    from typer.testing import CliRunner

    from kerasguard.cli import app
    from kerasguard.store import write_key_file

    write_key_file(tmp_path / "master.key")
    env = {"KERASGUARD_MASTER_KEY_FILE": str(tmp_path / "master.key"), "KERASGUARD_MASTER_KEY": ""}
    runner = CliRunner()
    # a new folder (and the parents init had to make): removed
    deep = tmp_path / "new" / "deeper" / "node5"
    failed = runner.invoke(app, ["store", "init", "--store", str(deep), "--db-url", UNREACHABLE], env=env)
    assert failed.exit_code == 2, failed.output
    # psycopg's advice is on a tab-indented second line: one readable line, no escaped tab
    assert "cannot reach or migrate the store database" in failed.stderr
    assert "\\x09" not in failed.stderr and "\t" not in failed.stderr
    assert "Connection refused; Is the server running" in failed.stderr, failed.stderr
    assert not (tmp_path / "new").exists()
    # a folder that existed (empty) before: kept, and left empty
    empty = tmp_path / "node6"
    empty.mkdir()
    failed = runner.invoke(app, ["store", "init", "--store", str(empty), "--db-url", UNREACHABLE], env=env)
    assert failed.exit_code == 2, failed.output
    assert empty.is_dir() and list(empty.iterdir()) == []
    # the retry (the database reachable now) does not say "exists and is not an empty folder"
    for folder in (deep, empty):
        done = runner.invoke(app, ["store", "init", "--store", str(folder), "--db-url", pg_url], env=env)
        if folder == deep:
            assert done.exit_code == 0, done.output
            assert done.stdout.startswith("kgs_")
        else:  # the same database holds deep's store now: refused, with the way to join it
            assert done.exit_code == 2, done.output
            assert "already holds a store" in done.stderr
            assert "copy store.toml from one of its nodes into an empty folder" in done.stderr
            assert list(empty.iterdir()) == []


def test_init_on_a_database_that_holds_a_store_cleans_up_and_says_how_to_join(
    tmp_path: Path, backend: Backend, master: MasterKey
) -> None:
    url = backend.db_url or f"sqlite:///{tmp_path / 'shared.db'}"
    first, _admin = ModelStore.init(tmp_path / "node-a", master, db_url=url, policy=POLICY)
    first.close()
    with pytest.raises(StoreError) as info:
        ModelStore.init(tmp_path / "node-b", master, db_url=url, policy=POLICY)
    assert "already holds a store" in info.value.message
    assert info.value.hint is not None and "Several gateways" in info.value.hint
    assert not (tmp_path / "node-b").exists()
    # the way the hint gives: store.toml copied into an empty folder opens the same store
    (tmp_path / "node-b").mkdir(mode=0o700)
    shutil.copy(tmp_path / "node-a" / "store.toml", tmp_path / "node-b" / "store.toml")
    with (
        ModelStore.open(tmp_path / "node-a", master, policy=POLICY) as first,
        ModelStore.open(tmp_path / "node-b", master, policy=POLICY) as second,
    ):
        assert second.store_id == first.store_id
    assert (tmp_path / "node-a" / "store.toml").exists()  # the first store is untouched
