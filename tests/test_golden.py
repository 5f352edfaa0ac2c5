"""Golden checks on real Keras models: identical stack passes, changed weights regress, bad input is clear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kerasguard import golden
from kerasguard.cli import app
from kerasguard.errors import GoldenError, IntegrityError, UnsafeModelError

pytestmark = pytest.mark.keras
runner = CliRunner()


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    from support import kmodels

    folder = tmp_path_factory.mktemp("golden-models")
    keras.utils.set_random_seed(0)
    mlp = kmodels.mlp()
    mlp.save(folder / "mlp.keras")
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    two = keras.Model([a, b], [keras.layers.Dense(3)(joined), keras.layers.Dense(1)(joined)], name="two")
    two.save(folder / "two.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.standard_normal((6, 8)).astype("float32"))
    np.savez(
        folder / "ab.npz",
        rng.standard_normal((5, 4)).astype("float32"),
        rng.standard_normal((5, 2)).astype("float32"),
    )
    return {
        "mlp": folder / "mlp.keras",
        "two": folder / "two.keras",
        "x": folder / "x.npy",
        "ab": folder / "ab.npz",
    }


@pytest.fixture
def workdir(tmp_path: Path, saved_models: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for name, path in saved_models.items():
        out[name] = tmp_path / path.name
        shutil.copy(path, out[name])
    return out


def perturb_weights(model_path: Path, delta: float) -> None:
    import keras

    model = keras.saving.load_model(model_path, safe_mode=True)
    weights = model.get_weights()
    weights[0] = weights[0] + delta
    model.set_weights(weights)
    model.save(model_path)


def in_process(model_path: Path) -> golden.Predictor:
    """The model's predict in this process, for tests of recording and comparing rather than of loading
    (those go through the sandboxed loader in the tests marked slow)."""
    import keras

    model = keras.saving.load_model(model_path, safe_mode=True)

    def predict(inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = model.predict(inputs[0] if len(inputs) == 1 else inputs, verbose=0)
        return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]

    return predict


@pytest.mark.slow
def test_identical_stack_passes(workdir: dict[str, Path]) -> None:
    result = runner.invoke(app, ["golden", "record", str(workdir["mlp"]), "--inputs", str(workdir["x"])])
    assert result.exit_code == 0, result.output
    folder = golden.golden_dir(workdir["mlp"])
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["versions"]["keras"] and meta["versions"]["numpy"] and meta["model_sha256"]
    assert np.load(folder / "outputs.npy").shape == (6, 3)
    check = runner.invoke(app, ["golden", "check", str(workdir["mlp"])])
    assert check.exit_code == 0, check.output
    assert check.stdout.startswith("PASS")


@pytest.mark.slow
def test_changed_weights_flip_the_verdict(workdir: dict[str, Path]) -> None:
    golden.record(workdir["mlp"], workdir["x"])
    perturb_weights(workdir["mlp"], 0.05)
    refused = runner.invoke(app, ["golden", "check", str(workdir["mlp"])])
    assert refused.exit_code == 2 and "differs from the recorded" in " ".join(refused.stderr.split())
    result = runner.invoke(
        app, ["golden", "check", str(workdir["mlp"]), "--allow-changed-model", "--top", "3"]
    )
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("REGRESSION") and "worst differences" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("    0, (")]) == 3
    loose = runner.invoke(
        app, ["golden", "check", str(workdir["mlp"]), "--allow-changed-model", "--atol", "10"]
    )
    assert loose.exit_code == 0  # the same drift passes a deliberately loose tolerance


def test_tiny_drift_within_tolerance_passes(workdir: dict[str, Path]) -> None:
    golden.record(workdir["mlp"], workdir["x"], atol=1e-3, rtol=0, predictor=in_process(workdir["mlp"]))
    perturb_weights(workdir["mlp"], 1e-6)
    result = golden.check(workdir["mlp"], allow_changed_model=True, predictor=in_process(workdir["mlp"]))
    assert result.passed and result.model_changed and result.outputs[0].max_abs > 0


@pytest.mark.slow
def test_multi_input_multi_output(workdir: dict[str, Path]) -> None:
    folder = golden.record(workdir["two"], workdir["ab"])
    assert (folder / "inputs.npz").is_file() and (folder / "outputs.npz").is_file()
    result = golden.check(workdir["two"], top=5)
    assert result.passed and [o.shape for o in result.outputs] == [(5, 3), (5, 1)]
    doc = json.loads(runner.invoke(app, ["golden", "check", str(workdir["two"]), "-f", "json"]).stdout)
    assert doc["passed"] and len(doc["outputs"]) == 2


def test_recorded_outputs_are_compared_not_trusted(workdir: dict[str, Path]) -> None:
    predictor = in_process(workdir["mlp"])
    folder = golden.record(workdir["mlp"], workdir["x"], predictor=predictor)
    outputs = np.load(folder / "outputs.npy")
    outputs[2, 1] += 0.5  # what a changed stack computing differently looks like
    np.save(folder / "outputs.npy", outputs)
    result = golden.check(workdir["mlp"], predictor=predictor)
    assert not result.passed and result.exit_code() == 1
    worst = result.worst[0]
    assert (worst.output, worst.index) == (0, (2, 1)) and worst.abs_diff == pytest.approx(0.5, rel=1e-5)
    assert result.outputs[0].mismatched == 1


def test_missing_and_malformed_records(workdir: dict[str, Path]) -> None:
    predictor = in_process(workdir["mlp"])
    with pytest.raises(GoldenError, match="no golden record"):
        golden.check(workdir["mlp"], predictor=predictor)
    folder = golden.record(workdir["mlp"], workdir["x"], predictor=predictor)
    with pytest.raises(GoldenError, match="already exists"):
        golden.record(workdir["mlp"], workdir["x"], predictor=predictor)
    (folder / "meta.json").write_text(json.dumps({"schema": "kerasguard-golden/1", "model": "m"}))
    with pytest.raises(GoldenError, match="invalid golden metadata"):
        golden.check(workdir["mlp"], predictor=predictor)
    meta = {
        "schema": "kerasguard-golden/1",
        "model": "m",
        "model_sha256": golden.model_digest(workdir["mlp"]),
        "created": "x",
        "versions": {},
        "atol": 0,
        "rtol": 0,
        "inputs": "../../etc/passwd",
        "outputs": "o.npy",
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(GoldenError, match=r"plain \.npy/\.npz name"):
        golden.check(workdir["mlp"], predictor=predictor)
    (folder / "meta.json").write_text("{broken")
    result = runner.invoke(app, ["golden", "check", str(workdir["mlp"])])
    assert result.exit_code == 2 and "unreadable golden metadata" in result.stderr


def test_pickled_inputs_are_refused(workdir: dict[str, Path], tmp_path: Path) -> None:
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GoldenError, match="without pickles"):
        golden.record(workdir["mlp"], objects)
    assert not golden.golden_dir(workdir["mlp"]).exists()


def test_a_file_the_scanner_refuses_is_never_loaded(workdir: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"")  # the scanner reports an empty file as unparseable (high)
    with pytest.raises(UnsafeModelError, match="at or above high"):
        golden.record(broken, workdir["x"])
    result = runner.invoke(app, ["golden", "record", str(broken), "--inputs", str(workdir["x"])])
    assert result.exit_code == 2 and not golden.golden_dir(broken).exists()


def test_model_digest_mismatch_is_an_integrity_error(workdir: dict[str, Path]) -> None:
    predictor = in_process(workdir["mlp"])
    golden.record(workdir["mlp"], workdir["x"], predictor=predictor)
    with workdir["mlp"].open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match="differs from the recorded"):
        golden.check(workdir["mlp"], predictor=predictor)


def test_compare_edge_cases() -> None:
    a = np.array([1.0, np.nan, 3.0])
    outputs, worst, problems = golden.compare([a], [a.copy()], atol=0, rtol=0)
    assert outputs[0].passed and worst == () and problems == ()
    outputs, _, _ = golden.compare([a], [np.ones((2, 2))], atol=1, rtol=1)
    assert not outputs[0].passed and "shape" in outputs[0].problem
    _, _, problems = golden.compare([a, a], [a], atol=1, rtol=1)
    assert problems and "1 output(s)" in problems[0]
    outputs, worst, _ = golden.compare([a], [np.array([1.0, 2.0, 3.0])], atol=0, rtol=0)
    assert outputs[0].mismatched == 1 and worst[0].index == (1,) and worst[0].abs_diff == float("inf")
