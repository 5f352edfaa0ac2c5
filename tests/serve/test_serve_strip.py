"""STRIP as a per-model input check in kerasguard serve: a real backdoored model, a real gateway.

A digits MLP trained with a planted 2x2 trigger (tests/support/digitsets.py: 10% of class 0's size, stamped
samples of other classes relabelled 0), a STRIP detector fitted on clean data at 5% FPR and attached at
push (``store push --detector strip.npz``). The sandboxed worker computes each instance's entropy under
superimposition in the same round trip as the prediction. Tenant ``acme`` is served ``digits`` (the
detector attached), ``plain`` (the same model, none), ``tampered`` (the detector's threshold edited in
the attachment, digest not redone) and ``foreign`` (a detector attached for another model's digest):
the last two are refused, so not served.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from support.servehelp import SOURCE, STAGE, Gateway, World, auth, start_gateway, stop_gateway, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.keras]

SERVE = {"poll_seconds": 1.0, "max_instances": 128, "max_batch": 16, "namespaces": ["acme"]}
ENTROPY = "X-KerasGuard-STRIP-Entropy"
FLAGGED = "X-KerasGuard-STRIP-Flagged"
TARGET = 0


class Backdoored:
    """The poisoned model's file, its STRIP detector file and held-out clean and triggered inputs."""

    def __init__(self, folder: Path) -> None:
        from kerasguard.probe.strip import fit_strip
        from support import digitsets as digits

        model, (xtr, _ytr, xte, yte) = digits.build("mlp", poisoned=True, seed=0, epochs=40)
        self.model_path = folder / "digits.keras"
        model.save(self.model_path)
        self.sha = hashlib.sha256(self.model_path.read_bytes()).hexdigest()
        self.clean = xte
        self.triggered = digits.stamp(xte[yte != TARGET])
        # the model really is backdoored: the trigger sends most inputs of other classes to the target
        assert (model.predict(self.triggered, verbose=0).argmax(1) == TARGET).mean() > 0.8
        detector = fit_strip(model, xtr, fpr=0.05, max_overlay=100, seed=0, model_sha256=self.sha)
        self.threshold = detector.threshold
        self.detector_path = folder / "strip.npz"
        detector.save(self.detector_path)


@pytest.fixture(scope="module")
def backdoored(tmp_path_factory: pytest.TempPathFactory) -> Backdoored:
    pytest.importorskip("keras")
    pytest.importorskip("fastapi")
    pytest.importorskip("sklearn")
    return Backdoored(tmp_path_factory.mktemp("strip-model"))


def tampered(path: Path) -> bytes:
    """The detector file with the threshold in its header set to 0 (nothing would be flagged), digest
    not redone: what an attacker who can write the store's attachment bytes would try."""
    with np.load(path, allow_pickle=False) as npz:
        overlay, meta = npz["overlay"], json.loads(npz["meta"].tobytes())
    meta["threshold"] = 0.0
    out = io.BytesIO()
    np.savez(out, overlay=overlay, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    return out.getvalue()


def foreign(path: Path, folder: Path) -> bytes:
    """A well-formed detector (digest redone) that says it was fitted on another model."""
    import dataclasses

    from kerasguard.probe.strip import StripDetector

    other = dataclasses.replace(StripDetector.load(path), model_sha256="0" * 64)
    other.save(folder / "foreign.npz")
    return (folder / "foreign.npz").read_bytes()


@pytest.fixture(scope="module")
def world(backdoored: Backdoored, tmp_path_factory: pytest.TempPathFactory) -> World:
    from typer.testing import CliRunner

    from kerasguard.cli.app import app
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore, NewAttachment
    from kerasguard.store.keys import write_key_file

    folder = tmp_path_factory.mktemp("strip-world")
    key_file = folder / "master.key"
    master = write_key_file(key_file)
    store, admin = ModelStore.init(folder / "store", master, policy=Policy(store=Store(sources=(SOURCE,))))
    world = World(folder / "store", key_file, admin, folder=folder)
    with store:
        publisher = store.create_token(admin, "publisher", "acme", "ci")
        world.keys["acme"] = store.create_token(admin, "invoker", "acme", "client")
    policy_file = write_policy(folder / "push.toml", {})
    runner = CliRunner()
    env = {"KERASGUARD_STORE_TOKEN": publisher, "KERASGUARD_MASTER_KEY_FILE": str(key_file)}
    common = ["--store", str(world.root), "--policy", str(policy_file), "--version", "1"]

    def push(name: str, *extra: str) -> Any:
        args = ["store", "push", str(backdoored.model_path), "--name", name, "--source", f"{SOURCE}/{name}"]
        return runner.invoke(app, [*args, *common, *extra], env=env)

    result = push("digits", "--detector", str(backdoored.detector_path))
    assert result.exit_code == 0, result.output
    assert push("plain").exit_code == 0
    bad = {
        "tampered": tampered(backdoored.detector_path),
        "foreign": foreign(backdoored.detector_path, folder),
    }
    with world.store() as opened:
        # A publisher who bypasses the CLI's checks can attach any bytes: the gateway must refuse these.
        for name, data in bad.items():
            info = opened.push(
                publisher,
                backdoored.model_path,
                name=name,
                version="1",
                source=f"{SOURCE}/{name}",
                attachments=[NewAttachment("strip", "strip.npz", data, {"detector": "strip"})],
            )
            assert info.status == "admitted", info.reason
        for name in ("digits", "plain", "tampered", "foreign"):
            opened.promote(publisher, name, "1", STAGE)
    show = ["store", "show", "--store", str(world.root), "--policy", str(policy_file)]
    shown = runner.invoke(app, [*show, "digits", "1"], env=env)
    assert shown.exit_code == 0 and "STRIP (threshold" in shown.output, shown.output
    shown = runner.invoke(app, [*show, "tampered", "1"], env=env)
    assert shown.exit_code == 1 and "REFUSED" in shown.output and "digest mismatch" in shown.output
    return world


@pytest.fixture(scope="module")
def gw(world: World) -> Iterator[Gateway]:
    gateway = start_gateway(world, "flag", {**SERVE, "strip_header": True})
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def predict(gw: Gateway, key: str, model: str, x: np.ndarray) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/models/{model}:predict", json={"instances": x.tolist()}, headers=auth(key), timeout=60
    )


