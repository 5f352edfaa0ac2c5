"""Real Keras files saved once per test process (building models is the slow part of these tests)."""

from __future__ import annotations

import functools
from pathlib import Path

from support import workdirs


@functools.cache
def saved(builder: str = "mlp", form: str = "keras") -> Path:
    """A model from ``kmodels.BENIGN`` saved by Keras as ``keras`` (zip), ``npz`` (zip with npz
    weights) or ``dir`` (unzipped directory). Never modify the returned file: copy it first."""
    from keras.src.saving import saving_lib

    from support import kmodels

    root = workdirs.shared_dir("kerasfiles")
    model = kmodels.BENIGN[builder]()
    if form == "keras":
        path = root / f"{builder}.keras"
        model.save(path)
    elif form == "npz":
        path = root / f"{builder}_npz.keras"
        saving_lib.save_model(model, str(path), weights_format="npz")
    elif form == "dir":
        path = root / f"{builder}_dir"
        saving_lib.save_model(model, str(path), zipped=False)
    else:
        raise ValueError(form)
    return path
