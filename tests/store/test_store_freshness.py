"""Replayed rows: an attacker with write access to the database but without the master key.

Each test keeps a copy of a row as it was (with its MAC, valid at the time), lets an admin change
the model or token through the store, then writes the old copy back with plain SQL, as someone who
can write the database would. The store must refuse the old copy, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import SOURCE, StoreEnv
from kerasguard.errors import StoreError
from kerasguard.store import AccessDenied
from kerasguard.store.audit import AuditTampered


def sql(env: StoreEnv, statement: str, **params: object) -> list[Any]:
    with env.store.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result.mappings()) if result.returns_rows else []


def snapshot_model(env: StoreEnv, name: str) -> dict[str, Any]:
    (row,) = sql(env, "select * from models where name = :n", n=name)
    return dict(row)


def restore_model(env: StoreEnv, row: dict[str, Any]) -> None:
    """Put the old copy back, every column (what restoring a row from an old backup does)."""
    columns = [c for c in row if c != "id"]
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    sql(env, f"update models set {assignments} where id = :id", **row)


def test_replayed_row_cannot_undo_a_quarantine(
    env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    pub = env.token("publisher")
    assert env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE).status == (
        "admitted"
    )
    admitted = snapshot_model(env, "mlp")
    env.store.quarantine(env.admin, "mlp", "1", "suspicious weights", namespace="team")
    with pytest.raises(StoreError, match="quarantined"):
        env.store.pull(pub, "mlp", "1", tmp_path / "q.keras")

    restore_model(env, admitted)  # the attack: the row as it was before the quarantine, valid MACs
    assert snapshot_model(env, "mlp")["status"] == "admitted"
    refused = r"metadata of model team/mlp:1 is not its latest state: .*older copy of the row was put back"
    with pytest.raises(StoreError, match=refused):
        env.store.pull(pub, "mlp", "1", tmp_path / "out.keras")
    assert not (tmp_path / "out.keras").exists()
    with pytest.raises(StoreError, match=refused):
        env.store.show(pub, "mlp", "1")
    with pytest.raises(StoreError, match="not its latest state"):
        env.store.list(pub)
    with pytest.raises(StoreError, match="not its latest state"):
        env.store.promote(pub, "mlp", "1", "production")


def test_replayed_row_cannot_undo_a_delete(env: StoreEnv, keras_models: dict[str, Path]) -> None:
    pub = env.token("publisher")
    env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE)
    admitted = snapshot_model(env, "mlp")
    env.store.delete(env.admin, "mlp", "1", "retired", namespace="team")
    restore_model(env, admitted)  # the wrapped key is back; the blob is gone, but show/list would lie
    with pytest.raises(StoreError, match="not its latest state"):
        env.store.show(pub, "mlp", "1")
    with pytest.raises(StoreError, match="not its latest state"):
        env.store.list(pub)


def test_replayed_row_of_one_model_does_not_block_the_others(
    sqlite_env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    env = sqlite_env
    pub = env.token("publisher")
    for name in ("a", "b"):
        env.store.push(pub, keras_models["benign"], name=name, version="1", source=SOURCE)
    old = snapshot_model(env, "a")
    env.store.promote(pub, "a", "1", "production")
    restore_model(env, old)
    assert env.store.pull(pub, "b", "1", tmp_path / "b.keras").exists()
    with pytest.raises(StoreError, match="team/a:1 is not its latest state"):
        env.store.pull(pub, "a", "1", tmp_path / "a.keras")


def test_row_without_audit_record_is_refused(env: StoreEnv, keras_models: dict[str, Path]) -> None:
    """Deleting the audit entries about a model (to hide its history) makes the model unusable."""
    pub = env.token("publisher")
    env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE)
    sql(env, "update audit set subject = null, revision = null where subject like 'model:%'")
    with pytest.raises(StoreError, match="team/mlp:1 is not its latest state: the audit log has no record"):
        env.store.show(pub, "mlp", "1")


def test_forged_audit_revision_is_refused(env: StoreEnv, keras_models: dict[str, Path]) -> None:
    """Editing the audit entry to match the replayed row breaks the entry's MAC."""
    pub = env.token("publisher")
    env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE)
    admitted = snapshot_model(env, "mlp")
    env.store.quarantine(env.admin, "mlp", "1", "bad", namespace="team")
    restore_model(env, admitted)
    sql(env, "update audit set revision = 1 where subject = 'model:team/mlp:1'")
    edited = r"team/mlp:1 is not its latest state: its latest audit entry #\d+ was edited"
    with pytest.raises(StoreError, match=edited):
        env.store.show(pub, "mlp", "1")
    with pytest.raises(AuditTampered, match="was edited"):
        env.store.audit_verify(env.admin)


