"""OOD scores and drift alarms in kerasguard serve: a real gateway, real sandboxed workers.

A digits MLP trained here, a detector (mahalanobis, max-softmax, energy and feature squeezing) fitted
on it and attached at push (a sealed attachment: its own encrypted blob, digest in the MAC-covered
provenance). Tenant ``acme`` is served ``digits`` (with the detector), ``plain`` (the same model, no
detector), ``late`` (no detector until a test attaches one while it is served), ``tampered`` (an inline
detector, as versions before sealed attachments stored them, whose JSON was edited after it was
written) and ``sealedbad`` (a sealed detector whose blob was edited on disk): both refused, so those
versions are not served. Tenant ``quiet`` has ``digits`` with an inline detector (an older store's form,
still read), served by a second gateway without the header.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from support.servehelp import SOURCE, STAGE, Gateway, World, auth, start_gateway, stop_gateway, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.keras]

WINDOW = 40
# small batches: fewer padded sizes to compile at load (predict and the feature path)
SERVE = {"poll_seconds": 1.0, "max_instances": 128, "max_batch": 16, "drift_window": WINDOW}
HEADER = "X-KerasGuard-OOD-Score"


class Digits:
    """The trained model's file, its detector folder, the in-process detector and the data."""

    def __init__(self, folder: Path) -> None:
        import keras
        from sklearn.datasets import load_digits

        from kerasguard.robustness.data import Dataset
        from kerasguard.robustness.detector_files import save_detectors
        from kerasguard.robustness.detectors import fit_detectors

        keras.utils.set_random_seed(0)
        digits = load_digits()
        x = (digits.data / 16.0).astype("float32")
        y = digits.target.astype("int64")
        order = np.random.default_rng(0).permutation(len(x))
        x, y = x[order], y[order]
        self.train_x, self.train_y, self.test_x, self.test_y = x[:1400], y[:1400], x[1400:], y[1400:]
        inputs = keras.Input((64,), name="pixels")
        hidden = keras.layers.Dense(32, activation="relu")(inputs)
        outputs = keras.layers.Dense(10, activation="softmax")(hidden)
        model = keras.Model(inputs, outputs, name="digits")
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(self.train_x, self.train_y, epochs=10, batch_size=32, verbose=0)
        self.model_path = folder / "digits.keras"
        model.save(self.model_path)
        import hashlib

        sha = hashlib.sha256(self.model_path.read_bytes()).hexdigest()
        reference = Dataset(self.train_x, self.train_y, 0.0, 1.0)
        kinds = ["mahalanobis", "max-softmax", "energy", "squeeze"]  # the gateway applies each
        self.detector = fit_detectors(model, reference, kinds=kinds, fpr=0.05, model_sha256=sha)
        self.threshold = self.detector.thresholds["mahalanobis"]
        self.detector_dir = save_detectors(self.detector, folder / "detector")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    pytest.importorskip("keras")
    pytest.importorskip("fastapi")
    pytest.importorskip("sklearn")
    return Digits(tmp_path_factory.mktemp("ood-model"))


def tampered_attachment(detector_dir: Path) -> dict[str, Any]:
    """The attachment of a detector whose threshold was raised in its JSON (digest not redone)."""
    from kerasguard.robustness.detector_files import ATTACHMENT_FORMAT

    doc = json.loads((detector_dir / "detector.json").read_text())
    doc["thresholds"]["mahalanobis"] = 1e12  # nothing would ever alarm
    raw = json.dumps(doc).encode()
    npz = (detector_dir / "detector.npz").read_bytes()
    return {
        "format": ATTACHMENT_FORMAT,
        "json": base64.b64encode(raw).decode(),
        "npz": base64.b64encode(npz).decode(),
    }


