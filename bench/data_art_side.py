"""The peer side of bench/bench_data.py, run in the ART venv (never kerasguard's): ART 1.20.1's
SpectralSignatureDefense and ActivationDefence on the TensorFlow backend, and kerasguard's own
detector on another backend (tensorflow or torch), over the exact model and data bench_data.py wrote.

    KERAS_BACKEND=tensorflow /work/.venv-art/bin/python bench/data_art_side.py CASE_DIR art
    KERAS_BACKEND=torch PYTHONPATH=src /work/.venv-art/bin/python bench/data_art_side.py CASE_DIR kerasguard

Prints one JSON object: {method: {"flagged": [indices], "seconds": s}}.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def art(case: Path) -> dict[str, object]:
    import keras
    import tensorflow as tf
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import TensorFlowV2Classifier

    data = np.load(case / "train.npz")
    x, y = data["x"].astype("float32"), data["y"]
    model = keras.saving.load_model(case / "model.keras")
    classifier = TensorFlowV2Classifier(
        model=model,
        nb_classes=10,
        input_shape=x.shape[1:],
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(),
        clip_values=(0.0, 16.0),
    )
    onehot = np.eye(10)[y]
    out: dict[str, object] = {}
    start = time.perf_counter()
    spectral = SpectralSignatureDefense(
        classifier, x, onehot, batch_size=128, eps_multiplier=1.5, expected_pp_poison=0.33
    )
    _, clean = spectral.detect_poison()
    out["art_spectral"] = {
        "flagged": np.flatnonzero(np.asarray(clean) == 0).tolist(),
        "seconds": time.perf_counter() - start,
    }
    for analysis in ("smaller", "silhouette-scores"):
        start = time.perf_counter()
        defence = ActivationDefence(classifier, x, onehot)
        _, clean = defence.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA", cluster_analysis=analysis)
        out[f"art_activation_{analysis}"] = {
            "flagged": np.flatnonzero(np.asarray(clean) == 0).tolist(),
            "seconds": time.perf_counter() - start,
        }
    return out


def kerasguard_other_backend(case: Path) -> dict[str, object]:
    import keras

    from kerasguard.data import find_backdoor

    data = np.load(case / "train.npz")
    model = keras.saving.load_model(case / "model.keras")
    x = data["x"].astype("float32")
    start = time.perf_counter()
    report = find_backdoor(model, x, data["y"])
    seconds = time.perf_counter() - start
    # TrainingGuard's per-epoch gradient-norm probe on this backend
    from kerasguard import TrainingGuard

    guard = TrainingGuard(action="log", monitor_data=(x[:256], data["y"][:256]))
    clone = keras.models.clone_model(model)
    clone.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    clone.fit(x, data["y"], epochs=2, batch_size=32, verbose=0, callbacks=[guard])
    return {
        f"kerasguard_{keras.backend.backend()}": {
            "flagged": list(report.flagged_indices),
            "seconds": seconds,
            "kgd201": [f.location.pointer for f in report.findings if f.rule_id == "KGD201"],
            "guard_gradient_norms": [e.get("monitor_gradient_norm") for e in guard.epochs],
        }
    }


if __name__ == "__main__":
    case_dir, which = Path(sys.argv[1]), sys.argv[2]
    result = art(case_dir) if which == "art" else kerasguard_other_backend(case_dir)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
