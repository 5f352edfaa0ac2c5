"""Which model versions each tenant may call: the store's admitted versions at the served stage.

The gateway polls the store (one ``list`` per tenant) every ``poll_seconds``: a version promoted to the
stage gets a worker, a version quarantined, deleted or moved off the stage loses its worker, without a
restart. A served version whose row changed (its revision went up: a detector attached with ``store
attach``) gets a new worker, which replaces the old one once its load has been tried; the old one
answers what it already took, then stops, so the change takes effect without an outage.
While the store cannot be polled, the gateway keeps serving what it last saw admitted, unless
``stale_after_failed_polls`` is set: after that many failed polls in a row every worker is withdrawn
(404 until the store answers again). Models are pulled into a private folder, digest-checked against
the store's record, and loaded with ``kerasguard.load_model`` (verify, scan, sandbox) under the
gateway's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kerasguard.errors import KerasGuardError
from kerasguard.policy import Policy
from kerasguard.probe.strip import StripDetector
from kerasguard.robustness.detectors import DetectorSet
from kerasguard.sandbox.model import SandboxedModel
from kerasguard.serve.metrics import Metrics
from kerasguard.serve.workers import ModelRef, Worker, WorkerSettings
from kerasguard.store import ModelStore
from kerasguard.store.rbac import Principal

log = logging.getLogger("kerasguard.serve.registry")


@dataclass(frozen=True)
class StoreAccess:
    """The gateway's view of the store: its own token for list and pull, invoker keys for clients."""

    store: ModelStore
    token: str
    policy: Policy

    def tenants(self) -> list[str]:
        """The namespaces served: the policy's list, else every namespace with a live invoker key."""
        if self.policy.serve.namespaces:
            return list(self.policy.serve.namespaces)
        rows = self.store.list_tokens(self.token)
        return sorted({r["namespace"] for r in rows if r["role"] == "invoker" and not r["revoked"]})

    def served(self, tenant: str) -> list[ModelRef]:
        """Admitted versions at the served stage, newest first within a name."""
        stage = self.policy.serve.stage
        return [
            ModelRef(s.namespace, s.name, s.version, s.digest, s.revision)
            for s in self.store.list(self.token, namespace=tenant, stage=stage)
            if s.digest is not None
        ]

    def authenticate(self, key: str) -> Principal | None:
        return self.store.authenticate_invoker(key)

    def strip(self, ref: ModelRef) -> StripDetector | None:
        """The STRIP detector attached to the version (``store push --detector FILE.npz`` or ``store
        attach``): read through the store (decrypted, digest checked against the MAC-covered entry), then
        its own digest and the model it was fitted on checked again; None when there is none."""
        from kerasguard.probe.strip import from_sealed

        where = f"{ref.tenant}/{ref.name}:{ref.version}"
        try:
            found = self.store.read_attachment(
                self.token, ref.name, ref.version, kind="strip", namespace=ref.tenant
            )
            return None if found is None else from_sealed(found[1], model_sha256=ref.digest, where=where)
        except KerasGuardError as exc:  # AttachmentError (the store's checks) or ProbeError (the file's)
            _refused(ref, "strip", exc)
            raise

    def detector(self, ref: ModelRef) -> DetectorSet | None:
        """The input detector attached to the version (``store push --detector DIR`` or ``store
        attach``): read through the store (decrypted, digest checked against the MAC-covered entry),
        then its own digests and its model digest checked again; None when there is none.

        Versions pushed before sealed attachments keep theirs inline in the provenance: still read.
        A detector that fails any check raises DetectorFileError (the worker withdraws the version).
        """
        from kerasguard.robustness.detector_files import from_attachment, from_sealed
        from kerasguard.robustness.errors import DetectorFileError
        from kerasguard.store import AttachmentError

        where = f"{ref.tenant}/{ref.name}:{ref.version}"
        try:
            try:
                found = self.store.read_attachment(
                    self.token, ref.name, ref.version, kind="detector", namespace=ref.tenant
                )
            except AttachmentError as exc:
                raise DetectorFileError(exc.message, hint=exc.hint) from None
            if found is not None:
                return from_sealed(found[1], model_sha256=ref.digest, where=where)
            info = self.store.show(self.token, ref.name, ref.version, namespace=ref.tenant)
            client = (info.provenance or {}).get("client")
            value = client.get("detector") if isinstance(client, dict) else None
            if value is None:
                return None
            return from_attachment(value, model_sha256=ref.digest, where=where)
        except DetectorFileError as exc:
            _refused(ref, "detector", exc)  # the attachment kind, as "strip"
            raise

    def load(self, ref: ModelRef) -> SandboxedModel:
        """Pull (digest-checked) into a private folder, then ``load_model`` the pulled file."""
        import kerasguard

        folder = Path(tempfile.mkdtemp(prefix="kg-serve-"))
        try:
            os.chmod(folder, 0o700)
            path = self.store.pull(
                self.token, ref.name, ref.version, folder, namespace=ref.tenant, expect_digest=ref.digest
            )
            model = kerasguard.load_model(
                path, policy=self.policy, digest=ref.digest, model_name=ref.name, model_version=ref.version
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(model, SandboxedModel):  # the policy allowed in-process loading: never here
            raise KerasGuardError("the gateway serves sandboxed models only: enable [sandbox]")
        return model


def _refused(ref: ModelRef, kind: str, exc: KerasGuardError) -> None:
    line = {
        "event": "detector_refused",
        "tenant": ref.tenant,
        "model": ref.name,
        "version": ref.version,
        "detector": kind,
        "reason": exc.message,
    }
    log.error("%s", json.dumps(line, separators=(",", ":")))


class Registry:
    """Workers by (tenant, name, version), kept in step with the store."""

    def __init__(self, access: StoreAccess, settings: WorkerSettings, metrics: Metrics) -> None:
        self.access = access
        self.settings = settings
        self.metrics = metrics
        self.workers: dict[tuple[str, str, str], Worker] = {}
        # versions whose row changed: the new worker, loading, that will replace the served one
        self.replacing: dict[tuple[str, str, str], Worker] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.latest: dict[tuple[str, str], str] = {}  # (tenant, name) -> version served by default
        self.polled = False
        self.store_ok = False
        self.failed_polls = 0  # in a row
        self.stale_after = access.policy.serve.stale_after_failed_polls

    def find(self, tenant: str, name: str, version: str | None) -> Worker | None:
        if version is None:
            version = self.latest.get((tenant, name))
            if version is None:
                return None
        return self.workers.get((tenant, name, version))

    def models(self, tenant: str) -> dict[str, list[Worker]]:
        out: dict[str, list[Worker]] = {}
        for (t, name, _v), worker in self.workers.items():
            if t == tenant:
                out.setdefault(name, []).append(worker)
        return out

    @property
    def ready(self) -> bool:
        return self.polled and self.store_ok and all(w.attempted for w in self.workers.values())

    async def poll(self) -> None:
        """One round: ask the store, start new workers, stop withdrawn ones."""
        loop = asyncio.get_running_loop()
        try:
            refs = await loop.run_in_executor(None, self._desired)
        except Exception as exc:  # the store is unreachable: keep serving what was admitted (a while)
            self.store_ok = False
            self.failed_polls += 1
            message = exc.message if isinstance(exc, KerasGuardError) else type(exc).__name__
            log.warning("store poll failed (%d in a row): %s", self.failed_polls, message)
            if self.stale_after and self.failed_polls >= self.stale_after and self.workers:
                log.warning(
                    "%s",
                    json.dumps(
                        {
                            "event": "store_stale",
                            "failed_polls": self.failed_polls,
                            "withdrawn": len(self.workers),
                        },
                        separators=(",", ":"),
                    ),
                )
                await self._withdraw_all()
            return
        self.store_ok = True
        self.failed_polls = 0
        desired = {(r.tenant, r.name, r.version): r for r in refs}
        for key in list(self.workers):
            worker = self.workers[key]
            if key not in desired or desired[key].digest != worker.ref.digest:
                del self.workers[key]
                log.info("withdrawing %s/%s:%s", *key)
                await worker.stop()
                replacement = self.replacing.pop(key, None)
                if replacement is not None:
                    await replacement.stop(gauge=False)
        for key, ref in desired.items():
            current = self.workers.get(key)
            if current is None:
                self.workers[key] = self._start(ref)
                log.info("serving %s/%s:%s", *key)
            elif ref.revision != current.ref.revision:
                await self._replace(key, ref)
        self._swap_replacements()
        latest: dict[tuple[str, str], str] = {}
        for ref in refs:  # newest first within a name
            latest.setdefault((ref.tenant, ref.name), ref.version)
        self.latest = latest
        self.metrics.models_served.set(len(self.workers))
        self.polled = True

    def _start(self, ref: ModelRef) -> Worker:
        worker = Worker(
            ref, self.access.load, self.settings, self.metrics, self.access.detector, self.access.strip
        )
        worker.start()
        return worker

    async def _replace(self, key: tuple[str, str, str], ref: ModelRef) -> None:
        """Start a worker for the changed row (once per revision; an older pending one is dropped)."""
        pending = self.replacing.get(key)
        if pending is not None:
            if pending.ref.revision == ref.revision:
                return
            await pending.stop(gauge=False)
        log.info("reloading %s/%s:%s (revision %d)", *key, ref.revision)
        self.replacing[key] = self._start(ref)

    def _swap_replacements(self) -> None:
        """Serve each replacement whose load has been tried (a refused one fails closed: 503 until it
        loads); the worker it replaces finishes what it took in the background."""
        grace = self.access.policy.serve.request_timeout_s
        for key, new in list(self.replacing.items()):
            if not new.attempted:
                continue
            del self.replacing[key]
            old, self.workers[key] = self.workers[key], new
            log.info("reloaded %s/%s:%s (revision %d, %s)", *key, new.ref.revision, new.state)
            task = asyncio.get_running_loop().create_task(old.retire(grace))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _desired(self) -> list[ModelRef]:
        refs: list[ModelRef] = []
        for tenant in self.access.tenants():
            refs.extend(self.access.served(tenant))
        return refs

    async def run(self, interval: float) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(interval)

    async def _withdraw_all(self) -> None:
        workers, self.workers, self.latest = list(self.workers.values()), {}, {}
        workers += self.replacing.values()
        self.replacing = {}
        self.metrics.models_served.set(0)
        for worker in workers:
            with contextlib.suppress(Exception):
                await worker.stop()

    async def close(self) -> None:
        workers, self.workers = [*self.workers.values(), *self.replacing.values()], {}
        self.replacing = {}
        for worker in workers:
            with contextlib.suppress(Exception):
                await worker.stop()

    def all_workers(self) -> Iterable[Worker]:
        return list(self.workers.values())