@pytest.fixture(scope="module")
def world(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> World:
    from typer.testing import CliRunner

    from kerasguard.cli.app import app
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    folder = tmp_path_factory.mktemp("ood-world")
    key_file = folder / "master.key"
    master = write_key_file(key_file)
    policy = Policy(store=Store(sources=(SOURCE,)))
    store, admin = ModelStore.init(folder / "store", master, policy=policy)
    world = World(folder / "store", key_file, admin, folder=folder)
    with store:
        publisher = store.create_token(admin, "publisher", "acme", "ci")
        world.keys["acme"] = store.create_token(admin, "invoker", "acme", "client")
        quiet = store.create_token(admin, "publisher", "quiet", "ci")
        world.keys["quiet"] = store.create_token(admin, "invoker", "quiet", "client")
    policy_file = write_policy(folder / "push.toml", {})
    runner = CliRunner()
    env = {"KERASGUARD_STORE_TOKEN": publisher, "KERASGUARD_MASTER_KEY_FILE": str(key_file)}
    common = ["--store", str(world.root), "--policy", str(policy_file), "--version", "1"]

    def push(name: str, *extra: str) -> Any:
        args = ["store", "push", str(digits.model_path), "--name", name, "--source", f"{SOURCE}/{name}"]
        return runner.invoke(app, [*args, *common, *extra], env=env)

    result = push("digits", "--detector", str(digits.detector_dir))
    assert result.exit_code == 0, result.output
    assert push("plain").exit_code == 0
    assert push("late").exit_code == 0
    # A sealed detector whose blob is edited on disk after the push (one ciphertext bit flipped).
    assert push("sealedbad", "--detector", str(digits.detector_dir)).exit_code == 0
    import sqlite3

    with sqlite3.connect(world.root / "store.db") as db:
        rows = db.execute(
            "select d.provenance from model_details d join models m on m.id = d.model_id where m.name = ?",
            ("sealedbad",),
        ).fetchall()
    (entry,) = json.loads(rows[0][0])["attachments"]
    blob = world.root / "blobs" / entry["blob_id"]
    data = bytearray(blob.read_bytes())
    data[-20] ^= 1
    blob.write_bytes(bytes(data))
    # The CLI refuses an edited detector before anything is stored (exit 2, named).
    edited = folder / "edited"
    edited.mkdir()
    attachment = tampered_attachment(digits.detector_dir)
    (edited / "detector.json").write_bytes(base64.b64decode(attachment["json"]))
    (edited / "detector.npz").write_bytes(base64.b64decode(attachment["npz"]))
    refused = push("tampered", "--detector", str(edited))
    assert refused.exit_code == 2 and "digest mismatch" in refused.output, refused.output
    with world.store() as opened:
        # A publisher who bypasses the CLI can store any provenance: the gateway must refuse it.
        info = opened.push(
            publisher,
            digits.model_path,
            name="tampered",
            version="1",
            source=f"{SOURCE}/tampered",
            provenance={"detector": attachment},
        )
        assert info.status == "admitted", info.reason
        for name in ("digits", "plain", "late", "tampered", "sealedbad"):
            opened.promote(publisher, name, "1", STAGE)
        from kerasguard.robustness.detector_files import attachment as attach

        value = attach(digits.detector_dir, model_sha256=None)
        info = opened.push(
            quiet,
            digits.model_path,
            name="digits",
            version="1",
            source=f"{SOURCE}/q",
            provenance={"detector": value},
        )
        assert info.status == "admitted", info.reason
        opened.promote(quiet, "digits", "1", STAGE)
    # `store show` names the attachment, checked as the gateway checks it
    show = ["store", "show", "--store", str(world.root), "--policy", str(policy_file)]
    shown = runner.invoke(app, [*show, "digits", "1"], env=env)
    assert shown.exit_code == 0 and "mahalanobis+max-softmax+energy+squeeze on " in shown.output, shown.output
    shown = runner.invoke(app, [*show, "tampered", "1"], env=env)
    assert shown.exit_code == 1 and "REFUSED" in shown.output and "digest mismatch" in shown.output
    return world


@pytest.fixture(scope="module")
def gw(world: World) -> Iterator[Gateway]:
    gateway = start_gateway(world, "gateway", {**SERVE, "namespaces": ["acme"], "ood_header": True})
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def predict(gw: Gateway, key: str, model: str, x: np.ndarray) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/models/{model}:predict",
        json={"instances": x.tolist()},
        headers=auth(key),
        timeout=30,
    )


def scores_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([float(v) for v in response.headers[HEADER].split(",")])