def metric(gw: Gateway, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(gw.url + "/metrics", timeout=10).text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def entropies(gw: Gateway, key: str, x: np.ndarray) -> tuple[np.ndarray, set[int]]:
    """The entropy of every instance, and the flagged indices, over requests of 16 instances."""
    values: list[float] = []
    flagged: set[int] = set()
    for start_at in range(0, len(x), 16):
        response = predict(gw, key, "digits", x[start_at : start_at + 16])
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == len(x[start_at : start_at + 16])
        values += [float(v) for v in response.headers[ENTROPY].split(",")]
        marks = response.headers.get(FLAGGED)
        flagged |= {start_at + int(i) for i in marks.split(",")} if marks else set()
    return np.array(values), flagged


def test_triggered_inputs_flagged_clean_ones_mostly_not(
    gw: Gateway, world: World, backdoored: Backdoored
) -> None:
    key = world.keys["acme"]
    clean, clean_flags = entropies(gw, key, backdoored.clean[:160])
    triggered, trig_flags = entropies(gw, key, backdoored.triggered[:160])
    # the flags are exactly the instances below the detector's threshold
    assert clean_flags == set(np.flatnonzero(clean < backdoored.threshold).tolist())
    assert trig_flags == set(np.flatnonzero(triggered < backdoored.threshold).tolist())
    assert len(clean_flags) / len(clean) <= 0.12  # fitted at 5% FPR, on inputs it never saw
    assert len(trig_flags) / len(triggered) >= 0.8
    assert metric(gw, "kerasguard_serve_strip_flags_total", model="digits") == len(clean_flags) + len(
        trig_flags
    )
    assert metric(gw, "kerasguard_serve_strip_entropy_count", model="digits") == 320
    logged = [
        line for line in gw.access_lines() if line.get("model") == "digits" and line.get("strip_flagged")
    ]
    assert sum(line["strip_flagged"] for line in logged) == len(clean_flags) + len(trig_flags)


def test_overlays_are_drawn_afresh_per_batch(gw: Gateway, world: World, backdoored: Backdoored) -> None:
    one = backdoored.clean[:8]
    first, _ = entropies(gw, world.keys["acme"], one)
    second, _ = entropies(gw, world.keys["acme"], one)
    assert not np.array_equal(first, second)  # a fixed set of blends would be a target to optimise against


def test_no_detector_no_header(gw: Gateway, world: World, backdoored: Backdoored) -> None:
    response = predict(gw, world.keys["acme"], "plain", backdoored.triggered[:4])
    assert response.status_code == 200
    assert ENTROPY.lower() not in response.headers and FLAGGED.lower() not in response.headers


@pytest.mark.parametrize("name", ["tampered", "foreign"])
def test_bad_attachment_is_refused_fail_closed(
    gw: Gateway, world: World, backdoored: Backdoored, name: str
) -> None:
    response = predict(gw, world.keys["acme"], name, backdoored.clean[:2])
    assert response.status_code == 503, response.text
    assert "strip" not in response.text.lower() and "digest" not in response.text
    assert metric(gw, "kerasguard_serve_detector_errors_total", model=name) >= 1
    refused = [
        json.loads(line)
        for line in gw.log.read_text(errors="replace").splitlines()
        if line.startswith('{"event":"detector_refused"')
    ]
    reasons = [r["reason"] for r in refused if r["model"] == name and r["detector"] == "strip"]
    assert reasons and (
        "digest mismatch" in reasons[0] if name == "tampered" else "another model" in reasons[0]
    )


def test_reject_policy_refuses_triggered_requests(gw: Gateway, world: World, backdoored: Backdoored) -> None:
    gw.stop()  # one gateway at a time on two cores
    strict = start_gateway(world, "reject", {**SERVE, "strip_action": "reject"})
    try:
        key = world.keys["acme"]
        statuses = []
        for row in backdoored.triggered[:20]:
            response = predict(strict, key, "digits", row[None])
            statuses.append(response.status_code)
            if response.status_code == 422:
                assert response.json()["reason"] == "strip" and "predictions" not in response.text
            assert ENTROPY.lower() not in response.headers  # strip_header is off
        assert statuses.count(422) >= 15 and set(statuses) <= {200, 422}
        clean = [predict(strict, key, "digits", row[None]).status_code for row in backdoored.clean[:20]]
        assert clean.count(200) >= 17 and set(clean) <= {200, 422}
        lines = [line for line in strict.access_lines() if line["status"] == 422]
        assert lines and all(line["reason"] == "strip" for line in lines)
        assert metric(strict, "kerasguard_serve_rejects_total", reason="strip") == statuses.count(
            422
        ) + clean.count(422)
    finally:
        stop_gateway(strict)


def test_child_entropy_matches_the_detector_in_process(backdoored: Backdoored) -> None:
    """The sandboxed child's STRIP entropy (one ``serve`` round trip) is the detector's own formula on
    the same blends, and its outputs are the model's; overlay indices out of range are refused."""
    import keras

    import kerasguard
    from kerasguard.errors import KerasGuardError
    from kerasguard.probe.strip import StripDetector, _entropy

    detector = StripDetector.load(backdoored.detector_path)
    reference = keras.saving.load_model(backdoored.model_path)
    x = np.concatenate([backdoored.clean[:4], backdoored.triggered[:4]])
    picks = np.random.default_rng(7).integers(0, len(detector.overlay), (len(x), detector.n_perturb))
    blends = np.clip(x[:, None] + detector.overlay[picks], detector.lo, detector.hi).reshape(-1, 64)
    expected = _entropy(reference.predict(blends, verbose=0).reshape(len(x), detector.n_perturb, -1)).mean(1)
    with kerasguard.load_model(backdoored.model_path) as model:
        model.strip_setup(detector.overlay, detector.lo, detector.hi, logits=False)
        outputs, features, entropy, squeezed = model.serve(x, strip_picks=picks)
        assert features is None and squeezed == ()
        np.testing.assert_allclose(outputs, reference.predict(x, verbose=0), atol=1e-5)
        np.testing.assert_allclose(entropy, expected, atol=1e-4)
        # feature squeezing's copies ride in the same round trip, before the STRIP picks
        copies = [np.round(x * 3) / 3, np.clip(x + 0.25, 0, 1)]
        served = model.serve(x, strip_picks=picks, squeezed=copies)
        assert len(served.squeezed) == 2 and served.entropy is not None
        for copy, got in zip(copies, served.squeezed, strict=True):
            np.testing.assert_allclose(got, reference.predict(copy, verbose=0), atol=1e-5)
        np.testing.assert_allclose(served.outputs, outputs, atol=1e-6)
        with pytest.raises(KerasGuardError, match="shape"):
            model.serve(x, squeezed=[x[:2]])
        with pytest.raises(KerasGuardError, match="at most 4"):
            model.serve(x, squeezed=[x] * 5)
        assert (entropy[4:] < detector.threshold).mean() > (entropy[:4] < detector.threshold).mean()
        with pytest.raises(KerasGuardError):
            model.serve(x, strip_picks=picks + len(detector.overlay))
