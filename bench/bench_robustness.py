"""PGD-20 throughput and robust accuracy: kerasguard (JAX, jit-compiled) against ART 1.20.1 (TensorFlow).

Usage:
    .venv/bin/python bench/bench_robustness.py [--reps 5] [--art-python /work/.venv-art/bin/python]

ART runs its Keras attacks only on the TensorFlow backend, so it lives in its own venv
(bench/requirements-art.txt). Both sides attack the same model: kerasguard trains it (digits MLP
64-128-64-10, and a small CNN on the same digits as 8x8x1 images, fixed seeds), exports the weights
as ``.weights.h5``, and the ART side rebuilds the same architecture on TensorFlow and loads them.
Same data (the held-out digits), same attack: L-inf PGD, eps 0.1, step 0.0125, 20 steps, no random
start, true labels, batch 256. Throughput is examples per second of the attack itself; kerasguard's
first call (XLA compilation) is reported separately from its warm median, ART's median is over the
same number of repetitions. Raw results: ``bench/out/robustness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

OUT = ROOT / "bench" / "out"
EPS, STEP, STEPS, BATCH = 0.1, 0.0125, 20, 256

# The same two architectures on both sides (layer for layer).
ARCHITECTURES = """
def build(kind):
    import keras
    if kind == "mlp":
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    return keras.Sequential([keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax")])
"""

ART_SIDE = (
    ARCHITECTURES
    + """
import json, sys, time, statistics
import numpy as np, tensorflow as tf
import art
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import TensorFlowV2Classifier
kind, weights, data, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
eps, step, steps, batch = (float(v) for v in sys.argv[5:9])
model = build(kind)
model.load_weights(weights)
with np.load(data) as d:
    x, y = d["x"], d["y"]
clf = TensorFlowV2Classifier(model, nb_classes=10, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
    loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=False))
attack = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=step, max_iter=int(steps),
    num_random_init=0, batch_size=int(batch), targeted=False, verbose=False)
onehot = np.eye(10, dtype=np.float32)[y]
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    x_adv = attack.generate(x, y=onehot)
    times.append(time.perf_counter() - t0)
pred = clf.predict(x_adv, batch_size=int(batch)).argmax(1)
clean = clf.predict(x, batch_size=int(batch)).argmax(1)
print(json.dumps({"art": art.__version__, "tensorflow": tf.__version__, "times": times,
    "clean_accuracy": float((clean == y).mean()), "robust_accuracy": float((pred == y).mean())}))
"""
)


def train(kind: str, x: Any, y: Any) -> Any:
    import keras

    namespace: dict[str, Any] = {}
    exec(ARCHITECTURES, namespace)
    keras.utils.set_random_seed(0)
    model = namespace["build"](kind)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    return model


def kerasguard_side(model: Any, data: Any, reps: int) -> dict[str, Any]:
    from kerasguard.robustness import AttackSpec, as_classifier, run_attack

    classifier = as_classifier(model)
    spec = AttackSpec("pgd", EPS, "linf", steps=STEPS, step_size=STEP, random_start=False)
    started = time.perf_counter()
    first = run_attack(classifier, data, spec, batch_size=BATCH)
    cold = time.perf_counter() - started
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        outcome = run_attack(classifier, data, spec, batch_size=BATCH)
        times.append(time.perf_counter() - started)
    assert outcome.robust_accuracy == first.robust_accuracy
    import numpy as np

    from kerasguard.robustness.engines import predict_batched

    clean = np.argmax(predict_batched(classifier, data.x, BATCH), axis=1)
    return {
        "cold_s": cold,
        "times": times,
        "clean_accuracy": float(np.mean(clean == data.y)),
        "robust_accuracy": outcome.robust_accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--art-python", default="/work/.venv-art/bin/python")
    args = parser.parse_args()

    import jax
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from kerasguard.robustness import make_dataset

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    results: dict[str, Any] = {"jax": jax.__version__, "keras": keras.__version__, "cpus": os.cpu_count()}
    results["load_average"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("mlp", "cnn"):
            shape = (-1, 64) if kind == "mlp" else (-1, 8, 8, 1)
            model = train(kind, x[:1000].reshape(shape), y[:1000])
            weights = Path(tmp) / f"{kind}.weights.h5"
            model.save_weights(weights)
            held_out = make_dataset(x[1000:].reshape(shape), y[1000:], clip_min=0.0, clip_max=1.0)
            data_file = Path(tmp) / f"{kind}.npz"
            np.savez(data_file, x=held_out.x, y=held_out.y)
            ours = kerasguard_side(model, held_out, args.reps)
            env = {
                **os.environ,
                "KERAS_BACKEND": "tensorflow",
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "CUDA_VISIBLE_DEVICES": "",
            }
            command = [args.art_python, "-c", ART_SIDE, kind, str(weights), str(data_file), str(args.reps)]
            command += [str(EPS), str(STEP), str(STEPS), str(BATCH)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=3600)
            if done.returncode != 0:
                raise SystemExit(f"ART side failed:\n{done.stderr[-4000:]}")
            theirs = json.loads(done.stdout.strip().splitlines()[-1])
            n = len(held_out)
            ours_eps = n / statistics.median(ours["times"])
            theirs_eps = n / statistics.median(theirs["times"])
            results[kind] = {"examples": n, "kerasguard": ours, "art": theirs}
            gap = 100 * abs(ours["robust_accuracy"] - theirs["robust_accuracy"])
            lines = [
                f"{kind}: {n} examples, PGD-{STEPS} L-inf eps {EPS}",
                f"  kerasguard (jax): robust {100 * ours['robust_accuracy']:.1f}%"
                f" (clean {100 * ours['clean_accuracy']:.1f}%), {ours_eps:,.0f} ex/s warm,"
                f" first call {ours['cold_s']:.2f} s",
                f"  ART {theirs['art']} (tf {theirs['tensorflow']}):"
                f" robust {100 * theirs['robust_accuracy']:.1f}%"
                f" (clean {100 * theirs['clean_accuracy']:.1f}%), {theirs_eps:,.0f} ex/s",
                f"  speed-up {ours_eps / theirs_eps:.1f}x warm, {n / ours['cold_s'] / theirs_eps:.1f}x with"
                f" compilation; robust accuracy gap {gap:.1f} points",
            ]
            print("\n".join(lines), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "robustness.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