def metric(gw: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_scores_separate_clean_from_noise_and_count_alarms(gw: Gateway, world: World, digits: Digits) -> None:
    key = world.keys["acme"]
    alarms = "kerasguard_serve_ood_alarms_total"
    before = metric(gw, alarms, model="digits")
    clean = scores_of(predict(gw, key, "digits", digits.test_x[:100]))
    assert len(clean) == 100
    # the gateway's scores are the detector's own scores (features from the sandboxed child)
    np.testing.assert_allclose(clean, digits.detector.score(digits.test_x[:100]), rtol=1e-3, atol=1e-3)
    assert np.mean(clean > digits.threshold) <= 0.15  # fitted for a 5 % false-positive rate
    assert np.median(clean) < digits.threshold / 2
    noise = np.random.default_rng(1).uniform(0, 1, size=(50, 64)).astype("float32")
    inverted = 1.0 - digits.test_x[:50]
    noisy = scores_of(predict(gw, key, "digits", noise))
    flipped = scores_of(predict(gw, key, "digits", inverted))
    assert np.all(noisy > digits.threshold)
    assert np.mean(flipped > digits.threshold) >= 0.9
    expected = sum(int(np.sum(s > digits.threshold)) for s in (clean, noisy, flipped))
    assert metric(gw, alarms, model="digits", detector="mahalanobis") - before == expected
    assert metric(gw, "kerasguard_serve_ood_score_count", model="digits", detector="mahalanobis") >= 200
    # the predictions themselves are unchanged
    body = predict(gw, key, "digits", digits.test_x[:5]).json()
    accuracy = np.mean(np.argmax(body["predictions"], axis=1) == digits.test_y[:5])
    assert accuracy >= 0.6


# the share of near-blank noise each kind flags at least (in process: 100 %, 100 % and 77 %)
FAINT_FLAGGED = {"max-softmax": 1.0, "energy": 1.0, "squeeze": 0.5}


@pytest.mark.parametrize("kind", list(FAINT_FLAGGED))
def test_softmax_energy_and_squeezing_flag_noise_not_clean(
    gw: Gateway, world: World, digits: Digits, kind: str
) -> None:
    key = world.keys["acme"]
    header = f"{HEADER}-{kind.title()}"
    threshold = digits.detector.thresholds[kind]
    before = metric(gw, "kerasguard_serve_ood_alarms_total", model="digits", detector=kind)
    rng = np.random.default_rng(2)
    batches = {
        "clean": digits.test_x[100:200],
        "faint": rng.uniform(0, 0.1, size=(30, 64)).astype("float32"),  # near-blank noise
        "noise": rng.uniform(0, 1, size=(30, 64)).astype("float32"),
    }
    scores = {}
    for name, x in batches.items():
        response = predict(gw, key, "digits", x)
        assert response.status_code == 200, response.text
        scores[name] = np.array([float(v) for v in response.headers[header].split(",")])
        # the score `kerasguard robustness detectors` gives these inputs, features from the child
        np.testing.assert_allclose(scores[name], digits.detector.score(x, kind), rtol=1e-3, atol=1e-3)
    flagged = {name: float(np.mean(s > threshold)) for name, s in scores.items()}
    # near-blank noise (nearly) always; uniform noise only in part (it often looks confident, and
    # squeezing barely changes it: docs/robustness.md)
    assert flagged["clean"] <= 0.15 and flagged["noise"] >= 0.2, flagged
    assert flagged["faint"] >= FAINT_FLAGGED[kind], flagged
    expected = sum(int(np.sum(s > threshold)) for s in scores.values())
    assert metric(gw, "kerasguard_serve_ood_alarms_total", model="digits", detector=kind) - before == expected


def test_no_detector_no_header_and_no_scores(gw: Gateway, world: World, digits: Digits) -> None:
    response = predict(gw, world.keys["acme"], "plain", digits.test_x[:3])
    assert response.status_code == 200 and HEADER.lower() not in {k.lower() for k in response.headers}
    assert metric(gw, "kerasguard_serve_ood_score_count", model="plain") == 0


def test_tampered_attachment_is_refused_fail_closed(gw: Gateway, world: World, digits: Digits) -> None:
    response = predict(gw, world.keys["acme"], "tampered", digits.test_x[:3])
    assert response.status_code == 503, response.text
    assert "digest" not in response.text and "detector" not in response.text  # nothing internal leaks
    assert metric(gw, "kerasguard_serve_detector_errors_total", model="tampered") >= 1
    refused = [
        json.loads(line)
        for line in gw.log.read_text(errors="replace").splitlines()
        if line.startswith('{"event":"detector_refused"') and '"model":"tampered"' in line
    ]
    assert refused and "digest mismatch" in refused[0]["reason"]


def test_tampered_sealed_detector_blob_is_refused_fail_closed(
    gw: Gateway, world: World, digits: Digits
) -> None:
    response = predict(gw, world.keys["acme"], "sealedbad", digits.test_x[:3])
    assert response.status_code == 503, response.text
    assert "tampered" not in response.text and "detector" not in response.text
    assert metric(gw, "kerasguard_serve_detector_errors_total", model="sealedbad") >= 1
    refused = [
        json.loads(line)
        for line in gw.log.read_text(errors="replace").splitlines()
        if line.startswith('{"event":"detector_refused"') and '"model":"sealedbad"' in line
    ]
    assert refused and "damaged or was tampered with" in refused[0]["reason"], refused


def test_drift_alarm_on_one_class_window(gw: Gateway, world: World, digits: Digits) -> None:
    kind = "kerasguard_serve_drift_alarms_total"
    before = metric(gw, kind, model="digits", kind="class_mix")
    zeros = digits.test_x[digits.test_y == 0]
    batch = np.concatenate([zeros] * (2 * WINDOW // len(zeros) + 1))[: 2 * WINDOW]  # one full window at least
    for part in np.array_split(batch, 4):
        assert predict(gw, world.keys["acme"], "digits", part).status_code == 200
    assert metric(gw, kind, model="digits", kind="class_mix") - before >= 1
    alarms = [
        json.loads(line)
        for line in gw.log.read_text(errors="replace").splitlines()
        if line.startswith('{"event":"drift_alarm"')
    ]
    mix = [a for a in alarms if a["kind"] == "class_mix" and a["model"] == "digits"]
    assert mix and mix[-1]["counts"][0] == WINDOW and mix[-1]["chi2"] > mix[-1]["critical"]


def test_a_detector_attached_while_served_is_applied_without_an_outage(
    gw: Gateway, world: World, digits: Digits
) -> None:
    """``store attach`` raises the version's revision: the gateway loads a new worker with the detector
    and swaps it in once ready, while the old one keeps answering."""
    import threading

    from kerasguard.attach import detector as attach_detector

    key, x = world.keys["acme"], digits.test_x[:20]
    first = predict(gw, key, "late", x)
    assert first.status_code == 200 and HEADER not in first.headers
    codes: list[int] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            codes.append(predict(gw, key, "late", x[:2]).status_code)

    caller = threading.Thread(target=keep_calling, daemon=True)
    caller.start()
    try:
        with world.store() as store:
            item = attach_detector(digits.detector_dir, model_sha256=None, max_bytes=32 << 20)
            store.attach(world.admin, "late", "1", [item], namespace="acme")
        deadline = time.monotonic() + 90
        while HEADER not in (response := predict(gw, key, "late", x)).headers:
            assert response.status_code == 200 and time.monotonic() < deadline, response.text
            time.sleep(0.3)
        time.sleep(1)  # calls on the new worker too
    finally:
        stop.set()
        caller.join(30)
    np.testing.assert_allclose(scores_of(response), digits.detector.score(x), rtol=1e-3, atol=1e-3)
    assert codes and set(codes) == {200}, sorted(set(codes))  # no outage while the worker was replaced
    assert "reloaded acme/late:1 (revision" in gw.log.read_text(errors="replace")


def test_header_only_when_the_policy_enables_it(gw: Gateway, world: World, digits: Digits) -> None:
    gw.stop()  # one gateway at a time on two cores
    quiet = start_gateway(world, "quiet", {**SERVE, "namespaces": ["quiet"], "max_batch": 4})
    try:
        response = predict(quiet, world.keys["quiet"], "digits", digits.test_x[:3])
        assert response.status_code == 200 and HEADER.lower() not in {k.lower() for k in response.headers}
        for kind in ("mahalanobis", "max-softmax", "energy", "squeeze"):  # still measured, each kind
            assert metric(quiet, "kerasguard_serve_ood_score_count", model="digits", detector=kind) == 3
    finally:
        stop_gateway(quiet)
