"""Stores written before row revisions and the keyed audit chain upgrade on their first open.

A format-1 store is rebuilt from a current one the way the old code wrote it: schema 0001 (Alembic
downgrade), row and token MACs without revisions, an unkeyed SHA-256 audit chain, no witness file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from conftest import SOURCE, StoreEnv
from kerasguard.errors import StoreError
from kerasguard.store import AccessDenied, MasterKey, ModelStore
from kerasguard.store import audit as audit_mod
from kerasguard.store.db import AuditHead, AuditRow, MetaRow, ModelRow, TokenRow, sessions
from kerasguard.store.upgrade import FORMAT_KEY, _legacy_model_mac, _legacy_token_mac


def make_legacy(env: StoreEnv) -> None:
    """Turn the store into what kerasguard wrote before integrity format 2."""
    key = env.master.mac_key
    with sessions(env.store.engine).begin() as s:
        for row in s.execute(select(ModelRow)).scalars():
            row.row_mac = _legacy_model_mac(key, row)
        for token in s.execute(select(TokenRow)).scalars():
            token.row_mac = _legacy_token_mac(key, token)
        prev = audit_mod.GENESIS
        for entry in s.execute(select(AuditRow).order_by(AuditRow.seq)).scalars():
            entry.subject = entry.revision = None
            entry.prev_hash = prev
            entry.hash = prev = audit_mod.legacy_hash(prev, audit_mod.row_fields(entry))
        s.execute(select(AuditHead)).scalar_one().hash = prev
        s.delete(s.get(MetaRow, FORMAT_KEY))
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(audit_mod.__file__).with_name("migrations")))
    with env.store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    env.store.close()
    (env.root / "audit-witness.jsonl").unlink()


def test_format_1_store_upgrades_and_keeps_its_state(
    env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    pub = env.token("publisher")
    reader = env.token("reader")
    env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE)
    env.store.push(pub, keras_models["benign"], name="mlp", version="2", source=SOURCE)
    env.store.quarantine(env.admin, "mlp", "2", "bad", namespace="team")
    env.store.revoke_token(env.admin, reader.split("_")[1])
    make_legacy(env)
    with env.store.engine.begin() as conn:
        assert "revision" not in list(conn.execute(text("select * from models")).keys())

    store = ModelStore.open(env.root, env.master, policy=env.store.policy)
    env.store = store
    assert store.pull(pub, "mlp", "1", tmp_path / "one.keras").exists()
    with pytest.raises(StoreError, match="quarantined"):
        store.pull(pub, "mlp", "2", tmp_path / "two.keras")
    with pytest.raises(AccessDenied):
        store.list(reader)
    result = store.audit_verify(env.admin)
    assert result.witnessed_seq is not None
    with store.engine.begin() as conn:
        upgraded = conn.execute(text("select count(*) from audit where action = 'upgrade'")).scalar_one()
        assert upgraded == 2 + 3 + 1  # two models, three tokens, the summary
        assert conn.execute(text("select revision from models where version = '2'")).scalar_one() == 1

    # Replays work against upgraded rows as against new ones.
    with store.engine.begin() as conn:
        old = dict(conn.execute(text("select * from models where version = '1'")).mappings().one())
    store.quarantine(env.admin, "mlp", "1", "also bad", namespace="team")
    with store.engine.begin() as conn:
        conn.execute(
            text("update models set status = :status, reason = :reason, updated_at = :updated_at, "
                 "revision = :revision, row_mac = :row_mac, list_mac = :list_mac where id = :id"),
            old,
        )  # fmt: skip
    with pytest.raises(StoreError, match="not its latest state"):
        store.pull(pub, "mlp", "1", tmp_path / "again.keras")
    ModelStore.open(env.root, env.master).close()  # a second open does not upgrade again


def test_store_tampered_before_the_upgrade_is_refused(
    sqlite_env: StoreEnv, keras_models: dict[str, Path]
) -> None:
    env = sqlite_env
    pub = env.token("publisher")
    env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE)
    engine = env.store.engine
    make_legacy(env)
    with engine.begin() as conn:
        conn.execute(text("update models set stage = 'production'"))
    with pytest.raises(StoreError, match="cannot upgrade the store: metadata of model team/mlp:1 failed"):
        ModelStore.open(env.root, env.master)


def test_deleted_format_marker_does_not_reopen_the_upgrade(sqlite_env: StoreEnv) -> None:
    """Deleting the marker to get a keyed store 'upgraded' (re-blessed) again fails closed."""
    env = sqlite_env
    env.token("reader")
    with env.store.engine.begin() as conn:
        conn.execute(text("delete from store_meta where key = :k"), {"k": FORMAT_KEY})
    env.store.close()
    with pytest.raises(StoreError, match="cannot upgrade the store: audit log verification failed"):
        ModelStore.open(env.root, env.master)
    with pytest.raises(StoreError, match="wrong master key"):
        ModelStore.open(env.root, MasterKey.generate())
