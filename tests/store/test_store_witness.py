"""The keyed audit chain and its witnesses: a rewritten or cut-off log is detected.

The attacker writes the database (plain SQL) but holds no master key and cannot write the witness.
Witnesses are real: a file appended with O_APPEND and a stream on the Redis server of this machine.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from conftest import POLICY, SOURCE, StoreEnv
from kerasguard.cli.app import app
from kerasguard.errors import StoreError
from kerasguard.store import MasterKey, ModelStore
from kerasguard.store.audit import AuditTampered
from kerasguard.store.witness import WitnessError

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def sql(env: StoreEnv, statement: str, **params: object) -> None:
    with env.store.engine.begin() as conn:
        conn.execute(text(statement), params)


def activity(env: StoreEnv, model: Path, versions: int = 3) -> None:
    pub = env.token("publisher")
    for version in range(1, versions + 1):
        env.store.push(pub, model, name="mlp", version=str(version), source=SOURCE)


def cut_tail(env: StoreEnv, entries: int) -> tuple[int, int]:
    """Delete the last ``entries`` audit entries and move the head back: no key needed."""
    with env.store.engine.begin() as conn:
        head = conn.execute(text("select seq from audit_head")).scalar_one()
        keep = head - entries
        conn.execute(text("delete from audit where seq > :k"), {"k": keep})
        last = conn.execute(text("select hash from audit where seq = :k"), {"k": keep}).scalar_one()
        conn.execute(text("update audit_head set seq = :k, hash = :h"), {"k": keep, "h": last})
    return keep + 1, head


def test_truncated_tail_with_moved_head_is_detected(env: StoreEnv, keras_models: dict[str, Path]) -> None:
    activity(env, keras_models["benign"])
    first, last = cut_tail(env, 2)
    cut = rf"audit entries #{first}..#{last} were deleted from the end"
    with pytest.raises(AuditTampered, match=cut) as info:
        env.store.audit_verify(env.admin)
    assert "the witness file:" in info.value.message
    assert f"recorded head #{last}" in info.value.message


def test_the_default_witness_is_a_file_of_json_lines(
    sqlite_env: StoreEnv, keras_models: dict[str, Path]
) -> None:
    env = sqlite_env
    activity(env, keras_models["benign"], versions=1)
    lines = (env.root / "audit-witness.jsonl").read_text().splitlines()
    heads = [json.loads(line) for line in lines]
    with env.store.engine.begin() as conn:
        entries = dict(conn.execute(text("select seq, hash from audit")).all())
    assert [h["seq"] for h in heads] == sorted(entries)  # one line per committed head, in order here
    assert all(entries[h["seq"]] == h["mac"] for h in heads)
    assert set(heads[0]) == {"seq", "mac", "time", "store", "key"}
    assert (env.root / "audit-witness.jsonl").stat().st_mode & 0o777 == 0o600
    result = env.store.audit_verify(env.admin)
    assert result.witnessed_seq == result.head_seq == len(entries)


def test_recomputed_unkeyed_chain_is_detected(env: StoreEnv, keras_models: dict[str, Path]) -> None:
    """Edit an entry and recompute every hash the way the unkeyed SHA-256 chain allowed."""
    activity(env, keras_models["benign"])
    with env.store.engine.begin() as conn:
        rows = conn.execute(text("select * from audit order by seq")).mappings().all()
        prev = "0" * 64
        for row in rows:
            fields = {k: row[k] for k in ("time", "actor", "action", "namespace", "model", "version",
                                          "digest", "source", "result", "detail")}  # fmt: skip
            if row["seq"] == 2:
                fields["detail"] = "nothing to see"
            body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            digest = hashlib.sha256(f"{prev}|{body}".encode()).hexdigest()
            conn.execute(
                text("update audit set detail = :d, prev_hash = :p, hash = :h where seq = :s"),
                {"d": fields["detail"], "p": prev, "h": digest, "s": row["seq"]},
            )
            prev = digest
        conn.execute(text("update audit_head set hash = :h"), {"h": prev})
    # Even the admin's token is refused now: the entry that created it no longer matches its MAC.
    with pytest.raises(StoreError, match=r"audit entry #1 (of token \w+ )?was edited"):
        env.store.audit_verify(env.admin)


def test_database_rolled_back_to_a_backup_is_detected(
    sqlite_env: StoreEnv, keras_models: dict[str, Path]
) -> None:
    """The whole database restored from an older copy: every table consistent, every MAC valid."""
    env = sqlite_env
    activity(env, keras_models["benign"], versions=1)
    env.store.close()  # checkpoints the WAL into store.db
    backup = (env.root / "store.db").read_bytes()
    store = env.reopen()
    store.quarantine(env.admin, "mlp", "1", "bad", namespace="team")
    store.close()
    (env.root / "store.db").write_bytes(backup)
    for extra in ("store.db-wal", "store.db-shm"):
        (env.root / extra).unlink(missing_ok=True)
    store = env.reopen()
    pub = env.token("publisher")
    assert store.show(pub, "mlp", "1").status == "admitted"  # the rows alone cannot tell
    with pytest.raises(AuditTampered, match=r"deleted from the end of the log|is not the one the witness"):
        store.audit_verify(env.admin)
    for _ in range(6):  # the log grows past the witnessed head: still caught, entry by entry
        env.token("reader")
    with pytest.raises(AuditTampered, match=r"rolled back"):
        store.audit_verify(env.admin)


def test_unreachable_witness_fails_closed(
    sqlite_env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    env = sqlite_env
    activity(env, keras_models["benign"], versions=1)
    missing = f"file:{tmp_path}/no-such-folder/witness.jsonl"
    with pytest.raises(WitnessError, match=r"cannot read the audit witness .*folder does not exist"):
        env.store.audit_verify(env.admin, witness=missing)
    closed = free_port()
    with pytest.raises(WitnessError, match="cannot read the audit witness redis://"):
        env.store.audit_verify(env.admin, witness=f"redis://127.0.0.1:{closed}/0")
    with env.store.engine.begin() as conn:
        last = conn.execute(text("select action, result from audit order by seq desc limit 1")).one()
    assert tuple(last) == ("audit-verify", "failed")


def test_empty_witness_cannot_vouch(sqlite_env: StoreEnv, tmp_path: Path) -> None:
    env = sqlite_env
    with pytest.raises(WitnessError, match="holds no head of this store"):
        env.store.audit_verify(env.admin, witness=f"file:{tmp_path}/fresh.jsonl")


def test_malformed_witness_line_is_an_error(sqlite_env: StoreEnv) -> None:
    env = sqlite_env
    witness = env.root / "audit-witness.jsonl"
    with witness.open("a") as fh:
        fh.write('{"seq": "x"}\n')
    env.token("reader")  # one more head after the bad line
    with pytest.raises(WitnessError, match="malformed line 2"):
        env.store.audit_verify(env.admin)


def test_torn_last_witness_line_is_ignored(sqlite_env: StoreEnv) -> None:
    env = sqlite_env
    with (env.root / "audit-witness.jsonl").open("a") as fh:
        fh.write('{"key": "ab", "mac": "12')  # a crash in the middle of a write
    assert env.store.audit_verify(env.admin).witnessed_seq == 1


def test_witness_write_failure_is_reported(sqlite_env: StoreEnv) -> None:
    env = sqlite_env
    witness = env.root / "audit-witness.jsonl"
    witness.unlink()
    witness.mkdir()  # cannot be opened for appending
    try:
        committed = r"the change was committed \(audit entry #\d+\), but cannot open"
        with pytest.raises(WitnessError, match=committed):
            env.token("reader")
    finally:
        witness.rmdir()


def test_rotation_rekeys_the_chain_and_the_witness_follows(
    sqlite_env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    env = sqlite_env
    activity(env, keras_models["benign"], versions=1)
    new = MasterKey.generate()
    env.store.rotate_key(env.admin, new)
    store = env.reopen(new)
    result = store.audit_verify(env.admin)
    assert result.witnessed_seq is not None and result.witnessed_seq >= result.head_seq - 1
    first, _ = cut_tail(env, 1)
    with pytest.raises(AuditTampered, match=rf"#{first}"):
        store.audit_verify(env.admin)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_stream() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {exc}")
    stream = f"kerasguard-test:{secrets.token_hex(6)}"
    yield stream
    client.delete(stream)
    client.close()


def test_redis_witness_detects_a_cut_tail(
    make_store: Callable[..., StoreEnv], keras_models: dict[str, Path], redis_stream: str, tmp_path: Path
) -> None:
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0?stream={redis_stream}"
    store, admin = ModelStore.init(tmp_path / "redis-store", MasterKey.generate(), policy=POLICY, witness=url)
    env = StoreEnv(tmp_path / "redis-store", store.master, store, admin, None)
    try:
        assert not (env.root / "audit-witness.jsonl").exists()
        activity(env, keras_models["benign"], versions=2)
        result = store.audit_verify(admin)
        assert result.witness is not None and redis_stream in result.witness
        assert result.witnessed_seq == result.head_seq
        first, last = cut_tail(env, 3)
        with pytest.raises(AuditTampered, match=rf"#{first}..#{last} were deleted from the end"):
            store.audit_verify(admin)
    finally:
        store.close()


def test_redis_witness_with_an_append_only_acl_user(
    make_store: Callable[..., StoreEnv], redis_stream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented least-privilege user: XADD and XRANGE on the witness streams, nothing else."""
    import redis

    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    user, password = f"kgwitness-{secrets.token_hex(4)}", secrets.token_hex(16)
    stream = f"kerasguard:audit:test-{secrets.token_hex(4)}"
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~kerasguard:audit:*", "+xadd", "+xrange"
    )
    monkeypatch.setenv("KERASGUARD_WITNESS_PASSWORD", password)
    url = f"redis://{user}@{REDIS_HOST}:{REDIS_PORT}/0?stream={stream}"
    store, admin_token = ModelStore.init(
        tmp_path / "acl-store", MasterKey.generate(), policy=POLICY, witness=url
    )
    try:
        store.create_token(admin_token, "reader", "team")
        assert store.audit_verify(admin_token).witnessed_seq == 2
        limited = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, username=user, password=password)
        for command in (("XTRIM", stream, "MAXLEN", "0"), ("DEL", stream), ("XDEL", stream, "0-1")):
            with pytest.raises(redis.ResponseError, match="no permissions"):
                limited.execute_command(*command)
    finally:
        store.close()
        admin.delete(stream)
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_cli_audit_verify_exit_codes(
    sqlite_env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sqlite_env
    activity(env, keras_models["benign"], versions=1)
    key_file = tmp_path / "master.key"
    from kerasguard.store import write_key_file

    write_key_file(key_file, env.master)
    monkeypatch.setenv("KERASGUARD_STORE_TOKEN", env.admin)
    args = ["store", "audit", "verify", "--store", str(env.root), "--key-file", str(key_file)]
    env.store.close()
    runner = CliRunner()
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "audit log intact" in ok.output and "confirms #" in ok.output

    unreachable = runner.invoke(app, [*args, "--witness", f"file:{tmp_path}/nowhere/w.jsonl"])
    assert unreachable.exit_code == 2, unreachable.output
    assert "intact" not in unreachable.output and "cannot read the audit witness" in unreachable.output

    env.reopen()
    first, last = cut_tail(env, 2)
    env.store.close()
    cut = runner.invoke(app, args)
    assert cut.exit_code == 1, cut.output
    assert f"#{first}..#{last} were deleted from the end" in " ".join(cut.output.split())


def test_bad_witness_url_is_refused(tmp_path: Path) -> None:
    for url in ("http://example.com/w", "file:relative/path"):
        with pytest.raises(StoreError, match="witness"):
            ModelStore.init(tmp_path / secrets.token_hex(4), MasterKey.generate(), policy=POLICY, witness=url)


def test_cli_init_with_a_witness_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kerasguard.store import write_key_file

    key_file = tmp_path / "master.key"
    write_key_file(key_file, MasterKey.generate())
    (tmp_path / "witness-host").mkdir()
    witness = tmp_path / "witness-host" / "store-a.jsonl"
    runner = CliRunner()
    root = tmp_path / "store"
    base = ["--store", str(root), "--key-file", str(key_file)]
    missing = runner.invoke(app, ["store", "init", *base, "--witness", f"file:{tmp_path}/nowhere/w.jsonl"])
    assert missing.exit_code == 2 and not root.exists(), missing.output
    made = runner.invoke(app, ["store", "init", *base, "--witness", f"file:{witness}"])
    assert made.exit_code == 0, made.output
    admin = made.output.strip().splitlines()[-1]
    assert f'witness = "file:{witness}"' in (root / "store.toml").read_text()
    assert not (root / "audit-witness.jsonl").exists()
    assert json.loads(witness.read_text().splitlines()[0])["seq"] == 1
    monkeypatch.setenv("KERASGUARD_STORE_TOKEN", admin)
    verified = runner.invoke(app, ["store", "audit", "verify", *base])
    assert verified.exit_code == 0, verified.output
    assert f"witness file:{witness} confirms #1" in " ".join(verified.output.split())
