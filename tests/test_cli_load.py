"""`kerasguard load` and `kerasguard sandbox-info`: exit codes, outputs and the load event."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kerasguard.cli import app

runner = CliRunner()
X = np.linspace(-1, 1, 16, dtype="float32").reshape(2, 8)


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SKIP_SCAN = "[trust]\nallow_unsafe_skip_scan = true\n[sandbox]\nmemory_mb = 2048\n"


def read_event(path: Path) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    assert len(lines) == 1, lines
    event: dict[str, Any] = json.loads(lines[0])
    return event


def test_sandbox_info_lists_every_layer() -> None:
    result = runner.invoke(app, ["sandbox-info", "--format", "json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    names = {layer["name"] for layer in doc["layers"]}
    assert {"memory-cgroup", "network-namespace", "mount-namespace", "landlock", "seccomp"} <= names
    assert set(doc["required"]) <= names
    assert doc["refused_for"] == [n for n in doc["required"] if n in doc["missing"]]
    text = runner.invoke(app, ["sandbox-info"])
    assert text.exit_code == 0 and "landlock" in text.stdout


def test_untrusted_source_exits_1_and_logs_the_event(tmp_path: Path) -> None:
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK\x03\x04 not really a model")
    policy = write_policy(tmp_path / "kerasguard.toml", f'[trust]\nsources = ["{trusted}"]\n')
    events = tmp_path / "events.jsonl"
    result = runner.invoke(app, ["load", str(model), "--policy", str(policy), "--events", str(events)])
    assert result.exit_code == 1
    event = read_event(events)
    assert event["verdict"] == "refused" and event["failure"]["reason"] == "untrusted-source"


def test_digest_mismatch_exits_1(tmp_path: Path) -> None:
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK\x03\x04 bytes")
    events = tmp_path / "events.jsonl"
    digest = "sha256:" + "ab" * 32
    result = runner.invoke(app, ["load", str(model), "--digest", digest, "--events", str(events)])
    assert result.exit_code == 1
    assert read_event(events)["failure"]["reason"] == "integrity"


def test_pickled_inputs_are_refused_before_loading(tmp_path: Path) -> None:
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK")
    result = runner.invoke(app, ["load", str(model), "--predict", str(inputs)])
    assert result.exit_code == 2


def test_bad_policy_file_exits_2(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "kerasguard.toml", "[sandbox]\nmemory_mb = -1\n")
    result = runner.invoke(app, ["load", str(tmp_path / "m.keras"), "--policy", str(policy)])
    assert result.exit_code == 2


@pytest.mark.keras
@pytest.mark.slow
def test_load_and_predict_writes_the_same_numbers_as_keras(tmp_path: Path) -> None:
    import keras

    from support import kmodels

    model_path = tmp_path / "mlp.keras"
    kmodels.mlp().save(model_path)
    expected = keras.saving.load_model(model_path).predict(X, verbose=0)
    inputs, out, events = tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "events.jsonl"
    np.save(inputs, X)
    policy = write_policy(tmp_path / "kerasguard.toml", SKIP_SCAN)
    digest = "sha256:" + hashlib.sha256(model_path.read_bytes()).hexdigest()
    args = ["load", str(model_path), "--policy", str(policy), "--digest", digest]
    args += ["--predict", str(inputs), "--output", str(out), "--events", str(events), "--summary"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out, allow_pickle=False), expected, rtol=1e-6, atol=1e-6)
    assert "in the sandbox" in result.stdout and "dense" in result.stdout
    event = read_event(events)
    assert event["verdict"] == "loaded" and event["verification"] == "digest"
    assert event["peak_rss_bytes"] > 0

    # A prediction error after a successful load is an error (2), not a refusal.
    np.save(inputs, np.ones((2, 5), "float32"))
    bad = runner.invoke(app, ["load", str(model_path), "--policy", str(policy), "--predict", str(inputs)])
    assert bad.exit_code == 2
