"""`kerasguard robustness` end to end: in process (white-box) and in the sandbox (predictions only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.errors import KerasGuardError

from .conftest import Digits

pytestmark = [pytest.mark.slow, pytest.mark.keras]
runner = CliRunner()
IN_PROCESS = (
    "[trust]\nallow_unsafe_skip_scan = false\n[sandbox]\nallow_unsafe_in_process = true\nmemory_mb = 2048\n"
)


@pytest.fixture
def files(tmp_path: Path, digits: Digits) -> dict[str, Path]:
    data = tmp_path / "test.npz"
    np.savez(data, x=digits.test.x[:120], y=digits.test.y[:120], range=np.array([0.0, 1.0]))
    reference = tmp_path / "reference.npz"
    np.savez(reference, x=digits.reference.x, y=digits.reference.y, range=np.array([0.0, 1.0]))
    policy = tmp_path / "kerasguard.toml"
    policy.write_text(IN_PROCESS)
    return {"data": data, "reference": reference, "policy": policy}


def test_evaluate_in_process_writes_json_plot_and_adversarial_sets(
    saved_mlp: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    report, plot, adv = tmp_path / "r.json", tmp_path / "acc.png", tmp_path / "adv"
    args = [
        "robustness",
        "evaluate",
        str(saved_mlp),
        str(files["data"]),
        "--in-process",
        "--policy",
        str(files["policy"]),
    ]
    args += [
        "--eps",
        "0.05,0.1",
        "--format",
        "json",
        "-o",
        str(report),
        "--plot",
        str(plot),
        "--save-adversarial",
        str(adv),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    assert doc["schema"] == "kerasguard.robustness/1" and doc["backend"] == "jax"
    assert [(r["attack"], r["eps"]) for r in doc["rows"]] == [
        ("fgsm", 0.05),
        ("fgsm", 0.1),
        ("pgd-20", 0.05),
        ("pgd-20", 0.1),
    ]
    assert doc["rows"][3]["robust_accuracy"] < doc["clean_accuracy"] - 0.3
    assert plot.read_bytes().startswith(b"\x89PNG")
    saved = np.load(adv / "pgd-20-linf-eps0.1.npz", allow_pickle=False)
    assert np.abs(saved["x"] - np.load(files["data"])["x"]).max() <= 0.1 + 1e-5

    markdown = runner.invoke(
        app, [*args[:7], "--eps", "0.1", "--attack", "pgd", "-f", "markdown", "--fail-under", "0.9"]
    )
    assert markdown.exit_code == 1, markdown.output  # PGD accuracy is far below 90%
    assert "| pgd-20 | linf | 0.1 |" in markdown.stdout and "below --fail-under" in markdown.output


def test_sandboxed_model_square_attack_and_detector_scoring(
    saved_mlp: Path, files: dict[str, Path], digits: Digits, mlp: Any, tmp_path: Path
) -> None:
    import kerasguard
    from kerasguard.policy import load_policy
    from kerasguard.robustness import (
        KerasFeatures,
        NoGradientError,
        SandboxedFeatures,
        evaluate,
        load_detectors,
    )

    out = tmp_path / "det"
    args = ["robustness", "detectors", str(saved_mlp), str(files["reference"]), "--in-process"]
    args += ["--policy", str(files["policy"]), "--out", str(out), "--kinds", "mahalanobis,energy,squeeze"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mahalanobis" in result.stdout and "saved to" in result.stdout

    # what `kerasguard serve` will do: features computed inside the sandboxed child
    detectors = load_detectors(out)
    batch = digits.test.x[:40]
    expected = {k: detectors.bind(KerasFeatures(mlp)).score(batch, k) for k in detectors.kinds}
    with kerasguard.load_model(saved_mlp, policy=load_policy(files["policy"])) as sandboxed:
        # only predictions cross the sandbox: the gradient-free attack still breaks the model
        report = evaluate(
            sandboxed, digits.test.take(120), attacks=("square",), eps=(0.15,), square_queries=100
        )
        assert report.backend == "sandbox"
        assert report.rows[0].robust_accuracy < report.clean_accuracy - 0.15
        with pytest.raises(NoGradientError, match="sandboxed model"):
            evaluate(sandboxed, digits.test.take(10), attacks=("pgd",), eps=(0.1,))

        detectors.bind(SandboxedFeatures(sandboxed, detectors.head))
        for kind in detectors.kinds:
            np.testing.assert_allclose(detectors.score(batch, kind), expected[kind], rtol=1e-4, atol=1e-4)
        noise = np.random.default_rng(0).uniform(0, 1, (20, 64)).astype(np.float32)
        assert detectors.is_outlier(noise).mean() > 0.8
        with pytest.raises(KerasGuardError, match="no_such_layer"):  # an answer, not a dead child
            sandboxed.layer_input(batch, "no_such_layer")
        assert sandboxed.layer_input(batch, detectors.head).shape == (40, 64)
