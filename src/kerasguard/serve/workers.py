"""One sandboxed model per (tenant, model version), fed by its batcher, restarted with backoff.

A worker never shares its process with another tenant or version. When the child dies (a crash, a
SIGKILL, a sandbox limit) the requests of that batch and every queued request get 503, the event is
logged and counted, and the worker loads the model again after an exponential backoff; requests that
arrive meanwhile get 503 with ``Retry-After`` instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from kerasguard.errors import KerasGuardError, ModelError, ProbeError, SandboxError
from kerasguard.escaping import printable
from kerasguard.probe.strip import StripDetector
from kerasguard.robustness.detectors import DetectorSet
from kerasguard.robustness.errors import DetectorFileError
from kerasguard.sandbox.model import SandboxedModel, Served, TensorSpec
from kerasguard.serve.batching import Batcher, Job, Scored, buckets, check_rows, merge, split
from kerasguard.serve.drift import Monitor, log_alarm
from kerasguard.serve.errors import ApiError, unavailable
from kerasguard.serve.metrics import Metrics

log = logging.getLogger("kerasguard.serve.workers")
T = TypeVar("T")


@dataclass(frozen=True)
class ModelRef:
    """A served model version of one tenant, as admitted by the store."""

    tenant: str
    name: str
    version: str
    digest: str
    revision: int = 0  # the store row's revision: a change (a detector attached) reloads the worker

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.tenant, self.name, self.version)


@dataclass(frozen=True)
class WorkerSettings:
    max_batch: int
    batch_wait_s: float
    queue_size: int
    backoff_s: float
    backoff_max_s: float
    drift_window: int = 200
    drift_confidence_drop: float = 0.15
    drift_p_value: float = 0.001


Loader = Callable[[ModelRef], SandboxedModel]
# The detector attached to a version in the store (None: no detector); raises when it fails its checks.
DetectorLoader = Callable[[ModelRef], DetectorSet | None]
# The STRIP detector attached to a version (None: none); raises when it fails its checks.
StripLoader = Callable[[ModelRef], StripDetector | None]


class Worker:
    """The serving loop of one model version: load, take batches, predict, restart on failure."""

    def __init__(
        self,
        ref: ModelRef,
        loader: Loader,
        settings: WorkerSettings,
        metrics: Metrics,
        detector_loader: DetectorLoader | None = None,
        strip_loader: StripLoader | None = None,
    ) -> None:
        self.ref = ref
        self.settings = settings
        self.metrics = metrics
        self.batcher = Batcher(settings.max_batch, settings.batch_wait_s, settings.queue_size)
        self.input_spec: tuple[TensorSpec, ...] = ()
        self.output_spec: tuple[TensorSpec, ...] = ()
        self.state = "starting"
        self.attempted = False  # a first load has finished (well or not): readiness
        self.restarts = 0
        self._loader = loader
        self._detector_loader = detector_loader
        self.monitor: Monitor | None = None  # set when the version has a detector attached
        self._strip_loader = strip_loader
        self.strip: StripDetector | None = None  # set when the version has a STRIP detector attached
        self._rng = np.random.default_rng()  # fresh overlays per batch (a fixed set could be learnt)
        self._model: SandboxedModel | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._running: list[Job] = []  # the batch in the child now

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, *, gauge: bool = True) -> None:
        """Stop now: waiting requests get 404. ``gauge=False`` leaves ``worker_up`` to a replacement."""
        self.state = "stopped"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        gone = ApiError(404, "not_found", "model not found")
        self.batcher.fail_all(gone)
        for job in self._running:
            if not job.future.done():
                job.future.set_exception(gone)
        self._close_model()  # a load still running closes its model itself (it sees "stopped")
        if gauge:
            self.metrics.worker_up.labels(*self.ref.labels).set(0)

    async def retire(self, grace_s: float) -> None:
        """Stop once the requests already given to this worker are answered (at most ``grace_s``): a
        replacement takes the new ones meanwhile, and keeps the ``worker_up`` gauge."""
        deadline = time.monotonic() + grace_s
        while (len(self.batcher) or self._running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.stop(gauge=False)

    @property
    def pid(self) -> int | None:
        model = self._model
        return model.pid if model is not None and not model.closed else None

    def rss_bytes(self) -> int | None:
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    # ------------------------------------------------------------------ requests

    async def predict(self, arrays: list[np.ndarray[Any, Any]], count: int) -> Scored:
        """The outputs for these rows with their OOD scores and STRIP entropies (None without such a
        detector), or ApiError 503 when the worker is down or its queue full."""
        if self.state != "ready":
            wait = max(1.0, self._retry_at - time.monotonic())
            raise unavailable("worker_unavailable", "the model is starting or restarting; retry later", wait)
        future = self.batcher.submit(arrays, count)
        self.metrics.queue_depth.labels(*self.ref.labels).set(len(self.batcher))
        result = await future
        assert isinstance(result, Scored)
        return result

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while self.state != "stopped":
            self.state = "starting"
            try:
                model, monitor, strip = await in_thread(self._load)
            except Exception as exc:  # a refused or failed load: counted, retried later
                self._failed("load", _cause(exc), exc)
                await self._backoff()
                continue
            self._model, self.monitor, self.strip = model, monitor, strip
            self.input_spec, self.output_spec = model.input_spec, model.output_spec
            self.state, self.attempted = "ready", True
            self.metrics.worker_up.labels(*self.ref.labels).set(1)
            log.info("worker %s ready (pid %s)", _label(self.ref), model.pid)
            try:
                await self._serve(model)
            except _WorkerDown as down:
                self.state = "restarting"
                self.metrics.worker_up.labels(*self.ref.labels).set(0)
                self.batcher.fail_all(unavailable("worker_crashed", "the model failed; retry later"))
                await in_thread(self._close_model)
                self._failed("predict", down.cause, down.error)
                await self._backoff()

    def _load(self) -> tuple[SandboxedModel, Monitor | None, StripDetector | None]:
        monitor = self._load_detector()
        strip = self._load_strip()
        model = self._loader(self.ref)
        if self.state == "stopped":  # withdrawn while it loaded: nobody will close it otherwise
            model.close()
            raise _Stopped
        unbatched = [s.name for s in model.output_spec if not s.shape]
        if unbatched:
            model.close()
            raise ModelError(
                f"the gateway serves models whose outputs have a batch axis; {unbatched[0]!r} has none"
            )
        try:
            if monitor is not None:
                self._check_detector_fits(model, monitor)
            if strip is not None:
                self._setup_strip(model, strip)
            # Compile every padded batch size now, when the input shape is fixed (free axes would
            # need a guess that may not fit the model, and a failed call can break its predict).
            fixed = all(d is not None for s in model.input_spec for d in s.shape[1:])
            warm = [np.zeros((1, *(d or 1 for d in s.shape[1:])), dtype=s.dtype) for s in model.input_spec]
            warm = warm if fixed else []
            for size in buckets(self.settings.max_batch) if warm else []:
                batch = [np.repeat(w, size, axis=0) for w in warm]
                self._call(model, monitor, strip, batch if len(batch) > 1 else batch[0], size)
        except ValueError as exc:
            model.close()
            if monitor is not None or strip is not None:
                self.metrics.detector_errors.labels(*self.ref.labels).inc()
            raise ModelError(f"the attached detector does not fit the model: {exc}") from None
        except BaseException:
            model.close()
            raise
        return model, monitor, strip

    def _load_strip(self) -> StripDetector | None:
        if self._strip_loader is None:
            return None
        try:
            return self._strip_loader(self.ref)
        except ProbeError:  # the attachment itself is bad: not served (fail closed)
            self.metrics.detector_errors.labels(*self.ref.labels).inc()
            raise

    def _setup_strip(self, model: SandboxedModel, strip: StripDetector) -> None:
        """The STRIP detector must fit the model (one input of its shape, its number of classes); the
        child keeps the overlays, and whether the model ends in logits is decided from real outputs."""
        from kerasguard.probe.target import Target

        try:
            target = Target.of(model)
            strip.bind(target)  # checks classes and shape, calibrates softmax vs logits on the overlays
        except ProbeError as exc:
            self.metrics.detector_errors.labels(*self.ref.labels).inc()
            raise ModelError(f"the attached STRIP detector does not fit the model: {exc.message}") from None
        model.strip_setup(strip.overlay, strip.lo, strip.hi, logits=not target.outputs_probabilities)

    def _load_detector(self) -> Monitor | None:
        """The attached detector, checked; a detector that fails its checks fails the load (fail
        closed: a version whose monitoring was tampered with is not served)."""
        if self._detector_loader is None:
            return None
        try:
            detector = self._detector_loader(self.ref)
        except DetectorFileError:  # not a store outage: the attachment itself is bad
            self.metrics.detector_errors.labels(*self.ref.labels).inc()
            raise
        if detector is None:
            return None
        s = self.settings
        return Monitor(detector, s.drift_window, s.drift_confidence_drop, s.drift_p_value)

    def _check_detector_fits(self, model: SandboxedModel, monitor: Monitor) -> None:
        """One input and one output of the detector's class count, the head layer's features as wide
        as the detector's, and the squeezed copies answered (each kind scored once at load)."""
        specs = model.input_spec
        if len(specs) != 1 or len(model.output_spec) != 1:
            raise ModelError("an attached detector needs a model with one input and one output")
        warm = np.zeros((1, *(d or 1 for d in specs[0].shape[1:])), dtype=specs[0].dtype)
        try:
            served = model.serve(warm, layer=monitor.head, squeezed=monitor.squeeze(warm))
            classes, fitted = np.asarray(served.outputs).reshape(1, -1).shape[1], monitor.detector.n_classes
            if classes != fitted:
                raise ValueError(f"the model gives {classes} outputs, the detector has {fitted} classes")
            monitor.scores(served.features, served.outputs, list(served.squeezed))
        except (ValueError, ModelError) as exc:
            self.metrics.detector_errors.labels(*self.ref.labels).inc()
            message = exc.message if isinstance(exc, ModelError) else str(exc)
            raise ModelError(f"the attached detector does not fit the model: {message}") from None

    async def _serve(self, model: SandboxedModel) -> None:
        while True:
            batch = await self.batcher.next_batch()
            self._running = batch
            self.metrics.queue_depth.labels(*self.ref.labels).set(len(self.batcher))
            arrays, total = merge(batch)
            self.metrics.batch_size.labels(*self.ref.labels).observe(total)
            x: Any = arrays if len(arrays) > 1 else arrays[0]
            call = functools.partial(self._call, model, self.monitor, self.strip, x, len(arrays[0]))
            try:
                served = await in_thread(call)
                # every per-row answer of the child, not only the outputs: features or squeezed outputs
                # with fewer rows would leave instances without an OOD score (monitoring failing open)
                extras = [part for part in (served.features, served.entropy) if part is not None]
                check_rows([served.outputs, *extras, *served.squeezed], len(arrays[0]))
                ood = None if self.monitor is None else self._score(served, total)
                strip = None if served.entropy is None else self._strip_scores(served.entropy, total)
                split(served.outputs, batch, ood, strip)
            except Exception as exc:  # whatever went wrong with this batch: fail it, restart the child
                error = unavailable("worker_crashed", "the model failed; retry later")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                raise _WorkerDown(_cause(exc), exc) from None
            self._running = []
            self._failures = 0

    def _call(
        self, model: SandboxedModel, monitor: Monitor | None, strip: StripDetector | None, x: Any, size: int
    ) -> Served:
        """One round trip to the child: the outputs and, with detectors, the head layer's input
        features, the outputs on the batch's squeezed copies (squeezed here, in the gateway) and the
        STRIP entropy of every row (overlays drawn afresh for each batch)."""
        picks = None
        if strip is not None:
            picks = self._rng.integers(0, len(strip.overlay), size=(size, strip.n_perturb), dtype=np.int32)
        if monitor is None:
            return model.serve(x, strip_picks=picks)
        return model.serve(x, layer=monitor.head, strip_picks=picks, squeezed=monitor.squeeze(x))

    def _strip_scores(self, entropy: Any, total: int) -> np.ndarray[Any, Any]:
        """STRIP entropies of the real rows, observed in the metrics; flags counted."""
        assert self.strip is not None
        labels = self.ref.labels
        values = np.asarray(entropy, dtype=np.float64)[:total]
        if values.shape != (total,) or not np.all(np.isfinite(values)):
            raise ValueError("the child's STRIP entropies are malformed")
        histogram = self.metrics.strip_entropy.labels(*labels)
        for value in values:
            histogram.observe(float(value))
        flagged = int(np.count_nonzero(values < self.strip.threshold))
        if flagged:
            self.metrics.strip_flags.labels(*labels).inc(flagged)
        return values

    def _score(self, served: Served, total: int) -> dict[str, np.ndarray[Any, Any]]:
        """OOD scores of the real rows (padding dropped) for each applied detector kind, observed in
        the metrics (labelled by kind), and the drift window."""
        assert self.monitor is not None
        labels = self.ref.labels
        features = None if served.features is None else np.asarray(served.features)[:total]
        outputs = np.asarray(_only(served.outputs))[:total]
        squeezed = [np.asarray(s)[:total] for s in served.squeezed]
        scores = self.monitor.scores(features, outputs, squeezed)
        for kind, values in scores.items():
            histogram = self.metrics.ood_score.labels(*labels, kind)
            for value in values:
                histogram.observe(float(value))
            above = int(np.count_nonzero(values > self.monitor.threshold(kind)))
            if above:
                self.metrics.ood_alarms.labels(*labels, kind).inc(above)
        if not np.all(np.isfinite(outputs)):
            outputs = np.nan_to_num(outputs, nan=0.0, posinf=0.0, neginf=0.0)
        for alarm in self.monitor.observe(outputs):
            self.metrics.drift_alarms.labels(*labels, alarm.kind).inc()
            log_alarm(labels, alarm)
        return scores

    def _failed(self, stage: str, cause: str, error: BaseException) -> None:
        self.restarts += 1
        self.metrics.restarts.labels(*self.ref.labels, cause).inc()
        if cause in ("memory", "cpu", "wall", "files"):
            self.metrics.sandbox_kills.labels(cause).inc()
        self.attempted = True
        message = error.message if isinstance(error, KerasGuardError) else f"{type(error).__name__}: {error}"
        # the message may quote the model's own exception text: one escaped line, never a forged one
        log.warning(
            "worker %s failed at %s (%s): %s", _label(self.ref), stage, cause, printable(message, limit=500)
        )

    async def _backoff(self) -> None:
        delay = min(self.settings.backoff_max_s, self.settings.backoff_s * (2**self._failures))
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        self.state = "backoff"
        await asyncio.sleep(delay)

    def _close_model(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            with contextlib.suppress(Exception):
                model.close()


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call (a load, a predict) in a daemon thread: a gateway that shuts down never
    waits for a model that is still loading (its child exits when the gateway's pipes close)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:
            outcome: tuple[bool, Any] = (False, exc)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=target, name="kg-serve-worker", daemon=True).start()
    return await future


def _only(result: Any) -> Any:
    """The one output of a one-output model, however the child shaped the reply."""
    if isinstance(result, dict):
        return next(iter(result.values()))
    if isinstance(result, list | tuple):
        return result[0]
    return result


class _Stopped(Exception):
    pass


class _WorkerDown(Exception):
    def __init__(self, cause: str, error: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause
        self.error = error


def _cause(exc: BaseException) -> str:
    if isinstance(exc, SandboxError):
        return exc.limit or "crash"
    if isinstance(exc, ModelError):
        return "model-error"
    if isinstance(exc, KerasGuardError):
        return "refused"
    return "error"


def _label(ref: ModelRef) -> str:
    return f"{ref.tenant}/{ref.name}:{ref.version}"
