"""Membership inference against models that do and do not memorise: digits MLPs, fixed seeds.

Both models are trained on the same 60 samples; the overfit one long and without regularisation, the
regularised one with L2 and dropout for few epochs. The attacks must see the difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

keras = pytest.importorskip("keras")
pytest.importorskip("sklearn")

from kerasguard.cli import app  # noqa: E402
from kerasguard.policy import policy_from_mapping  # noqa: E402
from kerasguard.probe import ReferenceTraining, membership_leak  # noqa: E402
from support import digitsets as digits  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.keras]


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    xtr, ytr, xte, yte = digits.digits(0)
    pick = np.random.default_rng(0).choice(len(xtr), 60, replace=False)
    xs, ys = xtr[pick], ytr[pick]
    overfit = digits.train(digits.mlp(), xs, ys, epochs=300, seed=0, batch_size=16)
    regularised = digits.train(digits.mlp(l2=1e-2, dropout=0.5), xs, ys, epochs=20, seed=0, batch_size=16)
    return {"overfit": overfit, "regularised": regularised, "train": (xs, ys), "holdout": (xte, yte)}


def test_overfit_model_leaks_more_than_a_regularised_one(trained: dict[str, Any]) -> None:
    (xs, ys), (xh, yh) = trained["train"], trained["holdout"]
    none = ReferenceTraining(models=0)
    leaky = membership_leak(trained["overfit"], xs, ys, xh, yh, references=none)
    tight = membership_leak(trained["regularised"], xs, ys, xh, yh, references=none)
    for name in ("loss", "confidence"):
        assert leaky.attack(name).auc > tight.attack(name).auc + 0.05, name
    assert leaky.attack("loss").auc > 0.7
    assert leaky.n_members == leaky.n_nonmembers == 60
    # in process with no reference models asked for: the note says so (it blamed the sandbox)
    assert "LiRA skipped: no reference models were asked for (references = 0)" in leaky.notes
    assert set(leaky.attack("loss").per_class_auc) <= set(range(10))
    strict = policy_from_mapping({"probe": {"privacy_max_auc": 0.72, "privacy_max_tpr_at_1pct_fpr": 1.0}})
    assert (
        membership_leak(trained["overfit"], xs, ys, xh, yh, references=none, policy=strict).verdict == "leak"
    )
    assert (
        membership_leak(trained["regularised"], xs, ys, xh, yh, references=none, policy=strict).verdict
        == "ok"
    )


def test_lira_reference_models_are_trained_on_the_holdout(trained: dict[str, Any]) -> None:
    (xs, ys), (xh, yh) = trained["train"], trained["holdout"]
    refs = ReferenceTraining(models=2, epochs=60, batch_size=16)
    report = membership_leak(trained["overfit"], xs, ys, xh, yh, references=refs)
    lira = report.attack("lira")
    assert 0.6 < lira.auc <= 1.0
    assert set(lira.tpr_at_fpr) == {0.001, 0.01}
    assert any("LiRA: 2 reference models" in n for n in report.notes)


def test_cli_privacy_black_box_through_the_sandbox(trained: dict[str, Any], tmp_path: Path) -> None:
    (xs, ys), (xh, yh) = trained["train"], trained["holdout"]
    trained["overfit"].save(tmp_path / "overfit.keras")
    np.savez(tmp_path / "train.npz", x=xs, y=ys)
    np.savez(tmp_path / "holdout.npz", x=xh, y=yh)
    policy = tmp_path / "kerasguard.toml"
    policy.write_text("[probe]\nprivacy_max_auc = 0.7\n")
    args = ["probe", "privacy", str(tmp_path / "overfit.keras"), str(tmp_path / "train.npz")]
    result = CliRunner().invoke(
        app, [*args, str(tmp_path / "holdout.npz"), "--policy", str(policy), "-f", "json"]
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "leak" and [a["name"] for a in doc["attacks"]] == ["loss", "confidence"]
    assert any("LiRA skipped" in n for n in doc["notes"])
