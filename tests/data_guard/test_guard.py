"""TrainingGuard on real training: quiet on a clean run, stops a run fed a poisoned batch stream, and
its training record lands in the model store as a sealed attachment (`store push --training-record`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.errors import DataError
from support.dghelp import run_cli
from support.digitsets import digits_split

pytestmark = [pytest.mark.slow, pytest.mark.keras]


def _model(seed: int = 0) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Rescaling(1 / 16),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _stream(x: np.ndarray, y: np.ndarray, poison_from: int | None) -> Any:
    """Batches of 32; from batch ``poison_from`` on, inputs blown up and labels shuffled."""
    import keras

    class Stream(keras.utils.PyDataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return len(x) // 32

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            bx, by = x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]
            if poison_from is not None and i >= poison_from:
                rng = np.random.default_rng(i)
                return bx * 40.0, rng.permutation((by + 3) % 10)
            return bx, by

    return Stream()


def test_guard_is_quiet_on_clean_training_and_writes_a_record(tmp_path: Path) -> None:
    from kerasguard import TrainingGuard

    x_train, x_test, y_train, y_test = digits_split()
    x, xt = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    guard = TrainingGuard(
        action="stop", record_path=tmp_path / "record.json", data_manifest="sha256:" + "a" * 64,
        hyperparameters={"lr": 0.001}, monitor_data=(xt, y_test),
    )  # fmt: skip
    history = _model().fit(x, y_train, epochs=3, batch_size=32, verbose=0, callbacks=[guard])
    assert len(history.history["loss"]) == 3
    assert [a for a in guard.anomalies if a["severity"] == "high"] == []
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["stopped"] is False and record["data_manifest"] == "sha256:" + "a" * 64
    assert record["hyperparameters"]["lr"] == 0.001 and record["hyperparameters"]["fit"]["epochs"] == 3
    assert len(record["metrics"]) == 3 and "per_class_loss" in record["metrics"][0]
    assert record["metrics"][-1]["monitor_gradient_norm"] > 0  # measured through jax.grad on this backend


def test_guard_stops_a_poisoned_stream_and_the_record_lands_in_the_store(tmp_path: Path) -> None:
    from kerasguard import TrainingGuard

    x_train, _, y_train, _ = digits_split()
    x = x_train.reshape(len(x_train), -1)
    record_path = tmp_path / "record.json"
    guard = TrainingGuard(action="stop", record_path=record_path, data_manifest="sha256:" + "b" * 64)
    model = _model()
    # epoch 1 clean, epoch 2 turns poisoned at batch 20 of 39
    model.fit(_stream(x, y_train, None), epochs=1, verbose=0, shuffle=False)
    history = model.fit(_stream(x, y_train, 20), epochs=5, verbose=0, shuffle=False, callbacks=[guard])
    assert guard.stopped_reason is not None and "KGD301" in guard.stopped_reason
    assert len(history.history["loss"]) == 1  # stopped during the first epoch, not after five
    first = guard.anomalies[0]
    assert first["id"] == "KGD301" and first["batch"] == 20  # the first poisoned batch, no earlier
    record = json.loads(record_path.read_text())
    assert record["stopped"] is True and record["anomalies"][0]["id"] == "KGD301"

    model_path = tmp_path / "m.keras"
    model.save(model_path)
    policy = tmp_path / "kerasguard.toml"
    policy.write_text('[store]\nsources = ["https://huggingface.co/acme"]\n')
    env = {
        "KERASGUARD_STORE": str(tmp_path / "store"),
        "KERASGUARD_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "KERASGUARD_MASTER_KEY": "",
        "KERASGUARD_STORE_TOKEN": "",
    }

    def store(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(
            app,
            ["store", *args],
            env=env,
            catch_exceptions=False,
        )
        out = result.stdout + result.stderr
        assert result.exit_code == code, out
        assert "Traceback" not in out
        return result.stdout

    pol = ["--policy", str(policy)]
    store("keygen", str(tmp_path / "master.key"))
    admin = store("init").strip()
    env["KERASGUARD_STORE_TOKEN"] = admin
    pub = store("token", "create", "--role", "publisher", "-n", "team", *pol).strip()
    env["KERASGUARD_STORE_TOKEN"] = pub
    pushed = json.loads(
        store("push", str(model_path), "--name", "m", "--version", "1", "--source", "https://huggingface.co/acme/m",
              "--training-record", str(record_path), "-n", "team", "--json", *pol)
    )  # fmt: skip
    assert pushed["status"] == "admitted"
    (sealed,) = pushed["attachments"]  # a sealed attachment: its own encrypted blob, digest recorded
    assert sealed["kind"] == "training_record" and sealed["digest"].startswith("sha256:")
    assert sealed["summary"]["anomaly_count"] == len(record["anomalies"])
    assert "training_record" not in pushed["provenance"]["client"]
    shown = store("show", "m", "1", "-n", "team", *pol)
    assert "stopped" in shown and "KGD301" in shown and "sha256:" + "b" * 64 in shown

    # a file that is not a training record is refused before anything is stored
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"schema": "something-else"}')
    store("push", str(model_path), "--name", "m", "--version", "2", "--source", "https://huggingface.co/acme/m",
          "--training-record", str(bogus), "-n", "team", *pol, code=2)  # fmt: skip


def test_guard_rejects_bad_settings() -> None:
    from kerasguard import TrainingGuard

    with pytest.raises(DataError):
        TrainingGuard(action="explode")
    with pytest.raises(DataError):
        TrainingGuard(window=4, min_history=8)
    run_cli("data", "--help", code=0)
