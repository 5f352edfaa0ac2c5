"""Console parts without a server: session expiry and rotation, the login throttle, the charts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.console import sessions as sessions_module
from kerasguard.console.charts import gateway_charts
from kerasguard.console.sessions import IDLE_S, LOGIN_FAILURES, MAX_ANONYMOUS, MAX_SESSIONS, Sessions
from kerasguard.serve.metrics import Metrics
from kerasguard.store.rbac import Principal, Role


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sessions_module.time, "monotonic", fake)
    return fake


PRINCIPAL = Principal("0123456789abcdef", Role.reader, "acme", "me")


def test_login_gives_a_new_session_id_and_csrf_token(clock: Clock) -> None:
    table = Sessions()
    before = table.anonymous()
    after = table.login(before, "kgs_token", PRINCIPAL)
    assert after.id != before.id and after.csrf != before.csrf
    assert table.get(before.id) is None  # the pre-login id is dead: no fixation
    assert table.get(after.id) is after and after.logged_in
    assert after.csrf_ok(after.csrf) and not after.csrf_ok(before.csrf) and not after.csrf_ok(None)


def test_sessions_expire_when_idle_and_the_table_is_bounded(clock: Clock) -> None:
    table = Sessions()
    session = table.login(table.anonymous(), "kgs_token", PRINCIPAL)
    clock.now += IDLE_S - 1
    assert table.get(session.id) is session  # use renews it
    clock.now += IDLE_S - 1
    assert table.get(session.id) is session
    clock.now += IDLE_S + 1
    assert table.get(session.id) is None
    assert table.get("x" * 500) is None
    reviewer = table.login(table.anonymous(), "kgs_token", PRINCIPAL)
    for _ in range(MAX_ANONYMOUS + 10):  # a flood of login pages
        table.anonymous()
    assert len(table) == MAX_ANONYMOUS + 1
    assert table.get(reviewer.id) is reviewer  # not evicted by the flood
    for _ in range(MAX_SESSIONS + 10):
        table.login(table.anonymous(), "kgs_token", PRINCIPAL)
    assert len(table) <= MAX_SESSIONS + MAX_ANONYMOUS


def test_failed_logins_are_throttled_per_address_for_a_while(clock: Clock) -> None:
    table = Sessions()
    for _ in range(LOGIN_FAILURES):
        assert not table.throttled("10.0.0.1")
        table.failed("10.0.0.1")
    assert table.throttled("10.0.0.1")
    assert not table.throttled("10.0.0.2")
    clock.now += sessions_module.LOGIN_WINDOW_S + 1
    assert not table.throttled("10.0.0.1")


def test_charts_count_rejects_requests_and_latency_buckets() -> None:
    metrics = Metrics()
    metrics.rejects.labels("unauthenticated").inc(3)
    metrics.rejects.labels("rate_limited").inc(1)
    for seconds in (0.002, 0.002, 0.3):
        metrics.latency.labels("acme", "digits", "1", "ok").observe(seconds)
    metrics.latency.labels("acme", "digits", "1", "error").observe(0.02)
    metrics.ood_alarms.labels("acme", "digits", "1", "mahalanobis").inc(5)
    metrics.ood_alarms.labels("acme", "digits", "1", "energy").inc(4)
    metrics.drift_alarms.labels("acme", "digits", "1", "class_mix").inc(2)
    requests, rejects, latency, alarms = gateway_charts(metrics.registry, None)
    assert {b.label: b.value for b in alarms.bars} == {
        "acme/digits:1 ood": 5,
        "acme/digits:1 ood energy": 4,
        "acme/digits:1 drift class_mix": 2,
    }
    assert [(b.label, b.value) for b in rejects.bars] == [("unauthenticated", 3), ("rate_limited", 1)]
    assert rejects.bars[0].width == 360 and rejects.bars[1].width == 120
    assert dict((b.label, b.value) for b in requests.bars) == {
        "acme/digits:1 ok": 3,
        "acme/digits:1 error": 1,
    }
    counts = {b.label: b.value for b in latency.bars}
    assert counts["<= 2.5 ms"] == 2 and counts["<= 25 ms"] == 1 and counts["<= 500 ms"] == 1
    assert sum(counts.values()) == 4 and "4 requests" in latency.title


def test_store_calls_the_console_uses_keep_to_the_tokens_rights(tmp_path: Path) -> None:
    from kerasguard.policy import Policy
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file
    from kerasguard.store.service import AccessDenied

    store, admin = ModelStore.init(tmp_path / "store", write_key_file(tmp_path / "k"), policy=Policy())
    with store:
        tenant_admin = store.create_token(admin, "admin", "a", "")
        reader = store.create_token(admin, "reader", "a", "")
        store.create_token(admin, "reader", "b", "")
        invoker = store.create_token(admin, "invoker", "a", "")
        assert store.authenticate_reviewer(reader).role is Role.reader
        with pytest.raises(AccessDenied):
            store.authenticate_reviewer(invoker)
        with pytest.raises(AccessDenied):
            store.authenticate_reviewer("kgs_0000000000000000_" + "A" * 43)
        assert store.namespaces(reader) == ["a"]
        page = store.audit_page(tenant_admin, limit=100)
        assert page and {e["namespace"] for e in page} == {"a"}
        everything = store.audit_page(admin, limit=100)
        assert {"a", "b"} <= {e["namespace"] for e in everything}
        seqs = [e["seq"] for e in everything]
        assert seqs == sorted(seqs, reverse=True)
        older = store.audit_page(admin, before=seqs[2], limit=2)
        assert [e["seq"] for e in older] == seqs[3:5]
        with pytest.raises(AccessDenied):
            store.audit_page(reader)


def test_serving_plain_http_off_loopback_warns_that_the_console_cookie_needs_tls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("uvicorn")
    import uvicorn

    from kerasguard.serve import process

    monkeypatch.setattr(process, "app_from_env", lambda: object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.delenv(process.CONFIG_ENV, raising=False)
    config = process.ServeConfig(store="/nonexistent")
    with caplog.at_level("WARNING", logger="kerasguard.serve"):
        process.run(config, host="127.0.0.1", port=1, workers=1)
        assert not caplog.records
        process.run(config, host="0.0.0.0", port=1, workers=1)
    assert any("Secure session cookie" in r.getMessage() for r in caplog.records)


def test_skipped_paths_and_unapplied_suppressions_are_rendered_escaped() -> None:
    """A store push scans one file, so ``skipped`` stays empty there; the template still shows and
    escapes it for reports that carry it."""
    pytest.importorskip("jinja2")
    from kerasguard.console.web import _environment, _row
    from kerasguard.store.rbac import Action

    hostile = "<script>alert(1)</script>\x1b[31m"
    finding = {"rule_id": "KG101", "severity": "critical", "title": "t", "message": hostile, "location": {}}
    info = {
        "namespace": "acme",
        "name": "m",
        "version": "1",
        "status": "quarantined",
        "provenance": {"client": {"note": "x" * 400}},
        "scan_report": {
            "complete": False,
            "skipped": [f"{hostile}.bin: not a model file"],
            "files": [
                {
                    "findings": [finding],
                    "suppressions": [
                        {
                            "rule_id": "KG101",
                            "kind": "allow",
                            "applied": False,
                            "reason": hostile,
                            "policy": "found/kerasguard.toml",
                            "severity": "critical",
                            "finding": finding,
                        }
                    ],
                }
            ],
        },
    }
    html = (
        _environment()
        .get_template("model.html")
        .render(
            me=PRINCIPAL,
            csrf="c",
            can=lambda action, ns: False,
            Action=Action,
            notice=None,
            m=_row(info),
            inspection=None,
            inspect_error=None,
            stages=("production",),
        )
    )
    assert "<script>" not in html and "\x1b" not in html
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m.bin: not a model file</li>" in html
    assert "allowlisted (critical); not applied" in html
    assert "x" * 300 + "… (400 characters)" in html
    assert '<span class="incomplete">Incomplete</span>' in html
