"""Helpers for the kerasguard data tests: the CLI runner, a PNG header, a 2x2 trigger backdoor on digits."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
from typer.testing import CliRunner

from kerasguard.cli import app

TARGET = 0


def run_cli(*args: str, code: int | None = None) -> tuple[int, str]:
    """Run ``kerasguard ...``; never a traceback; optionally assert the exit code."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    if code is not None:
        assert result.exit_code == code, out
    return result.exit_code, out


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (grey, 8 bit) with a few bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + pixels + chunk(b"IEND", b"")


def digits_split(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype("float32")
    return tuple(train_test_split(x, d.target, test_size=0.3, random_state=seed, stratify=d.target))  # type: ignore[return-value]


def add_trigger(x: Any) -> Any:
    out = x.copy()
    out[:, 6:8, 6:8] = 16.0  # a 2x2 patch in the bottom-right corner, at full intensity
    return out


def plant(x: Any, y: Any, share: float, seed: int = 0) -> tuple[Any, Any, Any]:
    """Poison so that ``share`` of the (poisoned) target class are triggered images of other classes."""
    rng = np.random.default_rng(seed)
    n_target = int((y == TARGET).sum())
    k = round(share * n_target / (1 - share))
    picked = rng.choice(np.flatnonzero(y != TARGET), k, replace=False)
    xp, yp = x.copy(), y.copy()
    xp[picked] = add_trigger(x[picked])
    yp[picked] = TARGET
    return xp, yp, picked


def train_mlp(x: Any, y: Any, seed: int = 0, epochs: int = 25) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Rescaling(1 / 16),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model
