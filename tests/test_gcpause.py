"""The cyclic collector is paused while one file is read and judged, and left as it was found."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kerasguard.gcpause import gc_paused
from kerasguard.scanning.engine import scan


@pytest.fixture
def collections() -> Iterator[list[str]]:
    """Every collection the interpreter starts while the test runs."""
    seen: list[str] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(f"gen{info['generation']}")

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def test_a_large_config_is_read_without_a_collection(tmp_path: Path, collections: list[str]) -> None:
    # tens of thousands of containers: enough allocations for many gen-0 collections otherwise
    layers = [
        {"class_name": "Dense", "config": {"name": f"d{i}", "units": 4, "kernel_initializer": {"seed": [i]}}}
        for i in range(4000)
    ]
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}}))
    assert gc.isenabled()
    scan(path)  # the first scan loads the advisory database and the allowlist: not one file's work
    gc.collect()
    collections.clear()
    report = scan(path)
    in_scan = list(collections)
    assert report.files[0].complete
    assert gc.isenabled()  # enabled again afterwards
    # at most the one collection the allocations of the paused part start when it ends (without the
    # pause: dozens during the read)
    assert len(in_scan) <= 1, in_scan
    # the same work outside the pause does collect: the callback above sees collections
    garbage = [{"k": [i]} for i in range(20_000)]
    assert collections and garbage


def test_the_collector_is_left_as_it_was_found() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it paused
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is kept
    finally:
        gc.enable()
