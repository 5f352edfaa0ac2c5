"""The console's routes: login, models, one model (report, architecture, actions), quarantine, audit, figures.

Every page is rendered by Jinja2 with autoescaping, and every value goes through
:func:`kerasguard.render.safe_text.printable` first, so text from a model file (layer names, member
names, messages) is shown literally: no markup, no control characters. Every POST carries the session's
CSRF token; every action is checked here against the reviewer's role (403 before anything happens)
and again by the store, which audits it. Responses carry a strict Content-Security-Policy and no
inline script or style exists to need an exception.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kerasguard.console.charts import gateway_charts
from kerasguard.console.sessions import ABSOLUTE_S, COOKIE, Session, Sessions
from kerasguard.errors import KerasGuardError
from kerasguard.policy import Policy
from kerasguard.render.safe_text import printable
from kerasguard.serve.metrics import Metrics
from kerasguard.store import ModelStore
from kerasguard.store.rbac import ALL_NAMESPACES, NAMESPACE_RE, Action, Principal, a_role
from kerasguard.store.records import NAME_RE, VERSION_RE

log = logging.getLogger("kerasguard.serve.console")
HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # "no-referrer" would make Chromium send "Origin: null" on our forms
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
MAX_FORM_BYTES = 16 * 1024
MAX_MODELS_SHOWN = 500
AUDIT_PAGE = 50
VERIFY_CACHE_S = 60.0
INSPECT_CACHE = 32
MAX_PROVENANCE_CHARS = 300
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
NOTICES = {
    "released": "Released: the model is servable again.",
    "promoted": "Promoted.",
    "deleted": "Deleted: its data key and blob are gone; the record stays.",
    "verified": "Audit chain verified.",
}


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}``: control characters shown as ``\\x1b``; autoescaping then handles HTML."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return printable(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda v: quote(str(v), safe="")
    return env


class Console:
    """What the routes share: the store, the gateway's metrics, sessions and small caches."""

    def __init__(self, store: ModelStore, policy: Policy, metrics: Metrics) -> None:
        self.store, self.policy, self.metrics = store, policy, metrics
        self.sessions = Sessions()
        self.env = _environment()
        self.inspections: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.verification: tuple[float, str, str] | None = None  # (when, intact|broken|..., detail)

    # ------------------------------------------------------------------ plumbing

    def render(
        self, request: Request, name: str, session: Session | None, status: int = 200, **values: Any
    ) -> Response:
        principal = session.principal if session else None
        html = self.env.get_template(name).render(
            me=principal,
            csrf=session.csrf if session else "",
            can=(lambda action, ns: principal is not None and principal.allowed(action, ns)),
            Action=Action,
            notice=NOTICES.get(request.query_params.get("done", "")),
            **values,
        )
        return Response(html, status_code=status, media_type="text/html; charset=utf-8")

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def required(self, request: Request) -> Session:
        session = self.session_of(request)
        if session is None or not session.logged_in:
            raise Denied(401, "log in first")
        return session

    async def form(self, request: Request, session: Session | None) -> dict[str, str]:
        """The url-encoded POST body, after the size, origin and CSRF checks."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Denied(403, "cross-origin form refused")
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise Denied(415, "forms only")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Denied(413, "form too large")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise Denied(400, "malformed form") from None
        fields = {k: v[0] for k, v in parsed.items()}
        if session is None or not session.csrf_ok(fields.get("csrf")):
            raise Denied(403, "missing or wrong CSRF token: reload the page and try again")
        return fields

    def with_cookie(self, response: Response, session: Session | None) -> Response:
        if session is None:
            response.delete_cookie(COOKIE, path="/console", secure=True, httponly=True, samesite="strict")
        else:
            response.set_cookie(
                COOKIE,
                session.id,
                max_age=int(ABSOLUTE_S),
                path="/console",
                secure=True,
                httponly=True,
                samesite="strict",
            )
        return response

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    # ------------------------------------------------------------------ model data

    def namespaces(self, session: Session) -> list[str]:
        assert session.token is not None
        return self.store.namespaces(session.token)

    def models(self, session: Session, namespace: str | None, quarantined: bool) -> list[dict[str, Any]]:
        """Every model the reviewer may list, with its verdict, signer and training record summary."""
        assert session.token is not None and session.principal is not None
        out: list[dict[str, Any]] = []
        for ns in [namespace] if namespace else self.namespaces(session):
            include = quarantined and session.principal.allowed(Action.list_quarantined, ns)
            if quarantined and not include:
                continue
            for summary in self.store.list(session.token, namespace=ns, include_quarantined=include):
                if quarantined and summary.status != "quarantined":
                    continue
                try:
                    info = self.store.show(session.token, summary.name, summary.version, namespace=ns)
                    row = _row(info.to_dict())
                except KerasGuardError as exc:
                    row = {**summary.__dict__, "verdict": "error", "problem": exc.message}
                out.append(row)
                if len(out) >= MAX_MODELS_SHOWN:
                    return out
        return out

    def inspection(self, session: Session, info: dict[str, Any]) -> dict[str, Any] | None:
        """The ``inspect`` view of a model's file (pulled into a private folder; cached by digest)."""
        from kerasguard.inspect import inspect_model

        digest = info.get("digest")
        if not digest:
            return None
        cached = self.inspections.get(digest)
        if cached is not None:
            self.inspections.move_to_end(digest)
            return cached
        assert session.token is not None
        folder = Path(tempfile.mkdtemp(prefix="kg-console-"))
        try:
            folder.chmod(0o700)
            path = self.store.pull(
                session.token,
                info["name"],
                info["version"],
                folder,
                namespace=info["namespace"],
                expect_digest=digest,
                allow_quarantined=info["status"] == "quarantined",
            )
            view = inspect_model(path, self.policy).to_dict()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.inspections[digest] = view
        while len(self.inspections) > INSPECT_CACHE:
            self.inspections.popitem(last=False)
        return view

    def verify_chain(self, session: Session, force: bool) -> tuple[str, str]:
        """intact / broken / witness unavailable / not allowed, with the detail; cached a minute."""
        from kerasguard.store.audit import AuditTampered
        from kerasguard.store.witness import WitnessError

        assert session.principal is not None and session.token is not None
        if not session.principal.allowed(Action.audit_verify, None):
            return "not checked", "verifying the chain needs an admin token for every namespace ('*')"
        now = time.monotonic()
        if not force and self.verification is not None and now - self.verification[0] < VERIFY_CACHE_S:
            return self.verification[1], self.verification[2]
        try:
            result = self.store.audit_verify(session.token)
            state, detail = (
                "intact",
                f"{result.entries} entries, head #{result.head_seq} {result.head_hash[:16]}…, "
                f"witnessed up to #{result.witnessed_seq}",
            )
        except AuditTampered as exc:
            state, detail = "broken", exc.message
        except WitnessError as exc:
            state, detail = "witness unavailable", exc.message
        except KerasGuardError as exc:
            state, detail = "broken", exc.message
        self.verification = (now, state, detail)
        return state, detail


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _client_provenance(client: Any) -> list[tuple[str, str]]:
    """What the publisher passed with ``store push --provenance``, one row per key; objects as compact
    JSON, long values cut (the training record and detector are summarised in their own sections)."""
    if not isinstance(client, dict):
        return []
    rows = []
    for key in sorted(client, key=str):
        value = client[key]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if len(text) > MAX_PROVENANCE_CHARS:
            text = f"{text[:MAX_PROVENANCE_CHARS]}… ({len(text)} characters)"
        rows.append((str(key), text))
    return rows


