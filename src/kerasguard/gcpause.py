"""Pausing Python's cyclic garbage collector around work that allocates many short-lived objects.

Reading one model (a config of thousands of dicts, an HDF5 tree of thousands of objects) and storing
thousands of rows build trees that reference counting frees; the collector's passes over them, and
over everything else alive in the process, find nothing to collect there and only cost time.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block; the collector is enabled again after it if it was before
    (nested or concurrent blocks leave it as the outermost found it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
