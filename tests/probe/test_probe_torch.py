"""Issue 15: the probes on the PyTorch backend give the JAX verdicts on the same weights.

Keras picks its backend once per process, so the PyTorch side runs in a child interpreter on the model
file the JAX side saved: ``find_backdoor`` (trigger search through ``torch.autograd``, STRIP) and the
loss / confidence membership attacks must name the same target class and the same verdicts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("sklearn")

from kerasguard.probe import ReferenceTraining, find_backdoor, membership_leak  # noqa: E402
from support import digitsets as digits  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.keras]

CHILD = """
import json, sys
import keras, numpy as np
from kerasguard.probe import ReferenceTraining, find_backdoor, membership_leak
model = keras.saving.load_model(sys.argv[1])
clean, members, holdout = (np.load(p) for p in sys.argv[2:5])
report = find_backdoor(model, clean["x"], clean["y"], seed=0)
triggered = np.load(sys.argv[5])["x"]
leak = membership_leak(model, members["x"], members["y"], holdout["x"], holdout["y"],
                       references=ReferenceTraining(models=0))
print(json.dumps({
    "backend": keras.backend.backend(),
    "verdict": report.verdict,
    "flagged": report.flagged,
    "l1": [c.mask_l1 for c in report.classes],
    "strip_caught": float(report.detector.is_trojaned(triggered, seed=4).mean()),
    "auc": {a.name: a.auc for a in leak.attacks},
    "privacy": leak.verdict,
}))
"""


@pytest.mark.timeout(1500)  # two searches, the PyTorch one eager (~4 min on a loaded 2-core machine)
def test_probes_on_torch_match_jax(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (the torch extra installs PyTorch)")
    model, (xtr, ytr, xte, yte) = digits.build("mlp", poisoned=True)
    model.save(tmp_path / "poisoned.keras")
    order = np.random.default_rng(1).permutation(len(xte))
    probe, held = order[:324], order[324:]
    triggered = digits.stamp(xte[held][yte[held] != 0])
    np.savez(tmp_path / "clean.npz", x=xte[probe], y=yte[probe])
    np.savez(tmp_path / "triggered.npz", x=triggered)
    np.savez(tmp_path / "members.npz", x=xtr[:200], y=ytr[:200])
    np.savez(tmp_path / "holdout.npz", x=xte[held][:200], y=yte[held][:200])

    report = find_backdoor(model, xte[probe], yte[probe], seed=0)
    leak = membership_leak(
        model, xtr[:200], ytr[:200], xte[held][:200], yte[held][:200], references=ReferenceTraining(models=0)
    )
    assert report.flagged == [0]

    files = [str(tmp_path / n) for n in ("poisoned.keras", "clean.npz", "members.npz", "holdout.npz")]
    torch_side = digits.run_on_backend("torch", CHILD, *files, str(tmp_path / "triggered.npz"))
    assert torch_side["backend"] == "torch"
    assert torch_side["verdict"] == "backdoor" and torch_side["flagged"] == report.flagged
    # same loss, same Adam, same batches: the mask norms agree up to float rounding along the search
    assert np.allclose(torch_side["l1"], [c.mask_l1 for c in report.classes], rtol=0.05)
    assert torch_side["strip_caught"] >= 0.8
    assert torch_side["privacy"] == leak.verdict
    for attack in leak.attacks:
        assert abs(torch_side["auc"][attack.name] - attack.auc) <= 0.01, (attack.name, torch_side["auc"])
