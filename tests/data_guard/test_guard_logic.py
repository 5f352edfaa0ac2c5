"""TrainingGuard's judgement, fed the running means Keras 3 hands callbacks (no training: fast)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.keras


def _guard(**kwargs: Any) -> Any:
    from kerasguard import TrainingGuard

    guard = TrainingGuard(**kwargs)
    guard.set_model(SimpleNamespace(stop_training=False))
    return guard


def _feed(guard: Any, losses: list[float], accs: list[float] | None = None, epoch: int = 0) -> None:
    """Play per-batch values as Keras reports them: the epoch's running means."""
    guard.on_epoch_begin(epoch)
    total_loss = total_acc = 0.0
    for i, loss in enumerate(losses):
        total_loss += loss
        logs = {"loss": total_loss / (i + 1)}
        if accs is not None:
            total_acc += accs[i]
            logs["accuracy"] = total_acc / (i + 1)
        guard.on_train_batch_end(i, logs)


def _noisy(n: int, base: float, spread: float) -> list[float]:
    return [base + spread * ((i * 7) % 5 - 2) / 2 for i in range(n)]


def test_batch_values_are_recovered_from_running_means() -> None:
    guard = _guard(action="log")
    values = _noisy(30, 1.0, 0.1)
    _feed(guard, values)
    assert list(guard._losses) == pytest.approx(values)


def test_spike_stops_and_poisoned_batches_stay_out_of_the_history() -> None:
    guard = _guard(action="stop")
    _feed(guard, [*_noisy(30, 1.0, 0.1), 9.0, 9.5])
    assert guard.model.stop_training is True
    assert [a["id"] for a in guard.anomalies] == ["KGD301", "KGD301"]
    assert guard.anomalies[0]["batch"] == 30
    assert max(guard._losses) < 2.0  # the poisoned batches did not become the new normal


def test_collapse_and_accuracy_drop_are_reported_with_warn() -> None:
    guard = _guard(action="warn")
    losses = [*_noisy(30, 1.0, 0.05), 0.01]
    accs = [*[0.9 + 0.01 * ((i * 3) % 3) for i in range(30)], 0.2]
    with pytest.warns(RuntimeWarning, match="KGD30"):
        _feed(guard, losses, accs)
    assert {a["id"] for a in guard.anomalies} == {"KGD302", "KGD303"}
    assert guard.model.stop_training is False  # warn never stops


def test_ordinary_noise_and_a_slow_decline_raise_nothing() -> None:
    guard = _guard(action="stop")
    _feed(guard, [2.0 * 0.98**i + 0.05 * ((i * 7) % 5 - 2) for i in range(200)])
    assert guard.anomalies == [] and guard.model.stop_training is False


def test_per_class_drift() -> None:
    guard = _guard(action="log")
    guard._judge_drift({c: 1.0 for c in range(10)}, 0)
    guard._judge_drift({**{c: 0.8 for c in range(10)}, 3: 1.6}, 1)
    assert [(a["id"], a["epoch"]) for a in guard.anomalies] == [("KGD304", 1)]
    assert "class 3" in guard.anomalies[0]["message"]


def test_non_finite_loss_is_a_spike() -> None:
    guard = _guard(action="stop")
    _feed(guard, [1.0, float("nan")])
    assert guard.anomalies[0]["id"] == "KGD301" and guard.model.stop_training is True


def test_unwritable_record_warns_instead_of_crashing_the_run(tmp_path: Any) -> None:
    guard = _guard(action="log", record_path=tmp_path / "missing-dir" / "record.json")
    guard.set_model(SimpleNamespace(stop_training=False, optimizer=None))
    guard.params = {"epochs": 1}
    with pytest.warns(RuntimeWarning, match="not written"):
        guard.on_train_end()
    assert guard.record is not None and guard.record["stopped"] is False
