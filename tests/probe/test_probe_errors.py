"""Bad input to the probes through the API and the CLI: clear errors (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.errors import ProbeError

keras = pytest.importorskip("keras")

pytestmark = pytest.mark.keras
runner = CliRunner()


def _mlp(n_in: int = 16, n_out: int = 3) -> object:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((n_in,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(n_out, activation="softmax"),
        ]
    )


def _data(n: int = 60, n_in: int = 16, n_out: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, n_in), dtype=np.float32), np.arange(n) % n_out


def test_model_without_usable_gradients_is_a_clear_error_and_strip_still_works() -> None:
    from kerasguard.probe import find_backdoor

    inputs = keras.Input((16,))
    scores = keras.layers.Dense(3)(inputs)
    hard = keras.layers.Lambda(lambda t: keras.ops.one_hot(keras.ops.argmax(t, axis=-1), 3))(scores)
    model = keras.Model(inputs, hard)
    x, y = _data(n=90)
    with pytest.raises(ProbeError, match="no usable gradients") as info:
        find_backdoor(model, x, y)
    assert "STRIP" in (info.value.hint or "")
    report = find_backdoor(model, x, y, search=False)
    assert report.verdict == "not-searched" and report.strip is not None
    assert report.detector is not None and report.detector.score(x[:3], seed=0).shape == (3,)


def test_api_rejects_data_that_does_not_fit() -> None:
    from kerasguard.probe import find_backdoor, membership_leak

    model = _mlp()
    x, y = _data()
    with pytest.raises(ProbeError, match=r"shape \(15,\), the model expects \(16\)"):
        find_backdoor(model, x[:, :15], y)
    with pytest.raises(ProbeError, match=r"minimum 10\)"):
        find_backdoor(model, x[:12], y[:12])
    with pytest.raises(ProbeError, match="labels range from 0 to 3"):
        membership_leak(model, x, np.arange(60) % 4, x, y)
    with pytest.raises(ProbeError, match="at least 20 training samples"):
        membership_leak(model, x[:10], y[:10], x, y)


def _save(tmp_path: Path) -> tuple[Path, Path]:
    model_path = tmp_path / "m.keras"
    _mlp().save(model_path)
    policy = tmp_path / "kerasguard.toml"
    policy.write_text("[sandbox]\nallow_unsafe_in_process = true\n")
    return model_path, policy


def _invoke(args: list[str]) -> object:
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def test_cli_nan_and_misfit_data_exit_2(tmp_path: Path) -> None:
    model_path, policy = _save(tmp_path)
    x, y = _data()
    x[5, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    np.savez(tmp_path / "wide.npz", x=np.zeros((60, 20), np.float32), y=y)
    for data, message in (("nan.npz", "NaN"), ("wide.npz", "the model expects")):
        result = _invoke(
            [
                "probe",
                "backdoor",
                str(model_path),
                str(tmp_path / data),
                "--in-process",
                "--policy",
                str(policy),
            ]
        )
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        assert message in result.output  # type: ignore[attr-defined]
    result = _invoke(
        [
            "probe",
            "privacy",
            str(model_path),
            str(tmp_path / "nan.npz"),
            str(tmp_path / "wide.npz"),
            "--policy",
            str(policy),
        ]
    )
    assert result.exit_code == 2 and "NaN" in result.output  # type: ignore[attr-defined]


def test_cli_trigger_search_needs_in_process_and_the_policy_must_allow_it(tmp_path: Path) -> None:
    model_path, policy = _save(tmp_path)
    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    result = _invoke(["probe", "backdoor", str(model_path), str(tmp_path / "d.npz"), "--policy", str(policy)])
    assert result.exit_code == 2 and "--in-process" in result.output  # type: ignore[attr-defined]
    strict = tmp_path / "strict.toml"
    strict.write_text("[probe]\nstrip_fpr = 0.1\n")
    result = _invoke(
        [
            "probe",
            "backdoor",
            str(model_path),
            str(tmp_path / "d.npz"),
            "--in-process",
            "--policy",
            str(strict),
        ]
    )
    assert result.exit_code == 1 and "refused" in result.output  # type: ignore[attr-defined]
    assert "in-process" in result.output  # type: ignore[attr-defined]
    bad = tmp_path / "bad.toml"
    bad.write_text("[probe]\nstrip_fpr = 2\n")
    result = _invoke(
        ["probe", "backdoor", str(model_path), str(tmp_path / "d.npz"), "--in-process", "--policy", str(bad)]
    )
    assert result.exit_code == 2 and "strip_fpr" in result.output  # type: ignore[attr-defined]


def test_cli_too_few_samples_per_class_exit_2(tmp_path: Path) -> None:
    model_path, policy = _save(tmp_path)
    x, y = _data(n=15)
    np.savez(tmp_path / "few.npz", x=x, y=y)
    result = _invoke(
        [
            "probe",
            "backdoor",
            str(model_path),
            str(tmp_path / "few.npz"),
            "--in-process",
            "--policy",
            str(policy),
        ]
    )
    assert result.exit_code == 2 and "minimum 10" in result.output  # type: ignore[attr-defined]


def test_cli_trigger_png_options_are_checked_before_the_search(tmp_path: Path) -> None:
    """Flat inputs without --image-shape, a shape of another size, or a --trigger-dir that is a file
    used to fail after the whole trigger search (its result lost); now before the model is loaded."""
    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    model_path = tmp_path / "absent.keras"  # never read: the checks come first
    base = ["probe", "backdoor", str(model_path), str(tmp_path / "d.npz"), "--in-process"]
    cases = [
        ([], "are not images"),
        (["--image-shape", "5x5"], "does not fit inputs of shape (16,)"),
    ]
    for extra, said in cases:
        result = _invoke([*base, "--trigger-dir", str(tmp_path / "t"), *extra])
        assert result.exit_code == 2 and said in result.output, result.output  # type: ignore[attr-defined]
        assert not (tmp_path / "t").exists()
    (tmp_path / "afile").write_text("x")
    result = _invoke([*base, "--trigger-dir", str(tmp_path / "afile"), "--image-shape", "4x4"])
    assert result.exit_code == 2 and "exists and is not a folder" in result.output  # type: ignore[attr-defined]


def test_a_strip_file_declaring_a_huge_overlay_is_refused_from_its_header(tmp_path: Path) -> None:
    """A 1 KB file whose overlay header declares 1e8 x 64 float32 (23.8 GiB): NumPy tried to allocate
    it before the error; the header is judged first now."""
    import io
    import json
    import zipfile

    from kerasguard.probe.strip import StripDetector

    def npy(shape: tuple[int, ...], dtype: str, data: bytes = b"") -> bytes:
        buf = io.BytesIO()
        header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(buf, header)
        return buf.getvalue() + data

    meta = json.dumps({"threshold": 0.3}).encode()
    path = tmp_path / "strip.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("overlay.npy", npy((100_000_000, 64), "<f4"))
        zf.writestr("meta.npy", npy((len(meta),), "|u1", meta))
    assert path.stat().st_size < 2048
    with pytest.raises(ProbeError, match=r"declare more than|truncated"):
        StripDetector.load(path)


def test_privacy_probe_refuses_a_holdout_that_is_the_training_data() -> None:
    """The same file as members and non-members gave AUC 0.5 and "verdict: OK"."""
    from kerasguard.probe import membership_leak
    from kerasguard.probe.membership import ReferenceTraining

    model = _mlp()
    x, y = _data(n=80)
    with pytest.raises(ProbeError, match="80 of the 80 holdout samples are also in the training data"):
        membership_leak(model, x, y, x, y, references=ReferenceTraining(models=0))
    report = membership_leak(model, x[:40], y[:40], x[40:], y[40:], references=ReferenceTraining(models=0))
    assert report.n_members == 40  # disjoint sets are probed as before
