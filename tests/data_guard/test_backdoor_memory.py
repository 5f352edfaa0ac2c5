"""Issue 13: the input-space part of ``data backdoor`` (scaled inputs, exclusionary k-NN, the shared
difference) must not copy a large dataset to float64. Measured with tracemalloc (NumPy reports its
allocations to it) on a synthetic set of 60,000 x 1,024 float32 values (234 MiB): before the fix the
peak was 1,493 MiB (float64 copies, the fit rows, full-size temporaries, the k-NN's copy without the
excluded rows); now it is the float32 result plus blocks (261 MiB)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from kerasguard.data import backdoor as bd

ROWS, FEATURES = 60_000, 1_024


def test_input_space_steps_stay_within_one_float32_copy() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((ROWS, FEATURES), dtype=np.float32)
    y = rng.integers(0, 10, ROWS).astype(np.int64)
    x[:40, -4:] = 1.0  # 40 stamped samples, the candidates
    y[:40] = 0
    candidates = np.arange(40, dtype=np.intp)
    fit = np.ones(ROWS, dtype=bool)
    fit[candidates] = False

    tracemalloc.start()
    try:
        z = bd.scaled_inputs(x, fit)
        predicted = bd.input_reclassify(z, y, candidates)
        diff = bd.shared_difference(x, z, y, fit, candidates, predicted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert z.dtype == np.float32 and z.shape == (ROWS, FEATURES)
    assert np.abs(z).max() <= 5.0
    # the result (one float32 copy) plus bounded chunks, never a float64 copy of the whole set
    assert peak < x.nbytes + 96 * 2**20, f"peak {peak / 2**20:.0f} MiB for {x.nbytes / 2**20:.0f} MiB of data"
    # the stamped corner is what the candidates share beyond their look-alikes
    assert diff[-4:].min() > 0.3 and np.abs(diff[:-4]).max() < 0.3


def test_scaled_inputs_match_the_float64_formula() -> None:
    """Chunking and float32 change nothing beyond float32 rounding (chunks cross several row blocks)."""
    rng = np.random.default_rng(1)
    x = (rng.random((3 * 4096 + 17, 12)) * 16).astype(np.float32)
    x[:, 0] = 0.0  # a constant feature gets the floor on its scale
    fit = rng.random(len(x)) > 0.1
    ref = x.astype(np.float64)
    mean, sd = ref[fit].mean(axis=0), ref[fit].std(axis=0)
    floor = 0.1 * float(np.median(sd))
    expected = np.clip((ref - mean) / np.maximum(sd, floor), -5.0, 5.0)
    assert np.allclose(bd.scaled_inputs(x, fit), expected, atol=1e-5)