def test_older_audit_entry_copied_after_the_head_is_refused(
    env: StoreEnv, keras_models: dict[str, Path]
) -> None:
    """Replay the row, then copy its older (authentic) audit entry to the end of the log as its latest."""
    pub = env.token("publisher")
    env.store.push(pub, keras_models["benign"], name="mlp", version="1", source=SOURCE)
    admitted = snapshot_model(env, "mlp")
    env.store.quarantine(env.admin, "mlp", "1", "bad", namespace="team")
    restore_model(env, admitted)
    (entry,) = sql(env, "select * from audit where subject = 'model:team/mlp:1' and revision = 1")
    (head,) = sql(env, "select seq from audit_head")
    copy = {**dict(entry), "seq": head["seq"] + 1}
    sql(env, f"insert into audit ({', '.join(copy)}) values ({', '.join(':' + c for c in copy)})", **copy)
    sql(env, "update audit_head set seq = :s, hash = :h", s=copy["seq"], h=copy["hash"])
    with pytest.raises(
        StoreError, match=r"team/mlp:1 is not its latest state: .* copied there from elsewhere"
    ):
        env.store.show(pub, "mlp", "1")


def snapshot_token(env: StoreEnv, label: str) -> dict[str, Any]:
    (row,) = sql(env, "select * from tokens where label = :l", l=label)
    return dict(row)


def test_replayed_token_row_cannot_undo_a_revocation(env: StoreEnv) -> None:
    reader = env.token("reader")
    token_id = reader.split("_")[1]
    before = snapshot_token(env, "reader@team")
    assert env.store.list(reader) == []
    env.store.revoke_token(env.admin, token_id)
    with pytest.raises(AccessDenied, match="invalid, unknown or revoked"):
        env.store.list(reader)

    columns = [c for c in before if c != "id"]
    sql(env, f"update tokens set {', '.join(f'{c} = :{c}' for c in columns)} where id = :id", **before)
    assert snapshot_token(env, "reader@team")["revoked_at"] is None
    with pytest.raises(AccessDenied, match=rf"token {token_id} was revoked \(audit entry #\d+\)"):
        env.store.list(reader)
    with pytest.raises(StoreError, match=rf"token {token_id} was revoked .*older copy of its row"):
        env.store.list_tokens(env.admin)
    last = sql(env, "select action, result, detail from audit order by seq desc limit 1")[0]
    assert (last["action"], last["result"]) == ("list", "denied")
    assert "was revoked" in last["detail"]


def test_token_role_raised_by_an_older_copy_is_refused(sqlite_env: StoreEnv) -> None:
    """A token row copied from another token (valid MAC for that id) does not authenticate as it."""
    env = sqlite_env
    reader = env.token("reader")
    env.token("admin")
    admin_row = snapshot_token(env, "admin@team")
    reader_id = reader.split("_")[1]
    sql(
        env,
        "update tokens set role = :role, row_mac = :mac where id = :id",
        role=admin_row["role"],
        mac=admin_row["row_mac"],
        id=reader_id,
    )
    with pytest.raises(StoreError, match="tokens table was tampered"):
        env.store.list(reader)
