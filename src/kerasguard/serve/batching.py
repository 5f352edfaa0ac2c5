"""Dynamic batching: requests for one model version waiting together become one ``predict`` call.

A request that finds the queue empty is sent alone at once (an idle model adds no wait). When
requests queue up (the worker is busy with the previous batch), the next batch takes every compatible
waiting request and waits up to ``max_wait`` for more, until it holds ``max_batch`` instances: a busy
model pays the sandbox's IPC cost once per batch. Only requests whose inputs agree on every axis but
the first are merged; the others wait for the next batch. Batches are padded (1, 2, 4, 8, then multiples
of 8), so the model compiles for a few shapes (warmed up at load) instead of one per batch size.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasguard.serve.errors import unavailable


@dataclass
class Job:
    arrays: list[np.ndarray[Any, Any]]
    count: int
    future: asyncio.Future[Any]
    shapes: tuple[tuple[int, ...], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.shapes = tuple(a.shape[1:] for a in self.arrays)


class Batcher:
    """A bounded queue of jobs for one worker, taken out in batches."""

    def __init__(self, max_batch: int, max_wait_s: float, queue_size: int) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._jobs: collections.deque[Job] = collections.deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._jobs)

    def submit(self, arrays: list[np.ndarray[Any, Any]], count: int) -> asyncio.Future[Any]:
        if len(self._jobs) >= self.queue_size:
            raise unavailable("queue_full", "the model is busy; retry later")
        job = Job(arrays, count, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._ready.set()
        return job.future

    async def next_batch(self) -> list[Job]:
        """Wait for work, then collect compatible jobs until the batch is full or max_wait passed."""
        while True:
            self._drop_cancelled()
            if self._jobs:
                break
            self._ready.clear()
            await self._ready.wait()
        first = self._jobs.popleft()
        batch, total = [first], first.count
        if not self._jobs:  # nobody else waiting: an idle model answers at once
            return batch
        deadline = time.monotonic() + self.max_wait_s
        while total < self.max_batch:
            total += self._take_compatible(first.shapes, batch, self.max_batch - total)
            remaining = deadline - time.monotonic()
            if total >= self.max_batch or remaining <= 0:
                break
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                total += self._take_compatible(first.shapes, batch, self.max_batch - total)
                break
        return batch

    def _take_compatible(self, shapes: tuple[tuple[int, ...], ...], batch: list[Job], room: int) -> int:
        taken = 0
        kept: collections.deque[Job] = collections.deque()
        while self._jobs:
            job = self._jobs.popleft()
            if job.future.done():
                continue
            if job.shapes == shapes and job.count <= room - taken:
                batch.append(job)
                taken += job.count
            else:
                kept.append(job)
        self._jobs = kept
        return taken

    def _drop_cancelled(self) -> None:
        if any(j.future.done() for j in self._jobs):
            self._jobs = collections.deque(j for j in self._jobs if not j.future.done())

    def fail_all(self, error: BaseException) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(error)


STEP = 8  # above 8 rows, batch sizes are padded to a multiple of 8


def bucket(n: int) -> int:
    """The padded batch size: 1, 2, 4, 8, then the next multiple of 8 (at most 7 wasted rows, where the
    next power of two wasted up to half the batch of a compute-bound model)."""
    if n <= STEP:
        return 1 << max(0, (n - 1).bit_length())
    return -(-n // STEP) * STEP


def buckets(max_batch: int) -> list[int]:
    """Every padded size a batch of at most ``max_batch`` rows can have (compiled at load)."""
    return sorted({bucket(n) for n in range(1, max_batch + 1)})


def merge(batch: list[Job]) -> tuple[list[np.ndarray[Any, Any]], int]:
    """One array per input with every job's instances, zero-padded to the bucket size."""
    total = sum(j.count for j in batch)
    padded = bucket(total)
    merged = []
    for i in range(len(batch[0].arrays)):
        parts = [j.arrays[i] for j in batch]
        if padded > total:
            parts.append(np.zeros((padded - total, *parts[0].shape[1:]), dtype=parts[0].dtype))
        merged.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return merged, total


@dataclass(frozen=True)
class Scored:
    """A job's outputs with, per instance, its OOD scores (by detector kind) and its STRIP entropy
    (None: no such detector)."""

    outputs: Any
    ood: dict[str, np.ndarray[Any, Any]] | None = None
    strip: np.ndarray[Any, Any] | None = None


def split(
    result: Any,
    batch: list[Job],
    ood: dict[str, np.ndarray[Any, Any]] | None = None,
    strip: np.ndarray[Any, Any] | None = None,
) -> None:
    """Hand each job its rows of the outputs (padding rows dropped), with its detectors' scores."""
    start = 0
    for job in batch:
        end = start + job.count
        if not job.future.done():
            rows = _rows(result, start, end)
            job.future.set_result(
                Scored(
                    rows,
                    None if ood is None else {k: v[start:end] for k, v in ood.items()},
                    None if strip is None else strip[start:end],
                )
            )
        start = end


def check_rows(result: Any, size: int) -> None:
    """Every output must have one row per instance of the (padded) batch: rows are handed to their
    requests by position, so an output of another length (a model that drops, adds or reduces rows)
    must fail the batch, never shift one caller's rows into another's answer."""
    values = (
        result.values()
        if isinstance(result, dict)
        else result
        if isinstance(result, list | tuple)
        else [result]
    )
    for value in values:
        shape = np.shape(value)
        if not shape or shape[0] != size:
            raise ValueError(f"the model returned an output of shape {shape} for a batch of {size}")


def _rows(result: Any, start: int, end: int) -> Any:
    if isinstance(result, dict):
        return {k: np.asarray(v)[start:end] for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [np.asarray(v)[start:end] for v in result]
    return np.asarray(result)[start:end]
