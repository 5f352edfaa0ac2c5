"""Admission: sources, digests, signatures and the scan decide between admitted and quarantine."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import SCAN_POLICY, SOURCE, StoreEnv
from kerasguard.errors import StoreError, UntrustedSourceError
from kerasguard.findings import Severity
from kerasguard.policy import Policy, Store, Trust


@pytest.fixture
def scan_env(make_store: Callable[..., StoreEnv]) -> StoreEnv:
    return make_store(policy=SCAN_POLICY)


def models_in_db(env: StoreEnv) -> list[tuple[str, str]]:
    with env.store.engine.begin() as conn:
        return [tuple(r) for r in conn.execute(text("select name, status from models")).all()]  # type: ignore[misc]


def test_benign_keras_model_is_admitted(scan_env: StoreEnv, keras_models: dict[str, Path]) -> None:
    info = scan_env.store.push(
        scan_env.token("publisher"), keras_models["benign"], name="mlp", version="1", source=SOURCE
    )
    assert info.status == "admitted", info.reason
    assert info.scan_report is not None and info.scan_report["complete"]


def test_incomplete_or_failing_scan_quarantines(
    scan_env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    """Whatever the scan lacks or finds, a Lambda model is never admitted; readers cannot see or pull it."""
    env = scan_env
    pub = env.token("publisher")
    reader = env.token("reader")
    admin = env.token("admin")
    info = env.store.push(pub, keras_models["lambda"], name="lam", version="1", source=SOURCE)
    assert info.status == "quarantined"
    assert info.reason
    assert env.store.list(reader) == []
    with pytest.raises(StoreError, match="quarantined"):
        env.store.pull(reader, "lam", "1", tmp_path / "x.keras")
    with pytest.raises(StoreError, match="no model"):
        env.store.show(reader, "lam", "1")
    assert not (tmp_path / "x.keras").exists()
    listed = env.store.list(admin, include_quarantined=True)
    assert [(m.name, m.status) for m in listed] == [("lam", "quarantined")]
    shown = env.store.show(admin, "lam", "1")
    assert shown.scan_report is not None and shown.admission is not None
    assert shown.admission["checks"]["scan"] == "failed"
    # kept for investigation: an admin can pull it explicitly
    copy = env.store.pull(admin, "lam", "1", tmp_path / "inspect.keras", allow_quarantined=True)
    assert copy.read_bytes() == keras_models["lambda"].read_bytes()


def test_lambda_model_quarantined_for_a_high_finding(
    scan_env: StoreEnv, keras_models: dict[str, Path]
) -> None:
    info = scan_env.store.push(
        scan_env.token("publisher"), keras_models["lambda"], name="lam", version="1", source=SOURCE
    )
    assert info.status == "quarantined"
    assert info.scan_report is not None
    findings = [f for file in info.scan_report["files"] for f in file["findings"]]
    assert any(f["rule_id"] == "KG101" and Severity.parse(f["severity"]) >= Severity.HIGH for f in findings)


def test_release_needs_admin_and_reason(
    scan_env: StoreEnv, keras_models: dict[str, Path], tmp_path: Path
) -> None:
    env = scan_env
    pub = env.token("publisher")
    admin = env.token("admin")
    env.store.push(pub, keras_models["lambda"], name="lam", version="1", source=SOURCE)
    with pytest.raises(StoreError, match="reason is required"):
        env.store.release(admin, "lam", "1", "  ")
    released = env.store.release(admin, "lam", "1", "reviewed: the Lambda doubles its input")
    assert released.status == "admitted"
    assert released.reason == "released: reviewed: the Lambda doubles its input"
    assert env.store.pull(pub, "lam", "1", tmp_path / "lam.keras").exists()
    with env.store.engine.begin() as conn:
        row = conn.execute(text("select actor, detail from audit where action = 'release'")).one()
    assert row[1] == "reviewed: the Lambda doubles its input"


@pytest.mark.parametrize(
    "source",
    [
        "https://huggingface.co/evil/models",
        "https://huggingface.co/acmeevil/x",
        "https://huggingface.co.evil.example/acme/x",
        "http://huggingface.co/acme/x",
        "https://user:pw@huggingface.co/acme/x",
        "https://huggingface.co/acme/../evil/x",
        "https://huggingface.co/acme/%2e%2e/evil",
        "https://huggingface.co/acme/x?y=1",
        "/home/alice/models/x.keras",
        "file:///home/alice/x.keras",
        "../../x.keras",
        "",
    ],
)
def test_unapproved_sources_are_refused_and_audited(
    sqlite_env: StoreEnv, keras_models: dict[str, Path], source: str
) -> None:
    env = sqlite_env
    with pytest.raises((UntrustedSourceError, StoreError)):
        env.store.push(env.token("publisher"), keras_models["benign"], name="mlp", version="1", source=source)
    assert models_in_db(env) == []
    assert list((env.root / "blobs").iterdir()) == []
    with env.store.engine.begin() as conn:
        results = [r[0] for r in conn.execute(text("select result from audit where action = 'push'")).all()]
    assert results == ["refused"]


def test_policy_without_sources_denies_every_push(
    make_store: Callable[..., StoreEnv], keras_models: dict[str, Path]
) -> None:
    env = make_store(policy=Policy(trust=Trust(allow_unsafe_skip_scan=True)))
    with pytest.raises(UntrustedSourceError, match="lists no approved sources"):
        env.store.push(env.token("publisher"), keras_models["benign"], name="m", version="1", source=SOURCE)


def test_client_path_is_never_stored(sqlite_env: StoreEnv, keras_models: dict[str, Path]) -> None:
    env = sqlite_env
    env.store.push(env.token("publisher"), keras_models["benign"], name="mlp", version="1", source=SOURCE)
    folder = str(keras_models["benign"].parent)
    with env.store.engine.begin() as conn:
        for table in ("models", "model_details", "audit"):
            for row in conn.execute(text(f"select * from {table}")).all():
                assert not any(folder in str(v) for v in row), (table, row)


def test_digest_policy(make_store: Callable[..., StoreEnv], keras_models: dict[str, Path]) -> None:
    import hashlib

    policy = dataclasses.replace(SCAN_POLICY, trust=Trust(require="digest", allow_unsafe_skip_scan=True))
    env = make_store(policy=policy)
    pub = env.token("publisher")
    model = keras_models["benign"]
    good = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
    missing = env.store.push(pub, model, name="m", version="1", source=SOURCE)
    assert missing.status == "quarantined" and "expected digest" in (missing.reason or "")
    wrong = env.store.push(
        pub, model, name="m", version="2", source=SOURCE, expect_digest="sha256:" + "a" * 64
    )
    assert wrong.status == "quarantined" and "does not match" in (wrong.reason or "")
    right = env.store.push(pub, model, name="m", version="3", source=SOURCE, expect_digest=good.upper())
    assert right.status == "admitted", right.reason


def test_signature_required_but_missing(
    make_store: Callable[..., StoreEnv], keras_models: dict[str, Path]
) -> None:
    policy = dataclasses.replace(SCAN_POLICY, trust=Trust(require="signature", allow_unsafe_skip_scan=True))
    env = make_store(policy=policy)
    info = env.store.push(
        env.token("publisher"), keras_models["benign"], name="m", version="1", source=SOURCE
    )
    assert info.status == "quarantined"
    assert "requires a signature" in (info.reason or "")


def test_bad_signature_quarantines(
    make_store: Callable[..., StoreEnv], keras_models: dict[str, Path], tmp_path: Path
) -> None:
    policy = dataclasses.replace(SCAN_POLICY, trust=Trust(require="signature", allow_unsafe_skip_scan=True))
    env = make_store(policy=policy)
    sig = tmp_path / "garbage.sig"
    sig.write_text('{"mediaType": "nonsense"}')
    info = env.store.push(
        env.token("publisher"), keras_models["benign"], name="m", version="1", source=SOURCE, signature=sig
    )
    assert info.status == "quarantined"
    assert info.admission is not None and info.admission["checks"]["signature"] in ("failed", "error")


def test_signed_model_is_admitted_and_reverified_on_pull(
    make_store: Callable[..., StoreEnv], keras_models: dict[str, Path], tmp_path: Path
) -> None:
    from kerasguard import integrity
    from kerasguard.policy import TrustedKey

    model = tmp_path / "signed.keras"
    model.write_bytes(keras_models["benign"].read_bytes())
    integrity.generate_keypair(tmp_path / "priv.pem", tmp_path / "pub.pem")
    integrity.sign(model, tmp_path / "priv.pem", model_name="m", model_version="1", signer="ci")
    trust = Trust(
        require="signature",
        keys=(TrustedKey(name="ci", public_key=str(tmp_path / "pub.pem")),),
        allow_unsafe_skip_scan=True,
    )
    env = make_store(policy=dataclasses.replace(SCAN_POLICY, trust=trust))
    pub = env.token("publisher")
    info = env.store.push(pub, model, name="m", version="1", source=SOURCE)
    assert info.status == "admitted", info.reason
    assert info.signer
    assert env.store.pull(pub, "m", "1", tmp_path / "out.keras").read_bytes() == model.read_bytes()
    # the same signed bytes under another name: the signature binds the name
    other = env.store.push(pub, model, name="other", version="1", source=SOURCE)
    assert other.status == "quarantined"


def test_directory_and_missing_paths_refused(sqlite_env: StoreEnv, tmp_path: Path) -> None:
    env = sqlite_env
    pub = env.token("publisher")
    with pytest.raises(StoreError, match="not a regular file"):
        env.store.push(pub, tmp_path, name="d", version="1", source=SOURCE)
    with pytest.raises(StoreError, match="cannot read"):
        env.store.push(pub, tmp_path / "nope.keras", name="d", version="1", source=SOURCE)
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):  # and does not hang waiting for a writer
        env.store.push(pub, fifo, name="d", version="1", source=SOURCE)
    assert models_in_db(env) == []


@pytest.mark.parametrize(
    ("name", "version"), [("../x", "1"), ("a/b", "1"), ("m", "1 2"), ("", "1"), ("m", "")]
)
def test_bad_names_refused(
    sqlite_env: StoreEnv, keras_models: dict[str, Path], name: str, version: str
) -> None:
    with pytest.raises(StoreError, match="invalid"):
        sqlite_env.store.push(
            sqlite_env.token("publisher"), keras_models["benign"], name=name, version=version, source=SOURCE
        )


def test_scanner_crash_quarantines(
    scan_env: StoreEnv, keras_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kerasguard.scanning.engine

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(kerasguard.scanning.engine, "scan", broken)
    info = scan_env.store.push(
        scan_env.token("publisher"), keras_models["benign"], name="m", version="1", source=SOURCE
    )
    assert info.status == "quarantined"
    assert "scan failed: RuntimeError: reader bug" in (info.reason or "")


def test_stages_come_from_policy(make_store: Callable[..., StoreEnv], keras_models: dict[str, Path]) -> None:
    policy = dataclasses.replace(
        SCAN_POLICY,
        store=Store(sources=SCAN_POLICY.store.sources, stages=("dev", "prod"), default_stage="dev"),
        trust=Trust(allow_unsafe_skip_scan=True),
    )
    env = make_store(policy=policy)
    pub = env.token("publisher")
    assert env.store.push(pub, keras_models["benign"], name="m", version="1", source=SOURCE).stage == "dev"
    with pytest.raises(StoreError, match="unknown stage"):
        env.store.push(pub, keras_models["benign"], name="m", version="2", source=SOURCE, stage="staging")
