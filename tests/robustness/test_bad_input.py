"""Bad data, parameters, detector files and models: a clear RobustnessError (CLI exit 2), no traceback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.robustness import (
    AttackSpec,
    DetectorFileError,
    NoGradientError,
    RobustnessError,
    load_dataset,
)
from kerasguard.robustness.data import check_eps, check_fits_model, make_dataset
from kerasguard.robustness.detector_files import load_detectors, save_detectors
from kerasguard.robustness.detectors import DetectorSet, Squeezers
from kerasguard.robustness.engines import PredictOnlyClassifier, StepConfig

runner = CliRunner()
X = np.random.default_rng(0).uniform(0, 1, (20, 64)).astype(np.float32)
Y = np.arange(20) % 10


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_data_without_the_expected_keys(tmp_path: Path) -> None:
    with pytest.raises(RobustnessError, match="needs an inputs array"):
        load_dataset(_npz(tmp_path / "d.npz", features=X, y=Y))


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}] * 20, dtype=object), y=Y)
    with pytest.raises(RobustnessError, match="pickled"):
        load_dataset(path)


def test_nan_and_bad_dtypes(tmp_path: Path) -> None:
    bad = X.copy()
    bad[3, 5] = np.nan
    with pytest.raises(RobustnessError, match="1 input example"):
        load_dataset(_npz(tmp_path / "nan.npz", x=bad, y=Y))
    with pytest.raises(RobustnessError, match="must be numbers"):
        make_dataset(np.array([["a"] * 64] * 20), Y)
    with pytest.raises(RobustnessError, match="20 inputs but 19 labels"):
        make_dataset(X, Y[:19])
    with pytest.raises(RobustnessError, match="class ids"):
        make_dataset(X, Y + 0.5)
    with pytest.raises(RobustnessError, match="class ids from 0"):
        make_dataset(X, Y - 1)


def test_declared_range_and_labels_forms(tmp_path: Path) -> None:
    onehot = np.eye(10)[Y]
    data = load_dataset(_npz(tmp_path / "d.npz", x=X, y_test=onehot, range=np.array([0.0, 1.0])))
    assert (data.y == Y).all() and (data.clip_min, data.clip_max) == (0.0, 1.0)
    with pytest.raises(RobustnessError, match="outside the declared range"):
        load_dataset(_npz(tmp_path / "r.npz", x=X * 3, y=Y, range=np.array([0.0, 1.0])))
    with pytest.raises(RobustnessError, match="empty or not finite"):
        make_dataset(X, Y, clip_min=1.0, clip_max=1.0)


def test_shape_and_classes_must_fit_the_model() -> None:
    data = make_dataset(X, Y, clip_min=0, clip_max=1)
    with pytest.raises(RobustnessError, match=r"expects \(n, 8, 8, 1\)"):
        check_fits_model(data, (None, 8, 8, 1), 10)
    with pytest.raises(RobustnessError, match="has 5 classes"):
        check_fits_model(data, (None, 64), 5)
    check_fits_model(data, (None, 64), 10)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf"), 1.5])
def test_eps_out_of_range(eps: float) -> None:
    data = make_dataset(X, Y, clip_min=0, clip_max=1)
    with pytest.raises(RobustnessError, match="out of range"):
        check_eps(eps, data, "linf")
    assert check_eps(1.0, data, "linf") == 1.0
    assert check_eps(3.0, data, "l2") == 3.0  # the L2 ball of [0, 1]^64 reaches 8


def test_attack_parameters_are_checked() -> None:
    with pytest.raises(RobustnessError, match="steps"):
        AttackSpec("pgd", 0.1, steps=0)
    with pytest.raises(RobustnessError, match="norm"):
        AttackSpec("pgd", 0.1, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(RobustnessError, match="L-inf"):
        AttackSpec("square", 0.1, norm="l2")
    with pytest.raises(RobustnessError, match="unknown attack"):
        AttackSpec("deepfool", 0.1)  # type: ignore[arg-type]


def test_a_predict_only_model_names_the_gradient_free_attack() -> None:
    blind = PredictOnlyClassifier(lambda x: np.full((len(x), 10), 0.1), (None, 64), 10, "sandbox")
    with pytest.raises(NoGradientError, match="sandboxed model") as info:
        blind.pgd(X, Y, StepConfig(0.1, 0.01, 5, "linf"), (0.0, 1.0), 0)
    assert "square" in info.value.diagnostics().lower()


# --- detector files -----------------------------------------------------------------------------------


def _detectors() -> DetectorSet:
    rng = np.random.default_rng(0)
    return DetectorSet(
        head="dense_2",
        input_shape=(None, 64),
        n_classes=3,
        clip_min=0.0,
        clip_max=1.0,
        kernel=rng.normal(size=(4, 3)),
        bias=rng.normal(size=3),
        means=rng.normal(size=(3, 4)),
        precision=np.eye(4),
        squeezers=Squeezers(4, False, 0.0, 1.0),
        thresholds={"mahalanobis": 10.0, "energy": -1.0},
        target_fpr=0.05,
        calibration_fpr={"mahalanobis": 0.05, "energy": 0.04},
        model_sha256="ab" * 32,
    )


def test_detector_round_trip_without_pickles(tmp_path: Path) -> None:
    folder = save_detectors(_detectors(), tmp_path / "det")
    loaded = load_detectors(folder)
    original = _detectors()
    assert loaded.thresholds == original.thresholds and loaded.head == "dense_2"
    np.testing.assert_array_equal(loaded.precision, original.precision)
    with np.load(folder / "detector.npz", allow_pickle=False) as npz:  # plain arrays only
        assert all(npz[name].dtype == np.float64 for name in npz.files)


def test_an_edited_threshold_is_refused(tmp_path: Path) -> None:
    folder = save_detectors(_detectors(), tmp_path / "det")
    doc = json.loads((folder / "detector.json").read_text())
    doc["thresholds"]["mahalanobis"] = 1e9  # an attacker silencing the detector
    (folder / "detector.json").write_text(json.dumps(doc))
    with pytest.raises(DetectorFileError, match="digest mismatch"):
        load_detectors(folder)


def test_edited_arrays_are_refused(tmp_path: Path) -> None:
    folder = save_detectors(_detectors(), tmp_path / "det")
    raw = bytearray((folder / "detector.npz").read_bytes())
    raw[-200] ^= 0x01
    (folder / "detector.npz").write_bytes(bytes(raw))
    with pytest.raises(DetectorFileError, match="sha256 mismatch"):
        load_detectors(folder)


def test_arrays_that_disagree_with_the_json_are_refused_even_with_fixed_digests(tmp_path: Path) -> None:
    folder = save_detectors(_detectors(), tmp_path / "det")
    np.savez(
        folder / "detector.npz",
        kernel=np.zeros((4, 3)),
        bias=np.zeros(3),
        means=np.zeros((3, 4)),
        precision=np.eye(5),
    )
    doc = json.loads((folder / "detector.json").read_text())
    doc["arrays_sha256"] = hashlib.sha256((folder / "detector.npz").read_bytes()).hexdigest()
    body = {k: v for k, v in doc.items() if k != "digest"}
    doc["digest"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    (folder / "detector.json").write_text(json.dumps(doc))
    with pytest.raises(DetectorFileError, match="precision"):
        load_detectors(folder)


def test_missing_or_foreign_detector_files(tmp_path: Path) -> None:
    with pytest.raises(DetectorFileError, match="cannot read"):
        load_detectors(tmp_path)
    (tmp_path / "detector.json").write_text('{"format": "something-else"}')
    with pytest.raises(DetectorFileError, match=r"not a kerasguard\.detector/1"):
        load_detectors(tmp_path)
    (tmp_path / "detector.json").write_text('{"format": "kerasguard.detector/1", "x": NaN}')
    with pytest.raises(DetectorFileError, match="not valid JSON"):
        load_detectors(tmp_path)


def test_scoring_unbound_or_wrong_shaped_batches(tmp_path: Path) -> None:
    detectors = _detectors()
    with pytest.raises(RobustnessError, match="bind"):
        detectors.score(X)


# --- models without gradients (in process) ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.keras
def test_a_model_that_masks_its_gradients_names_the_square_attack() -> None:
    import keras

    from kerasguard.robustness import evaluate

    class Frozen(keras.layers.Layer):
        def call(self, x):  # type: ignore[no-untyped-def]
            return keras.ops.stop_gradient(x)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), Frozen(), keras.layers.Dense(10, activation="softmax")])
    data = make_dataset(X, Y, clip_min=0, clip_max=1)
    with pytest.raises(NoGradientError, match="zero everywhere") as info:
        evaluate(model, data, attacks=("pgd",), eps=(0.1,))
    assert "--attack square" in info.value.diagnostics()
    assert "--in-process" not in info.value.diagnostics()  # it is in process already
    report = evaluate(model, data, attacks=("square",), eps=(0.1,), square_queries=5)  # still measurable
    assert report.rows[0].attack == "square-5q"


# --- the CLI: exit 2 with the reason, before any model is loaded --------------------------------------------


def test_cli_bad_data_and_parameters_exit_2(tmp_path: Path) -> None:
    bad = X.copy()
    bad[0, 0] = np.nan
    nan_data = _npz(tmp_path / "nan.npz", x=bad, y=Y)
    good = _npz(tmp_path / "good.npz", x=X, y=Y, range=np.array([0.0, 1.0]))
    model = tmp_path / "absent.keras"
    square = ["--attack", "square"]
    cases = [
        (["evaluate", str(model), str(nan_data), *square], "NaN"),
        (["evaluate", str(model), str(good), *square, "--eps", "2"], "out of range"),
        (["evaluate", str(model), str(good), *square, "--eps", "abc"], "comma-separated"),
        (["evaluate", str(model), str(good), "--attack", "deepfool"], "unknown attack"),
        (["train", str(model), str(good), "--out", str(tmp_path / "o.keras")], "--in-process"),
        (["detectors", str(model), str(good)], "--in-process"),
        (
            ["evaluate", str(model), str(good), "--attack", "square,pgd"],
            "which a sandboxed model does not give",
        ),
        (["evaluate", str(model), str(good)], "--attack square"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, ["robustness", *args])
        assert result.exit_code == 2, (args, result.output)
        assert needle in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output


def test_cli_refused_model_exits_1(tmp_path: Path) -> None:
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    good = _npz(tmp_path / "good.npz", x=X, y=Y, range=np.array([0.0, 1.0]))
    result = runner.invoke(
        app,
        [
            "robustness",
            "evaluate",
            str(model),
            str(good),
            "--attack",
            "square",
            "--digest",
            "sha256:" + "0" * 64,
        ],
    )
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "mismatch" in result.output


def test_reports_show_bidi_and_zero_width_characters_escaped() -> None:
    """The robustness cleaner replaced only C0/C1 controls, so a bidi override in a file name reached
    the text and Markdown reports (and a library caller's terminal) as is."""
    from kerasguard.robustness.evaluate import RobustnessReport
    from kerasguard.robustness.report import render_markdown, render_text

    name = "m\x1b[2J\u202egpj.keras\u200b"
    report = RobustnessReport(
        model=name,
        data="d\u2066.npz",
        backend="jax",
        examples=20,
        clip_min=0.0,
        clip_max=1.0,
        clean_accuracy=0.5,
        seed=0,
        notes=["note\u202e"],
    )
    for out in (render_text(report), render_markdown(report)):
        assert not set(out) & set("\x1b\u202e\u200b\u2066"), out
    assert "model m\\x1b[2J\\u202egpj.keras\\u200b on d\\u2066.npz" in render_text(report)


def test_an_npy_header_declaring_a_huge_array_is_refused_before_allocation(tmp_path: Path) -> None:
    """A 200-byte file whose header declares 1e12 float64s (8 TB) must not reach numpy's allocation."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue())
        zf.writestr("y.npy", header.getvalue())
    with pytest.raises(RobustnessError, match="declare more than"):
        load_dataset(path)


def test_square_with_the_l2_norm_is_refused_not_run_as_l_inf(tmp_path: Path) -> None:
    """`--attack square --norm l2` used to run L-inf and label the row linf, exit 0."""
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 64), "float32"), y=np.zeros(4, "int64"), range=np.array([0.0, 1.0]))
    model = tmp_path / "absent.keras"  # refused before the model is read
    result = runner.invoke(
        app, ["robustness", "evaluate", str(model), str(data), "--attack", "square", "--norm", "l2"]
    )
    assert result.exit_code == 2 and "L-inf norm only" in result.output, result.output
