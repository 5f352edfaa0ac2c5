"""The FastAPI application: routes, the order of checks on a predict request, the OpenAPI contract.

Order on predict: API key (401) -> this process's count of the key's requests (429) -> the model among
the caller's tenant's served versions (404, the same body for an unknown model and another tenant's) ->
content type (415) -> per-key concurrency (429) -> body, read through the guard (413, 408) -> validation
(400, 422) -> request and element rates, shared, in one round trip (429; a request refused before this
is still counted) -> the worker's queue (503) -> predict within the request deadline (504; 503 if the
model died) -> the STRIP check when a detector is attached (422 ``strip`` under ``strip_action =
"reject"``).
There is no management endpoint on the API and no route takes a path or URL from the client; the review
console (``[serve] console``, docs/console.md) is mounted under ``/console/`` with its own login.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from kerasguard.policy import Policy
from kerasguard.serve import validation
from kerasguard.serve.auth import Caller, KeyCache
from kerasguard.serve.errors import ApiError, not_found
from kerasguard.serve.guard import Guard
from kerasguard.serve.metrics import Metrics
from kerasguard.serve.ratelimit import RateLimits
from kerasguard.serve.registry import Registry, StoreAccess
from kerasguard.serve.workers import Worker, WorkerSettings

log = logging.getLogger("kerasguard.serve")
OOD_HEADER = "X-KerasGuard-OOD-Score"  # one score per instance, comma-separated, when the policy asks
STRIP_HEADER = "X-KerasGuard-STRIP-Entropy"  # one entropy per instance, when the policy asks
STRIP_FLAG_HEADER = "X-KerasGuard-STRIP-Flagged"  # indices of the flagged instances (strip_action flag)
OFFLOAD_PARSE_BYTES = 64 * 1024


class ErrorBody(BaseModel):
    error: str
    reason: str


class TensorInfo(BaseModel):
    name: str
    shape: list[int | None]
    dtype: str


class VersionInfo(BaseModel):
    version: str
    state: str
    digest: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class ModelInfo(BaseModel):
    name: str
    default_version: str | None
    versions: list[VersionInfo]


class ModelList(BaseModel):
    models: list[ModelInfo]


class PredictResponse(BaseModel):
    predictions: Any = None
    outputs: Any = None


class Status(BaseModel):
    status: str


def _err(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": 'TF Serving layout: {"instances": [...]} or {"inputs": {...}}',
                    "properties": {
                        "instances": {"type": "array"},
                        "inputs": {},
                        "signature_name": {"type": "string"},
                    },
                }
            },
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
PREDICT_ERRORS = _err(400, 401, 404, 408, 413, 415, 422, 429, 503, 504)


class Gateway:
    """The parts one gateway process runs, shared by the routes."""

    def __init__(self, access: StoreAccess, policy: Policy) -> None:
        serve = policy.serve
        self.policy = policy
        self.metrics = Metrics()
        settings = WorkerSettings(
            max_batch=serve.max_batch,
            batch_wait_s=serve.batch_wait_ms / 1000,
            queue_size=serve.queue_size,
            backoff_s=serve.restart_backoff_s,
            backoff_max_s=serve.restart_backoff_max_s,
            drift_window=serve.drift_window,
            drift_confidence_drop=serve.drift_confidence_drop,
            drift_p_value=serve.drift_p_value,
        )
        self.registry = Registry(access, settings, self.metrics)
        self.keys = KeyCache(access.authenticate, serve.key_cache_seconds)
        self.limits = RateLimits(serve)
        self.inflight: Counter[str] = Counter()
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in serve.ranges.items()}

    def checks(self, model: str) -> validation.Checks:
        prefix = model + "/"
        ranges = {k[len(prefix) :]: v for k, v in self.ranges.items() if k.startswith(prefix)}
        return validation.Checks(self.policy.serve.max_instances, self.policy.serve.max_body_bytes, ranges)

    async def authenticate(self, request: Request) -> Caller:
        caller = await self.keys.caller(request.headers.get("authorization"))
        request.state.tenant, request.state.key_id = caller.tenant, caller.key_id
        await self.limits.request(caller.tenant, caller.key_id)
        return caller

    def describe(self, name: str, workers: list[Worker]) -> ModelInfo:
        def tensors(specs: Any) -> list[TensorInfo]:
            return [TensorInfo(name=s.name, shape=list(s.shape), dtype=s.dtype) for s in specs]

        tenant = workers[0].ref.tenant
        return ModelInfo(
            name=name,
            default_version=self.registry.latest.get((tenant, name)),
            versions=[
                VersionInfo(
                    version=w.ref.version,
                    state=w.state,
                    digest=w.ref.digest,
                    inputs=tensors(w.input_spec),
                    outputs=tensors(w.output_spec),
                )
                for w in workers
            ],
        )

    async def predict(self, request: Request, name: str, version: str | None) -> Response:
        caller = await self.keys.caller(request.headers.get("authorization"))
        request.state.tenant, request.state.key_id = caller.tenant, caller.key_id
        self.limits.precheck(caller.key_id)
        try:
            return await self._predict(request, caller, name, version)
        except ApiError as exc:
            if not exc.counted:  # refused before the shared count: count the request now
                await self.limits.request(caller.tenant, caller.key_id)
            raise

    async def _predict(self, request: Request, caller: Caller, name: str, version: str | None) -> Response:
        worker = self.registry.find(caller.tenant, name, version)
        if worker is None:
            raise not_found()
        state = request.state
        state.model, state.version, state.digest = name, worker.ref.version, worker.ref.digest
        kind = validation.media_type(request.headers.get("content-type"))
        serve = self.policy.serve
        if self.inflight[caller.key_id] >= serve.max_concurrent_per_key:
            raise ApiError(429, "concurrency", "too many requests in flight for this key", retry_after=1)
        self.inflight[caller.key_id] += 1
        start = time.perf_counter()
        status = "error"
        counted = False
        try:
            body = await request.body()
            checks = self.checks(name)
            if len(body) > OFFLOAD_PARSE_BYTES:
                loop = asyncio.get_running_loop()
                parsed = await loop.run_in_executor(
                    None, validation.parse, kind, body, worker.input_spec, checks
                )
            else:
                parsed = validation.parse(kind, body, worker.input_spec, checks)
            state.instances = parsed.count
            counted = True
            await self.limits.predict(caller.tenant, caller.key_id, parsed.elements)
            remaining = serve.request_timeout_s - (time.perf_counter() - start)
            try:
                scored = await asyncio.wait_for(
                    worker.predict(parsed.arrays, parsed.count), max(remaining, 0.001)
                )
            except TimeoutError:
                raise ApiError(
                    504, "deadline", "the model did not answer within the request deadline"
                ) from None
            headers = {}
            if scored.strip is not None:
                headers.update(self.strip_verdict(request, worker, scored.strip))
            names = [s.name for s in worker.output_spec]
            payload = validation.encode_outputs(scored.outputs, names, parsed.layout)
            status = "ok"
            if scored.ood is not None and serve.ood_header:
                headers.update(ood_headers(scored.ood))
            return Response(
                json.dumps(payload, separators=(",", ":")), media_type="application/json", headers=headers
            )
        except ApiError as exc:
            exc.counted = counted
            raise
        finally:
            self.inflight[caller.key_id] -= 1
            if self.inflight[caller.key_id] <= 0:
                del self.inflight[caller.key_id]
            self.metrics.latency.labels(caller.tenant, name, worker.ref.version, status).observe(
                time.perf_counter() - start
            )

    def strip_verdict(self, request: Request, worker: Worker, entropy: Any) -> dict[str, str]:
        """Instances below the STRIP threshold: 422 ``strip`` (policy ``reject``) or served with their
        indices in a header and the access log (``flag``)."""
        serve = self.policy.serve
        strip = worker.strip
        headers = {}
        if serve.strip_header:
            headers[STRIP_HEADER] = ",".join(f"{float(v):.6g}" for v in entropy)
        flagged = [] if strip is None else [i for i, v in enumerate(entropy) if v < strip.threshold]
        if not flagged:
            return headers
        request.state.strip_flagged = len(flagged)
        if serve.strip_action == "reject":
            raise ApiError(
                422, "strip", f"{len(flagged)} instance(s) look like carrying a backdoor trigger (STRIP)"
            )
        headers[STRIP_FLAG_HEADER] = ",".join(str(i) for i in flagged[:256])
        return headers

    def update_gauges(self) -> None:
        for worker in self.registry.all_workers():
            rss = worker.rss_bytes()
            self.metrics.worker_rss.labels(*worker.ref.labels).set(rss or 0)
            self.metrics.queue_depth.labels(*worker.ref.labels).set(len(worker.batcher))


def ood_headers(scores: dict[str, Any]) -> dict[str, str]:
    """``X-KerasGuard-OOD-Score`` with the primary kind's scores (the first: mahalanobis when the
    detector has it, as before other kinds were served), and ``X-KerasGuard-OOD-Score-<Kind>`` for
    every applied kind (``-Mahalanobis``, ``-Max-Softmax``, ``-Energy``, ``-Squeeze``)."""
    headers: dict[str, str] = {}
    for kind, values in scores.items():
        text = ",".join(f"{float(v):.6g}" for v in values)
        headers.setdefault(OOD_HEADER, text)
        headers[f"{OOD_HEADER}-{kind.title()}"] = text
    return headers


def create_app(access: StoreAccess, policy: Policy) -> Any:
    """The ASGI application (FastAPI wrapped in the guard) for one gateway process."""
    gateway = Gateway(access, policy)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(gateway.registry.run(policy.serve.poll_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await gateway.registry.close()

    app = FastAPI(
        title="kerasguard serve",
        version="1",
        description="Authenticated, rate-limited inference on sandboxed Keras models (docs/serve.md).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        request.state.reason = exc.reason
        return Response(
            exc.body(), status_code=exc.status, headers=exc.headers(), media_type="application/json"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            error = ApiError(405, "method_not_allowed", "method not allowed")
        else:
            error = ApiError(404, "not_found", "not found")
        request.state.reason = error.reason
        return Response(error.body(), status_code=error.status, media_type="application/json")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled %s on %s", type(exc).__name__, request.url.path[:200])
        error = ApiError(503, "unavailable", "the request failed")
        request.state.reason = error.reason
        return Response(error.body(), status_code=503, headers=error.headers(), media_type="application/json")

    @app.get("/healthz", response_model=Status, tags=["health"])
    async def healthz() -> Status:
        """Liveness: the process answers."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, responses={503: {"model": Status}}, tags=["health"])
    async def readyz() -> Response:
        """Readiness: the store answered, every served model has finished its first load, and the
        rate-limit storage answers (unless ``on_storage_error = "allow"``: it serves without)."""
        if not gateway.registry.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        limits = gateway.limits
        if not limits.fail_open and not await limits.available():
            return JSONResponse({"status": "limiter_unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        """Prometheus metrics of this gateway process."""
        gateway.update_gauges()
        data, content_type = gateway.metrics.render()
        return Response(data, media_type=content_type.split(";")[0], headers={"content-type": content_type})

    @app.get("/v1/models", response_model=ModelList, responses=_err(401, 429, 503), tags=["models"])
    async def list_models(request: Request) -> ModelList:
        """The caller's tenant's served models and versions."""
        caller = await gateway.authenticate(request)
        models = gateway.registry.models(caller.tenant)
        return ModelList(models=[gateway.describe(name, ws) for name, ws in sorted(models.items())])

    @app.get(
        "/v1/models/{name}", response_model=ModelInfo, responses=_err(401, 404, 429, 503), tags=["models"]
    )
    async def show_model(request: Request, name: str) -> ModelInfo:
        """One model: its served versions with their input and output signatures."""
        caller = await gateway.authenticate(request)
        workers = gateway.registry.models(caller.tenant).get(name)
        if not workers:
            raise not_found()
        return gateway.describe(name, workers)

    @app.post(
        "/v1/models/{name}/versions/{version}:predict",
        response_model=PredictResponse,
        responses=PREDICT_ERRORS,
        openapi_extra=PREDICT_BODY,
        tags=["predict"],
    )
    async def predict_version(request: Request, name: str, version: str) -> Response:
        """Predict with one version (TF Serving request and response layout)."""
        return await gateway.predict(request, name, version)

    @app.post(
        "/v1/models/{name}:predict",
        response_model=PredictResponse,
        responses=PREDICT_ERRORS,
        openapi_extra=PREDICT_BODY,
        tags=["predict"],
    )
    async def predict_default(request: Request, name: str) -> Response:
        """Predict with the newest version at the served stage."""
        return await gateway.predict(request, name, None)

    if policy.serve.console:
        from fastapi.responses import RedirectResponse

        from kerasguard.console import create_console

        @app.get("/console", include_in_schema=False)
        async def console_root() -> Response:
            return RedirectResponse("/console/", status_code=308)

        app.mount("/console", create_console(access.store, policy, gateway.metrics))

    serve = policy.serve
    return Guard(
        app,
        max_body_bytes=serve.max_body_bytes,
        body_timeout_s=serve.request_timeout_s,
        metrics=gateway.metrics,
    )
