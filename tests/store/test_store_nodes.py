"""Several nodes on one store (docs/deployment.md, "Several gateways"): one node initialises the store
on the real PostgreSQL server with shared blobs; another node's folder is seeded with ``store.toml``
alone, as the Kubernetes manifest's init container does, and must open it and see the same models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import POLICY, SOURCE
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
