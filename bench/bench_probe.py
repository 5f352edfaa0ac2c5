"""kerasguard probe against IBM ART 1.20.1, same models, weights and data, in the same run.

    PYTHONPATH=src KERAS_BACKEND=jax .venv/bin/python bench/bench_probe.py [--art-python PATH]

1. Builds (JAX, fixed seeds) a digits CNN with a planted 2x2 trigger (target 0, 10% of its class), the
   same CNN trained on clean data, and two MLPs on the same 60 samples: overfit and regularised. Saves
   them as .keras plus the data as .npz in a scratch folder.
2. kerasguard (JAX, this process): Neural Cleanse trigger search on both CNNs (wall time including JIT
   compilation, flagged classes); membership inference (loss and confidence AUC) on both MLPs.
3. ART (a child process in the ART environment, TensorFlow backend, bench/requirements-art.txt): its
   KerasNeuralCleanse on the same .keras files and data, with the same work (epochs x mini-batches x
   classes, batch 32, L1 norm, Adam 0.5/0.9, no early stop), then its outlier_detection; and
   MembershipInferenceBlackBox (input_type loss and prediction, trained on half of the members and
   non-members, AUC on the other half). The same child also times kerasguard's eager TensorFlow path.

ART's Neural Cleanse feeds its optimiser through an ImageDataGenerator, so it only takes image-shaped
(rank-4) inputs: the trigger search is compared on the CNN.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EPOCHS = 40
BATCH = 32


def _prepare(folder: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support import digitsets as digits  # the test suite's builders: same seeds, same trigger

    xtr, ytr, xte, yte = digits.digits(0)
    order = np.random.default_rng(1).permutation(len(xte))
    probe_idx = order[:320]
    x_probe = xte[probe_idx].reshape(-1, 8, 8, 1)
    np.savez(folder / "probe.npz", x=x_probe, y=yte[probe_idx])
    held = order[320:]  # never seen by either search: kerasguard confirms a flag with its trigger there
    np.savez(folder / "held.npz", x=xte[held].reshape(-1, 8, 8, 1), y=yte[held])
    for poisoned in (True, False):
        model, _ = digits.build("cnn", poisoned=poisoned)
        model.save(folder / f"cnn_{'poisoned' if poisoned else 'clean'}.keras")
    pick = np.random.default_rng(0).choice(len(xtr), 60, replace=False)
    xs, ys = xtr[pick], ytr[pick]
    np.savez(folder / "members.npz", x=xs, y=ys)
    np.savez(folder / "nonmembers.npz", x=xte, y=yte)
    digits.train(digits.mlp(), xs, ys, epochs=300, seed=0, batch_size=16).save(folder / "mlp_overfit.keras")
    digits.train(digits.mlp(l2=1e-2, dropout=0.5), xs, ys, epochs=20, seed=0, batch_size=16).save(
        folder / "mlp_regularised.keras"
    )
    return {"probe_samples": len(x_probe)}


def _kerasguard_search(folder: Path) -> dict[str, Any]:
    import keras

    from kerasguard.policy import Probe
    from kerasguard.probe.backdoor import judge_triggers
    from kerasguard.probe.target import Target
    from kerasguard.probe.trigger import SearchConfig, search_triggers

    data, held = np.load(folder / "probe.npz"), np.load(folder / "held.npz")
    x = data["x"]
    settings = Probe()
    out: dict[str, Any] = {"backend": keras.backend.backend()}
    for name in ("poisoned", "clean"):
        model = keras.saving.load_model(folder / f"cnn_{name}.keras")
        target = Target.of(model)
        target.calibrate(x)
        config = SearchConfig(
            epochs=EPOCHS, steps_per_epoch=len(x) // BATCH, batch_size=BATCH, max_samples=len(x)
        )
        started = time.perf_counter()
        triggers = search_triggers(target, x, config)
        seconds = time.perf_counter() - started
        classes = judge_triggers(target, triggers, held["x"], held["y"], settings)
        out[name] = {
            "seconds": round(seconds, 2),
            "flagged": [c.target for c in classes if c.flagged],
            # Neural Cleanse's MAD test alone (before decision 59)
            "mad_only": [c.target for c in classes if c.anomaly_index > settings.backdoor_anomaly_index],
            "l1": [round(t.l1, 2) for t in triggers],
            "index": [round(c.anomaly_index, 2) for c in classes],
            "ratio": [round(c.norm_ratio, 2) for c in classes],
            "held_success": [round(c.attack_success, 2) for c in classes],
        }
    return out


def _kerasguard_membership(folder: Path) -> dict[str, Any]:
    import keras

    from kerasguard.probe import ReferenceTraining, membership_leak

    members, nonmembers = np.load(folder / "members.npz"), np.load(folder / "nonmembers.npz")
    out = {}
    for name in ("overfit", "regularised"):
        model = keras.saving.load_model(folder / f"mlp_{name}.keras")
        report = membership_leak(
            model,
            members["x"],
            members["y"],
            nonmembers["x"],
            nonmembers["y"],
            references=ReferenceTraining(models=0),
        )
        out[name] = {a.name: round(a.auc, 3) for a in report.attacks} | {"verdict": report.verdict}
    return out


def _art_worker(folder: Path) -> dict[str, Any]:
    """Runs in the ART environment (TensorFlow backend)."""
    import contextlib
    import io

    import keras
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.defences.transformer.poisoning import NeuralCleanse
    from art.estimators.classification import KerasClassifier

    from kerasguard.probe.metrics import roc_auc

    data = np.load(folder / "probe.npz")
    x, y = data["x"], data["y"]
    onehot = np.eye(10, dtype=np.float32)[y]
    out: dict[str, Any] = {"backend": keras.backend.backend()}
    for name in ("poisoned", "clean"):
        model = keras.saving.load_model(folder / f"cnn_{name}.keras")
        classifier = KerasClassifier(model=model, clip_values=(0.0, 1.0), use_logits=False)
        nc = NeuralCleanse(classifier)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # ART prints the accuracy of every step
            defence = nc(
                classifier,
                steps=EPOCHS,
                norm=1,
                batch_size=BATCH,
                early_stop=False,
                learning_rate=0.1,
                init_cost=1e-3,
            )
            flagged = [int(label) for label, _, _ in defence.outlier_detection(x, onehot)]
        out[name] = {"seconds": round(time.perf_counter() - started, 2), "flagged": flagged}
    out["kerasguard_tf"] = _kerasguard_search(folder)
    members, nonmembers = np.load(folder / "members.npz"), np.load(folder / "nonmembers.npz")
    n = len(members["x"])
    rng = np.random.default_rng(0)
    nm = rng.choice(len(nonmembers["x"]), n, replace=False)
    xm, ym = members["x"], members["y"]
    xn, yn = nonmembers["x"][nm], nonmembers["y"][nm]
    half = n // 2
    for name in ("overfit", "regularised"):
        model = keras.saving.load_model(folder / f"mlp_{name}.keras", compile=False)
        model.compile(loss="categorical_crossentropy")  # ART computes losses from one-hot labels
        classifier = KerasClassifier(model=model, clip_values=(0.0, 1.0), use_logits=False)
        result: dict[str, Any] = {}
        for input_type in ("loss", "prediction"):
            try:
                attack = MembershipInferenceBlackBox(
                    classifier, input_type=input_type, attack_model_type="rf"
                )
                attack.fit(xm[:half], np.eye(10)[ym[:half]], xn[:half], np.eye(10)[yn[:half]])
                p_in = attack.infer(xm[half:], np.eye(10)[ym[half:]], probabilities=True)
                p_out = attack.infer(xn[half:], np.eye(10)[yn[half:]], probabilities=True)
                col = 1 if p_in.ndim == 2 and p_in.shape[1] > 1 else 0
                result[f"blackbox_{input_type}"] = round(
                    roc_auc(p_in.reshape(len(p_in), -1)[:, col], p_out.reshape(len(p_out), -1)[:, col]), 3
                )
            except Exception as exc:  # keep the Neural Cleanse numbers if ART's attack fails
                result[f"blackbox_{input_type}"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        out[name] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--art-python", default="/work/.venv-art/bin/python")
    parser.add_argument("--worker", choices=["art"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "art":
        print(json.dumps(_art_worker(Path(args.folder))))
        return
    with tempfile.TemporaryDirectory(prefix="kg-bench-probe-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        info = _prepare(folder)
        print(
            f"models trained in {time.perf_counter() - t:.1f} s; {info['probe_samples']} clean probe samples"
        )
        ours = _kerasguard_search(folder)
        ours_mia = _kerasguard_membership(folder)
        print("kerasguard:", json.dumps({"search": ours, "membership": ours_mia}), flush=True)
        env = {
            **os.environ,
            "KERAS_BACKEND": "tensorflow",
            "PYTHONPATH": str(ROOT / "src"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        proc = subprocess.run(
            [args.art_python, __file__, "--worker", "art", "--folder", str(folder)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"ART worker failed:\n{proc.stderr[-4000:]}")
        art = json.loads(proc.stdout.strip().splitlines()[-1])
    work = f"{EPOCHS} epochs x {info['probe_samples'] // BATCH} mini-batches of {BATCH} x 10 classes"
    print(f"\nNeural Cleanse on the digits CNN ({work})")
    print(f"{'':28} {'poisoned: s':>12} {'flagged':>9} {'clean: s':>10} {'flagged':>9}")
    rows = [
        (f"kerasguard ({ours['backend']}, jit)", ours),
        (f"kerasguard ({art['kerasguard_tf']['backend']}, eager)", art["kerasguard_tf"]),
        (f"ART 1.20.1 ({art['backend']})", art),
    ]
    for label, r in rows:
        print(
            f"{label:28} {r['poisoned']['seconds']:12.1f} {r['poisoned']['flagged']!s:>9} "
            f"{r['clean']['seconds']:10.1f} {r['clean']['flagged']!s:>9}"
        )
    speed = art["poisoned"]["seconds"] / ours["poisoned"]["seconds"]
    print(f"speed-up of kerasguard on JAX over ART (poisoned model): {speed:.1f}x")
    print("\nMembership inference AUC (60 members vs 60 non-members; ART: attack model trained on half)")
    for name in ("overfit", "regularised"):
        print(f"  {name:12} kerasguard {ours_mia[name]}   ART {art[name]}")
    print(json.dumps({"kerasguard": ours, "kerasguard_membership": ours_mia, "art": art}))


if __name__ == "__main__":
    main()