def _row(info: dict[str, Any]) -> dict[str, Any]:
    """A model's record with what the pages show at a glance: verdict, signer, training summary, and
    what the scan did not judge (suppressions, an incomplete scan, skipped paths)."""
    admission = info.get("admission") or {}
    report = info.get("scan_report") or {}
    findings: list[dict[str, Any]] = []
    suppressions: list[dict[str, Any]] = []
    files = report.get("files") if isinstance(report, dict) else None
    for entry in _dicts(files):
        findings += _dicts(entry.get("findings"))
        suppressions += _dicts(entry.get("suppressions"))
    findings.sort(key=lambda f: SEVERITY_ORDER.get(str(f.get("severity")), len(SEVERITY_ORDER)))
    severities = [str(f.get("severity", "")) for f in findings]
    errors = report.get("errors") if isinstance(report, dict) else None
    if info.get("status") == "quarantined":
        verdict = "quarantined"
    elif admission.get("admitted") is False:
        verdict = "refused"
    else:
        verdict = "clean" if not findings else "admitted with findings"
    client = (info.get("provenance") or {}).get("client") or {}
    record = client.get("training_record") if isinstance(client, dict) else None
    training = None
    sealed = [a for a in info.get("attachments") or [] if isinstance(a, dict)]
    records = [a for a in sealed if a.get("kind") == "training_record"]
    if records:  # a sealed training record: its summary was recorded when it was attached
        training = {**(records[-1].get("summary") or {}), "digest": records[-1].get("digest")}
    elif isinstance(record, dict):  # stored inline by versions before sealed attachments
        metrics = record.get("metrics") if isinstance(record.get("metrics"), list) else []
        anomalies = record.get("anomalies") if isinstance(record.get("anomalies"), list) else []
        training = {
            "digest": client.get("training_record_digest"),
            "schema": record.get("schema"),
            "data_manifest": record.get("data_manifest"),
            "epochs": len(metrics or []),
            "batches": record.get("batches"),
            "keras_version": record.get("keras_version"),
            "backend": record.get("backend"),
            "anomalies": [a for a in (anomalies or [])[:10] if isinstance(a, dict)],
            "anomaly_count": len(anomalies or []),
            "stopped": record.get("stop_reason") if record.get("stopped") else None,
        }
    skipped = report.get("skipped") if isinstance(report, dict) else None
    return {
        **info,
        "verdict": verdict,
        "findings": findings,
        "suppressions": suppressions,
        "scan_complete": report.get("complete") if isinstance(report, dict) else None,
        "skipped": [str(s) for s in skipped] if isinstance(skipped, list) else [],
        "client": _client_provenance(client),
        "scan_errors": [str(e) for e in errors] if isinstance(errors, list) else [],
        "severities": severities,
        "signer": info.get("signer") or admission.get("signer"),
        "reasons": admission.get("reasons") or [],
        "training": training,
        "attached": sealed,
    }


