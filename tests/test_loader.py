"""load_model end to end: refusals never reach the child, what loads is contained, one event per load."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kerasguard
from kerasguard.errors import (
    IntegrityError,
    PolicyError,
    SandboxError,
    UnsafeModelError,
    UntrustedSourceError,
)
from kerasguard.loading.events import EVENT_ATTR
from kerasguard.policy import Policy, policy_from_mapping
from kerasguard.sandbox.capabilities import probe
from kerasguard.scanning.engine import scan

X = np.linspace(-1, 1, 16, dtype="float32").reshape(2, 8)


def skip_scan_policy(**sandbox: Any) -> Policy:
    """The explicit test-only policy: scanning off, so the sandbox alone has to hold."""
    return policy_from_mapping(
        {"trust": {"allow_unsafe_skip_scan": True, "allow_unsafe_deserialization": True}, "sandbox": sandbox},
        source="test-only-policy",
    )


def only_event(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    records = [r for r in caplog.records if hasattr(r, EVENT_ATTR)]
    assert len(records) == 1, [r.getMessage() for r in records]
    data: dict[str, Any] = getattr(records[0], EVENT_ATTR)
    assert json.loads(records[0].getMessage()) == json.loads(json.dumps(data, default=str))
    return data


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support import kmodels

    path = tmp_path_factory.mktemp("loader") / "mlp.keras"
    kmodels.mlp().save(path)
    return path


@pytest.fixture(scope="module")
def mlp_expected(mlp_file: Path) -> np.ndarray:
    import keras

    return np.asarray(keras.saving.load_model(mlp_file).predict(X, verbose=0))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- refusals: nothing reaches a child -----------------------------------------------------------

pytestmark = [pytest.mark.keras, pytest.mark.slow]  # most tests start a sandbox child


def test_source_outside_the_trusted_prefix_is_refused(
    tmp_path: Path, mlp_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kerasguard.events")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "m.keras").symlink_to(mlp_file)
    policy = policy_from_mapping({"trust": {"sources": [str(trusted)]}})
    with pytest.raises(UntrustedSourceError):
        kerasguard.load_model(trusted / "m.keras", policy=policy)
    event = only_event(caplog)
    assert event["verdict"] == "refused"
    assert event["failure"]["reason"] == "untrusted-source"
    assert event["child"] == {} and event["sha256"] is None


def test_digest_mismatch_is_refused_before_the_scan(mlp_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kerasguard.events")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        kerasguard.load_model(mlp_file, policy=skip_scan_policy(), digest="sha256:" + "0" * 64)
    event = only_event(caplog)
    assert event["verdict"] == "refused" and event["failure"]["reason"] == "integrity"
    assert event["sha256"] == sha256(mlp_file)
    assert event["scan"] == "not-run" and event["child"] == {}


def test_policy_requiring_a_digest_refuses_a_load_without_one(mlp_file: Path) -> None:
    policy = policy_from_mapping({"trust": {"require": "digest", "allow_unsafe_skip_scan": True}})
    with pytest.raises(IntegrityError, match="requires a pinned digest"):
        kerasguard.load_model(mlp_file, policy=policy)


def test_model_failing_the_scan_never_reaches_the_child(
    tmp_path: Path, mlp_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from support import attacks

    caplog.set_level(logging.INFO, logger="kerasguard.events")
    evil = attacks.lambda_bytecode(mlp_file, tmp_path / "evil.keras")
    marker = Path("/tmp/kerasguard-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(UnsafeModelError) as err:
        kerasguard.load_model(evil, policy=Policy())
    assert str(evil) in err.value.message
    event = only_event(caplog)
    assert event["verdict"] == "refused"
    assert event["failure"]["reason"] in ("findings", "incomplete-scan")
    assert event["child"] == {} and event["sandbox"] == {}
    assert not marker.exists()


def test_unsafe_switches_need_the_policy(mlp_file: Path) -> None:
    with pytest.raises(PolicyError, match="safe_mode=False"):
        kerasguard.load_model(mlp_file, safe_mode=False)
    with pytest.raises(PolicyError, match="in-process"):
        kerasguard.load_model(mlp_file, sandbox=False)


# -- loads ----------------------------------------------------------------------------------------


def test_verified_model_loads_in_the_sandbox_and_matches_keras(
    mlp_file: Path, mlp_expected: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kerasguard.events")
    with kerasguard.load_model(mlp_file, policy=skip_scan_policy(), digest=sha256(mlp_file)) as model:
        assert isinstance(model, kerasguard.SandboxedModel)
        np.testing.assert_allclose(model.predict(X), mlp_expected, rtol=1e-6, atol=1e-6)
        event = only_event(caplog)
        assert model.event == event
    assert event["verdict"] == "loaded" and event["failure"] is None
    assert event["verification"] == "digest" and event["sha256"] == sha256(mlp_file)
    assert event["scan"] == "skipped" and "trust.allow_unsafe_skip_scan" in event["unsafe_switches"]
    assert event["mode"] == "sandbox" and event["safe_mode"] is True
    assert event["peak_rss_bytes"] > 50 << 20
    # The event keeps a memory summary; the ~20 KB curve only on request (sandbox.memory_samples).
    assert event["child"]["memory"]["samples"] >= 2
    assert event["child"]["memory"]["peak_rss_bytes"] > 50 << 20
    assert "memory_samples" not in event["child"]
    assert set(event["sandbox"]["active"]) == set(probe().active)
    assert "UNSAFE: scan of" in caplog.text


def test_clean_model_passes_the_real_scan_and_loads(
    mlp_file: Path, mlp_expected: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    assert scan(mlp_file).complete
    caplog.set_level(logging.INFO, logger="kerasguard.events")
    with kerasguard.load_model(mlp_file) as model:
        np.testing.assert_allclose(model.predict(X), mlp_expected, rtol=1e-6, atol=1e-6)
    assert only_event(caplog)["scan"] in ("clean", "findings-below-threshold")


def test_custom_objects_are_imported_by_the_child(tmp_path: Path) -> None:
    from support import kmodels

    path = tmp_path / "custom.keras"
    built = kmodels.custom_layer()
    built.save(path)
    x = np.ones((2, 4), "float32")
    expected = built.predict(x, verbose=0)
    policy = skip_scan_policy()
    with kerasguard.load_model(
        path, policy=policy, custom_objects={"ScaleLayer": kmodels.ScaleLayer}
    ) as model:
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)
    with pytest.raises(kerasguard.KerasGuardError, match="not importable"):
        kerasguard.load_model(path, policy=policy, custom_objects={"f": lambda v: v})


def test_in_process_mode_returns_a_keras_model_when_the_policy_allows_it(
    mlp_file: Path, mlp_expected: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    import keras

    caplog.set_level(logging.INFO)
    policy = policy_from_mapping(
        {"trust": {"allow_unsafe_skip_scan": True}, "sandbox": {"allow_unsafe_in_process": True}}
    )
    model = kerasguard.load_model(mlp_file, policy=policy, sandbox=False)
    assert isinstance(model, keras.Model)
    np.testing.assert_allclose(model.predict(X, verbose=0), mlp_expected, rtol=1e-6)
    event = only_event(caplog)
    assert event["mode"] == "in-process" and "sandbox.allow_unsafe_in_process" in event["unsafe_switches"]
    assert "UNSAFE: loading" in caplog.text


# -- what the sandbox has to contain ------------------------------------------------------------


def test_cve_2026_0897_bomb_is_contained_by_the_memory_limit(
    tmp_path: Path, mlp_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real shape bomb, scanning switched off: the child dies at the limit, the parent carries on."""
    from support import attacks

    caplog.set_level(logging.INFO, logger="kerasguard.events")
    bomb = attacks.shape_bomb(mlp_file, tmp_path / "bomb.keras", gib=3.0)
    assert bomb.stat().st_size < 100_000
    started = time.monotonic()
    with pytest.raises(SandboxError) as err:
        kerasguard.load_model(bomb, policy=skip_scan_policy(memory_mb=2560, memory_samples=True))
    elapsed = time.monotonic() - started
    assert err.value.limit == "memory"
    assert "memory limit of 2560 MiB" in err.value.message
    assert elapsed < 60
    event = only_event(caplog)
    assert event["verdict"] == "failed"
    assert event["failure"] == {"stage": "sandbox", "reason": "memory", "message": err.value.message}
    assert event["child"]["failure"] == "memory"
    assert event["child"]["memory_samples"], "memory growth during loading is sampled"
    # The parent is alive and can still load a good model afterwards.
    with kerasguard.load_model(mlp_file, policy=skip_scan_policy()) as model:
        assert model.predict(X).shape == (2, 3)


