"""The figures page over real HTTP (the console app under uvicorn, a real store and the gateway's real
metrics registry): a reviewer sees only the series of the namespaces their token may see."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.consolehelp import console_app, login, serving
from support.servehelp import SOURCE

OURS, THEIRS = "acme", "globex"
THEIR_MODEL = "payroll-fraud"


def test_figures_show_a_namespaced_reviewer_no_other_tenants_series(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("jinja2")
    from kerasguard.policy import Policy, Store
    from kerasguard.serve.metrics import Metrics
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    policy = Policy(store=Store(sources=(SOURCE,)))
    store, admin = ModelStore.init(tmp_path / "store", write_key_file(tmp_path / "key"), policy=policy)
    metrics = Metrics()  # as the gateway fills it: tenant, model, version on every per-model series
    for seconds in (0.002, 0.002, 0.3):
        metrics.latency.labels(OURS, "digits", "1", "ok").observe(seconds)
    for _ in range(5):
        metrics.latency.labels(THEIRS, THEIR_MODEL, "7", "ok").observe(2.0)
    metrics.ood_alarms.labels(THEIRS, THEIR_MODEL, "7", "mahalanobis").inc(9)
    metrics.drift_alarms.labels(THEIRS, THEIR_MODEL, "7", "class_mix").inc(2)
    metrics.ood_alarms.labels(OURS, "digits", "1", "mahalanobis").inc(1)
    metrics.rejects.labels("unauthenticated").inc(3)
    metrics.rejects.labels("strip").inc(4)
    with store:
        reader = store.create_token(admin, "reader", OURS, "auditor")
        tenant_admin = store.create_token(admin, "admin", OURS, "lead")
        store.create_token(admin, "reader", THEIRS, "their auditor")
        with serving(console_app(store, policy, metrics)) as url:
            for token in (reader, tenant_admin):
                page = login(url, token).get("/console/figures")
                assert page.status_code == 200, page.text[:500]
                html = page.text
                for leak in (THEIRS, THEIR_MODEL, "unauthenticated", "strip"):
                    assert leak not in html, leak
                assert "acme/digits:1 ok" in html and "acme/digits:1 ood" in html
                assert "Predict latency (3 requests" in html  # their 5 slow requests are not counted
                assert "Not shown: gateway-wide counts" in html
            root = login(url, admin)
            everything = root.get("/console/figures").text
            assert f"{THEIRS}/{THEIR_MODEL}:7 drift class_mix" in everything
            assert "Predict latency (8 requests" in everything
            assert "unauthenticated" in everything and "Not shown" not in everything
            # The store is asked on every page, so revoking a token ends what its session may see.
            second_root = store.create_token(admin, "admin", "*", "second")
            store.revoke_token(second_root, admin.split("_")[1])
            assert root.get("/console/figures").status_code == 403