def _check_ref(namespace: str, name: str, version: str) -> None:
    ok = (
        NAMESPACE_RE.match(namespace) is not None
        and NAME_RE.match(name) is not None
        and VERSION_RE.match(version) is not None
    )
    if not ok:
        raise Denied(404, "no such model")


def create_console(store: ModelStore, policy: Policy, metrics: Metrics) -> ASGIApp:
    """The console application, to mount at ``/console``."""
    console = Console(store, policy, metrics)

    def page(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                response = await handler(request)
            except Denied as exc:
                if exc.status == 401 and request.method == "GET":
                    response = RedirectResponse("/console/login", status_code=303)
                else:
                    response = console.render(
                        request, "error.html", console.session_of(request), exc.status, message=exc.message
                    )
            except KerasGuardError as exc:
                if type(exc).__name__ == "AccessDenied":
                    status = 403
                elif exc.message.startswith("no model"):
                    status = 404
                else:
                    status = 409  # the store refused the change (wrong state, tampered row...)
                response = console.render(
                    request, "error.html", console.session_of(request), status, message=exc.message
                )
            except Exception as exc:
                log.error("console: unhandled %s on %s", type(exc).__name__, request.url.path[:200])
                response = console.render(
                    request, "error.html", None, 500, message="the console could not complete the request"
                )
            return response

        return wrapped

    async def index(request: Request) -> Response:
        session = console.session_of(request)
        target = "/console/models" if session and session.logged_in else "/console/login"
        return RedirectResponse(target, status_code=303)

    async def login_form(request: Request) -> Response:
        session = console.session_of(request)
        if session is None or session.logged_in:
            session = console.sessions.anonymous()
        return console.with_cookie(console.render(request, "login.html", session, error=None), session)

    async def login(request: Request) -> Response:
        session = console.session_of(request)
        fields = await console.form(request, session)
        assert session is not None
        client = request.client.host if request.client else "?"
        if console.sessions.throttled(client):
            raise Denied(429, "too many failed logins from this address; wait a few minutes")
        token = fields.get("token", "").strip()
        try:
            principal: Principal = await console.call(store.authenticate_reviewer, token)
        except KerasGuardError as exc:
            console.sessions.failed(client)
            return console.with_cookie(
                console.render(request, "login.html", session, 401, error=exc.message), session
            )
        fresh = console.sessions.login(session, token, principal)
        return console.with_cookie(RedirectResponse("/console/models", status_code=303), fresh)

    async def logout(request: Request) -> Response:
        session = console.session_of(request)
        await console.form(request, session)
        assert session is not None
        console.sessions.drop(session.id)
        return console.with_cookie(RedirectResponse("/console/login", status_code=303), None)

    async def models(request: Request) -> Response:
        session = console.required(request)
        namespace = request.query_params.get("namespace") or None
        if namespace is not None and not NAMESPACE_RE.match(namespace):
            raise Denied(404, "no such namespace")
        rows = await console.call(console.models, session, namespace, False)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault((row["namespace"], row["stage"]), []).append(row)
        namespaces = await console.call(console.namespaces, session)
        return console.render(
            request,
            "models.html",
            session,
            groups=sorted(groups.items()),
            namespaces=namespaces,
            namespace=namespace,
            truncated=len(rows) >= MAX_MODELS_SHOWN,
        )

    async def quarantine(request: Request) -> Response:
        session = console.required(request)
        assert session.principal is not None
        if session.principal.role.value != "admin":
            raise Denied(403, "the quarantine queue is for admins")
        rows = await console.call(console.models, session, None, True)
        return console.render(request, "quarantine.html", session, rows=rows)

    async def model(request: Request) -> Response:
        session = console.required(request)
        p = request.path_params
        namespace, name, version = p["namespace"], p["name"], p["version"]
        _check_ref(namespace, name, version)
        assert session.token is not None
        info = await console.call(store.show, session.token, name, version, namespace=namespace)
        row = _row(info.to_dict())
        inspection = None
        inspect_error = None
        try:
            inspection = await console.call(console.inspection, session, row)
        except KerasGuardError as exc:
            inspect_error = exc.message
        return console.render(
            request,
            "model.html",
            session,
            m=row,
            inspection=inspection,
            inspect_error=inspect_error,
            stages=policy.store.stages,
        )

    async def act(request: Request) -> Response:
        session = console.required(request)
        fields = await console.form(request, session)
        p = request.path_params
        namespace, name, version, verb = p["namespace"], p["name"], p["version"], p["action"]
        _check_ref(namespace, name, version)
        actions = {"release": Action.release, "promote": Action.promote, "delete": Action.delete}
        if verb not in actions:
            raise Denied(404, "no such action")
        assert session.principal is not None and session.token is not None
        if not session.principal.allowed(actions[verb], namespace):
            raise Denied(403, f"{a_role(session.principal.role)} token may not {verb} in this namespace")
        reason = fields.get("reason", "").strip()
        if not reason:
            raise Denied(400, "a reason is required")
        token = session.token
        if verb == "release":
            await console.call(store.release, token, name, version, reason, namespace=namespace)
        elif verb == "delete":
            await console.call(store.delete, token, name, version, reason, namespace=namespace)
        else:
            stage = fields.get("stage", "")
            if stage not in policy.store.stages:
                raise Denied(400, "unknown stage")
            await console.call(store.promote, token, name, version, stage, namespace=namespace, reason=reason)
        done = {"release": "released", "promote": "promoted", "delete": "deleted"}[verb]
        if verb == "delete":
            return RedirectResponse(f"/console/models?done={done}", status_code=303)
        target = f"/console/models/{quote(namespace)}/{quote(name)}/{quote(version)}?done={done}"
        return RedirectResponse(target, status_code=303)

    async def audit_log(request: Request) -> Response:
        session = console.required(request)
        assert session.principal is not None and session.token is not None
        if not session.principal.allowed(Action.audit_export, session.principal.namespace):
            raise Denied(403, "the audit log is for admins")
        raw = request.query_params.get("before", "")
        before = int(raw) if raw.isdigit() and len(raw) < 19 else None
        namespace = None if session.principal.namespace == ALL_NAMESPACES else session.principal.namespace
        entries = await console.call(
            store.audit_page, session.token, before=before, limit=AUDIT_PAGE + 1, namespace=namespace
        )
        more = len(entries) > AUDIT_PAGE
        entries = entries[:AUDIT_PAGE]
        state, detail = await console.call(console.verify_chain, session, False)
        return console.render(
            request,
            "audit.html",
            session,
            entries=entries,
            older=entries[-1]["seq"] if more and entries else None,
            chain_state=state,
            chain_detail=detail,
        )

    async def audit_verify(request: Request) -> Response:
        session = console.required(request)
        await console.form(request, session)
        assert session.principal is not None
        if not session.principal.allowed(Action.audit_verify, None):
            raise Denied(403, "verifying the chain needs an admin token for every namespace")
        await console.call(console.verify_chain, session, True)
        return RedirectResponse("/console/audit?done=verified", status_code=303)

    async def figures(request: Request) -> Response:
        session = console.required(request)
        assert session.principal is not None
        # Asked of the store for every token, so a token revoked since login ends here (403).
        visible = frozenset(await console.call(console.namespaces, session))
        # A '*' token sees every tenant's series (also of namespaces without models) and the rejects.
        tenants = None if session.principal.namespace == ALL_NAMESPACES else visible
        return console.render(
            request, "figures.html", session, charts=gateway_charts(metrics.registry, tenants)
        )

    routes = [
        Route("/", page(index)),
        Route("/login", page(login_form), methods=["GET"]),
        Route("/login", page(login), methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/models", page(models)),
        Route("/quarantine", page(quarantine)),
        Route("/models/{namespace}/{name}/{version}", page(model), methods=["GET"]),
        Route("/models/{namespace}/{name}/{version}/{action}", page(act), methods=["POST"]),
        Route("/audit", page(audit_log)),
        Route("/audit/verify", page(audit_verify), methods=["POST"]),
        Route("/figures", page(figures)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)

    async def not_found(request: Request, exc: Exception) -> Response:
        return console.render(request, "error.html", console.session_of(request), 404, message="not found")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    return SecurityHeaders(app)


class SecurityHeaders:
    """Adds the security headers to every response of the console (pages, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
