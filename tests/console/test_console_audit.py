"""The audit page on a store of its own (its chain is broken on purpose): the chain status, and the
"Verify now" button that re-checks at once instead of showing the minute-old result."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from support.consolehelp import console_app, csrf_of, login, serving
from support.servehelp import SOURCE


def test_the_audit_page_shows_a_broken_chain_once_verify_now_rechecks_it(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("jinja2")
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    policy = Policy(store=Store(sources=(SOURCE,)))
    store, admin = ModelStore.init(tmp_path / "store", write_key_file(tmp_path / "key"), policy=policy)
    with store:
        tenant_admin = store.create_token(admin, "admin", "acme", "lead")
        store.create_token(admin, "reader", "acme", "auditor")
        with serving(console_app(store, policy)) as url:
            reviewer = login(url, admin)
            page = reviewer.get("/console/audit").text
            assert 'id="chain">Chain: <b>intact</b>' in page
            # What an attacker with write access to the database (and no master key) can do: edit the
            # entry that recorded the reader token's creation (tests/store/test_store_witness.py).
            with store.engine.begin() as conn:
                seq = conn.execute(
                    text(
                        "select max(seq) from audit where action = 'token-create' and detail like '%reader%'"
                    )
                ).scalar_one()
                conn.execute(text("update audit set detail = 'nothing to see' where seq = :s"), {"s": seq})
            page = reviewer.get("/console/audit").text
            assert "<b>intact</b>" in page  # the result of the last minute is shown until "Verify now"
            verify = "/console/audit/verify"
            assert reviewer.post(verify, data={"x": "1"}).status_code == 403  # no CSRF token
            assert reviewer.post(verify, data={"csrf": "forged"}).status_code == 403
            assert "<b>intact</b>" in reviewer.get("/console/audit").text  # the refused POSTs checked nothing
            answer = reviewer.post(verify, data={"csrf": csrf_of(page)})
            assert answer.status_code == 303 and answer.headers["location"] == "/console/audit?done=verified"
            page = reviewer.get(answer.headers["location"]).text
            assert "Audit chain verified." in page
            assert 'class="chain chain-broken" id="chain">Chain: <b>broken</b>' in page
            assert f"audit entry #{seq}" in page and "was edited" in page
            tenant = login(url, tenant_admin)
            page = tenant.get("/console/audit").text
            assert "<b>not checked</b>" in page and 'id="verify"' not in page
            refused = tenant.post(verify, data={"csrf": csrf_of(page)})
            assert refused.status_code == 403  # the chain is the whole store's: '*' admins only