def test_lambda_payload_with_unsafe_deserialization_is_contained(
    tmp_path: Path, mlp_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    from support import sandbox_payloads as payloads

    caplog.set_level(logging.INFO, logger="kerasguard.events")
    info = probe()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    outside, exec_marker = tmp_path / "written-outside", tmp_path / "exec-ran"
    evil = payloads.lambda_model(
        mlp_file,
        tmp_path / "evil.keras",
        payloads.escape_attempts,
        port=server.getsockname()[1],
        secret=str(secret),
        outside=str(outside),
        exec_marker=str(exec_marker),
    )
    try:
        with kerasguard.load_model(evil, policy=skip_scan_policy(), safe_mode=False) as model:
            sock, read, write, run = (float(c) for c in model.predict(X)[0])
        if info.is_active("network-namespace") or info.is_active("seccomp"):
            assert sock != payloads.SUCCEEDED
            with pytest.raises(OSError):
                server.accept()
        if info.is_active("mount-namespace"):  # the host's /tmp does not exist in the child's root
            assert read == errno.ENOENT and write == errno.ENOENT
        elif info.is_active("landlock"):
            assert read == errno.EACCES and write == errno.EACCES
        if info.is_active("seccomp") or info.is_active("landlock"):
            assert run != payloads.SUCCEEDED
        assert not outside.exists() and not exec_marker.exists()
    finally:
        server.close()
    event = only_event(caplog)
    assert event["safe_mode"] is False
    assert "trust.allow_unsafe_deserialization" in event["unsafe_switches"]


def test_signed_model_loads_and_names_its_signer(tmp_path: Path, mlp_file: Path) -> None:
    from kerasguard.integrity import generate_keypair, sign

    model = tmp_path / "signed.keras"
    model.write_bytes(mlp_file.read_bytes())
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    sign(model, tmp_path / "k.pem", model_name="mlp", model_version="1")
    policy = skip_scan_policy()
    with kerasguard.load_model(
        model, policy=policy, key=tmp_path / "k.pub.pem", model_name="mlp", model_version="1"
    ) as loaded:
        assert loaded.event is not None
        assert loaded.event["verification"] == "signature"
        assert str(loaded.event["signer"]).startswith("key:")
    with pytest.raises(IntegrityError):  # the signature is for version 1
        kerasguard.load_model(model, policy=policy, key=tmp_path / "k.pub.pem", model_version="2")
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    with pytest.raises(IntegrityError):
        kerasguard.load_model(model, policy=policy, key=tmp_path / "other.pub.pem")
    model.write_bytes(mlp_file.read_bytes() + b"\0")  # tampered after signing
    with pytest.raises(IntegrityError):
        kerasguard.load_model(model, policy=policy, key=tmp_path / "k.pub.pem")
