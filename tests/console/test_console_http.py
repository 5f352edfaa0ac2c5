"""The console over real HTTP (a real ``kerasguard serve`` process): login, sessions, CSRF, roles,
security headers, and hostile names from a model file shown inert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.consolehelp import ESC, HOSTILE_MEMBER, IMG, MARKUP, NS, SCRIPT, Site, csrf_of, login
from support.servehelp import SOURCE

pytestmark = [pytest.mark.slow, pytest.mark.keras]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'"
)


def push_digits(site: Site, name: str, **extra: Any) -> Any:
    """Push the site's digits model as ``name`` version 1 from the trusted source; the store's answer."""
    with site.world.store() as store:
        return store.push(
            site.publisher,
            site.world.folder / "models" / "digits.keras",
            name=name,
            version="1",
            source=f"{SOURCE}/{name}",
            **extra,
        )


def status_of(site: Site, name: str) -> str:
    with site.world.store() as store:
        return str(store.show(site.admin, name, "1", namespace=NS).status)


def test_login_sets_a_hardened_session_cookie_and_pages_carry_the_security_headers(site: Site) -> None:
    client = httpx.Client(base_url=site.url, timeout=30)
    page = client.get("/console/login")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie, cookie
    assert page.headers["content-security-policy"].startswith(CSP)
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script" not in page.text and "style=" not in page.text  # nothing inline to allow
    admin = login(site, site.admin)
    for path in ("/console/models", "/console/quarantine", "/console/audit", "/console/figures"):
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.headers["content-security-policy"].startswith(CSP)
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    css = admin.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["x-frame-options"] == "DENY"
    assert "digits:1" in admin.get("/console/models").text


def test_bad_tokens_and_invoker_keys_get_no_session(site: Site) -> None:
    for token in ("kgs_0000000000000000_" + "A" * 43, site.invoker, ""):
        client = httpx.Client(base_url=site.url, timeout=30)
        page = client.get("/console/login")
        cookie = page.headers["set-cookie"].split(";")[0]
        answer = client.post(
            "/console/login",
            data={"csrf": csrf_of(page.text), "token": token},
            headers={"cookie": cookie},
        )
        assert answer.status_code == 401, answer.text[:300]
        assert "access denied" in answer.text
        after = client.get("/console/models", headers={"cookie": cookie}, follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"] == "/console/login"


def test_logout_ends_the_session(site: Site) -> None:
    client = login(site, site.reader)
    page = client.get("/console/models")
    assert page.status_code == 200
    assert client.post("/console/logout", data={"x": "1"}).status_code == 403  # CSRF on logout too
    answer = client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and "max-age=0" in answer.headers["set-cookie"].lower()
    assert client.get("/console/models").headers["location"] == "/console/login"


def test_unauthenticated_requests_are_sent_to_login_or_refused(site: Site) -> None:
    client = httpx.Client(base_url=site.url, timeout=30)
    assert client.get("/console/models").headers["location"] == "/console/login"
    assert client.get(f"/console/models/{NS}/suspect/1").headers["location"] == "/console/login"
    post = client.post(f"/console/models/{NS}/suspect/1/release", data={"reason": "x", "csrf": "x"})
    assert post.status_code == 401
    assert status_of(site, "suspect") == "quarantined"


def test_a_post_without_the_session_csrf_token_is_refused(site: Site) -> None:
    admin = login(site, site.admin)
    url = f"/console/models/{NS}/hostile/1/release"
    assert admin.post(url, data={"reason": "looks fine"}).status_code == 403
    assert admin.post(url, data={"reason": "looks fine", "csrf": "forged"}).status_code == 403
    other = login(site, site.admin)  # another session's token does not count either
    page_csrf = csrf_of(other.get(f"/console/models/{NS}/hostile/1").text)
    assert admin.post(url, data={"reason": "looks fine", "csrf": page_csrf}).status_code == 403
    csrf = csrf_of(admin.get(f"/console/models/{NS}/hostile/1").text)
    cross = admin.post(url, data={"reason": "x", "csrf": csrf}, headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    assert admin.post(url, data={"reason": "  ", "csrf": csrf}).status_code == 400  # reason required
    assert status_of(site, "hostile") == "quarantined"


def test_a_reader_sees_no_actions_and_the_endpoints_answer_403(site: Site) -> None:
    reader = login(site, site.reader)
    page = reader.get(f"/console/models/{NS}/digits/1")
    assert page.status_code == 200
    for marker in ("release-form", "promote-form", "delete-form", "nav-quarantine", "nav-audit"):
        assert marker not in page.text
    csrf = csrf_of(page.text)
    for action in ("release", "promote", "delete"):
        for name in ("digits", "suspect"):
            answer = reader.post(
                f"/console/models/{NS}/{name}/1/{action}",
                data={"reason": "trust me", "stage": "production", "csrf": csrf},
            )
            assert answer.status_code == 403, (action, name, answer.text[:300])
    assert reader.get("/console/quarantine").status_code == 403
    assert reader.get("/console/audit").status_code == 403
    assert reader.get(f"/console/models/{NS}/suspect/1").status_code == 404  # quarantined: admins only
    assert status_of(site, "suspect") == "quarantined"
    assert status_of(site, "digits") == "admitted"


def test_an_admin_of_another_namespace_is_refused_naming_its_role_with_an(site: Site) -> None:
    with site.world.store() as store:
        elsewhere = store.create_token(site.admin, "admin", "elsewhere", "another tenant's admin")
    admin = login(site, elsewhere)
    csrf = csrf_of(admin.get("/console/models").text)
    answer = admin.post(f"/console/models/{NS}/suspect/1/release", data={"reason": "mine now", "csrf": csrf})
    assert answer.status_code == 403, answer.text[:300]
    assert "an admin token may not release in this namespace" in answer.text, answer.text[:2000]
    assert status_of(site, "suspect") == "quarantined"


def test_a_publisher_promotes_with_a_reason_and_the_audit_log_shows_it(site: Site) -> None:
    publisher = login(site, site.publisher)
    page = publisher.get(f"/console/models/{NS}/digits/1")
    assert "promote-form" in page.text and "release-form" not in page.text
    answer = publisher.post(
        f"/console/models/{NS}/digits/1/promote",
        data={"stage": "staging", "reason": "canary <b>ok</b>", "csrf": csrf_of(page.text)},
    )
    assert answer.status_code == 303, answer.text[:300]
    audit = login(site, site.admin).get("/console/audit").text
    assert "stage staging: canary &lt;b&gt;ok&lt;/b&gt;" in audit
    assert 'id="chain">Chain: <b>intact</b>' in audit


def test_hostile_layer_and_file_names_are_shown_inert(site: Site) -> None:
    page = login(site, site.admin).get(f"/console/models/{NS}/hostile/1")
    assert page.status_code == 200
    html = page.text
    assert SCRIPT not in html and "<img" not in html and "\x1b" not in html and "\x07" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert MARKUP in html  # not markup here: shown as typed
    assert ESC.replace("\x1b", "\\x1b") in html  # the terminal escape is shown as text
    shown_member = HOSTILE_MEMBER.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    shown_member = shown_member.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
    assert shown_member in html
    assert IMG not in html


def test_a_training_record_in_the_provenance_is_summarised(site: Site) -> None:
    record = {
        "schema": "kerasguard.training-record/1",
        "data_manifest": "sha256:" + "d" * 64,
        "metrics": [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}],
        "batches": 20,
        "keras_version": "3.15.1",
        "backend": "jax",
        "anomalies": [{"id": "KGT001", "epoch": 1, "batch": 3, "message": "loss spike <b>x</b>"}],
    }
    info = push_digits(
        site,
        "trained",
        provenance={"training_record": record, "training_record_digest": "sha256:" + "e" * 64},
    )
    assert info.status == "admitted"
    admin = login(site, site.admin)
    listing = admin.get("/console/models").text
    assert "2 epoch(s), 1 anomaly" in listing
    page = admin.get(f"/console/models/{NS}/trained/1").text
    assert 'id="training"' in page and "sha256:" + "e" * 64 in page
    assert "KGT001 epoch 1 batch 3: loss spike &lt;b&gt;x&lt;/b&gt;" in page
    assert "keras 3.15.1 on jax" in page


def test_sealed_attachments_are_listed_escaped_and_the_sealed_record_summarised(
    site: Site, tmp_path: Path
) -> None:
    from kerasguard import attach

    hostile = SCRIPT + MARKUP + ESC
    report = {
        "schema": "kerasguard.probe.backdoor/1",
        "model": hostile,
        "verdict": "backdoor" + ESC,
        "flagged_classes": [IMG],
        "anomaly_threshold": 2.0,
        "n_classes": 10,
        "classes": [{"class": 7, "anomaly_index": 4.5}],
    }
    (tmp_path / "backdoor.json").write_text(json.dumps(report))
    record = {
        "schema": "kerasguard.training-record/v1",
        "data_manifest": None,
        "hyperparameters": {},
        "metrics": [{}, {}, {}],
        "anomalies": [{"id": "KGT002", "epoch": 2, "batch": 1, "message": SCRIPT}],
        "stopped": False,
        "batches": 30,
        "keras_version": "3.15.1",
        "backend": "jax",
    }
    (tmp_path / "training.json").write_text(json.dumps(record))
    items = attach.build(
        model=None,
        max_bytes=1 << 20,
        probe_reports=[tmp_path / "backdoor.json"],
        training_records=[tmp_path / "training.json"],
    )
    push_digits(site, "probed", attachments=items)
    admin = login(site, site.admin)
    assert "3 epoch(s), 1 anomaly" in admin.get("/console/models").text
    html = admin.get(f"/console/models/{NS}/probed/1").text
    assert 'id="attachments"' in html and "backdoor.json" in html and "training.json" in html
    assert "backdoor probe: verdict backdoor\\x1b[31mESC\\x1b[0m, flagged" in html  # escapes as text
    assert SCRIPT not in html and "<img" not in html and "\x1b" not in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "KGT002 epoch 2 batch 1: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'id="training"' in html and "keras 3.15.1 on jax" in html


def test_the_console_can_be_switched_off(site: Site) -> None:
    from starlette.testclient import TestClient

    from kerasguard.policy import Policy, Serve, Store
    from kerasguard.serve.app import create_app
    from kerasguard.serve.registry import StoreAccess
    from support.servehelp import SOURCE

    with site.world.store() as store:
        for enabled, expected in ((False, 404), (True, 303)):
            policy = Policy(store=Store(sources=(SOURCE,)), serve=Serve(console=enabled))
            app = create_app(StoreAccess(store, site.admin, policy), policy)
            answer = TestClient(app).get("/console/", follow_redirects=False)
            assert answer.status_code == expected


def test_the_publishers_provenance_and_the_policys_suppressions_are_shown_escaped(site: Site) -> None:
    from kerasguard.findings import Severity
    from kerasguard.policy import Ignore, Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import read_key_file

    waiver = f"waived: {SCRIPT} {MARKUP} {ESC}"
    policy = Policy(
        store=Store(sources=(SOURCE,)),
        severity={"KG209": Severity.LOW},
        ignore=(Ignore("KG301", reason=waiver),),
    )
    client = {"ci_run": SCRIPT, "commit": IMG + ESC, "build": {"runner": MARKUP, "attempt": 2}}
    models = site.world.folder / "models"
    with ModelStore.open(site.world.root, read_key_file(site.world.key_file), policy=policy) as store:
        info = store.push(
            site.publisher,
            models / "hostile.keras",
            name="waived",
            version="1",
            source=f"{SOURCE}/waived",
            provenance=client,
        )
    assert info.status == "quarantined"  # KG101 (a Lambda's bytecode) is neither ignored nor downgraded
    html = login(site, site.admin).get(f"/console/models/{NS}/waived/1").text
    assert SCRIPT not in html and "<img" not in html and "\x1b" not in html
    assert 'id="client-provenance"' in html
    assert '<th>ci_run</th><td class="claim">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;\\x1b[31mESC\\x1b[0m" in html
    assert "{&#34;attempt&#34;: 2, &#34;runner&#34;: &#34;[red]x[/red]&#34;}" in html
    assert 'id="scan-complete">Complete' in html
    suppressions = html.split('id="suppressions"', 1)[1].split("</table>", 1)[0]
    assert suppressions.count('class="suppression"') == 3  # KG301 ignored, KG209 twice downgraded
    assert "ignored (low)" in suppressions and "severity medium → low" in suppressions
    assert "waived: &lt;script&gt;alert(1)&lt;/script&gt; [red]x[/red] \\x1b[31mESC\\x1b[0m" in suppressions
    assert "control characters in name" in suppressions


def test_an_incomplete_scan_is_called_incomplete(site: Site) -> None:
    import zipfile

    models = site.world.folder / "models"
    broken = models / "broken.keras"
    with zipfile.ZipFile(models / "digits.keras") as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[: len(data) // 2] if item.filename == "config.json" else data)
    with site.world.store() as store:
        info = store.push(site.publisher, broken, name="broken", version="1", source=f"{SOURCE}/broken")
    assert info.status == "quarantined"
    html = login(site, site.admin).get(f"/console/models/{NS}/broken/1").text
    assert 'id="scan-complete"><span class="incomplete">Incomplete</span>' in html
    assert "KG901" in html


def test_an_admin_deletes_a_model_with_a_reason_and_the_audit_log_shows_it(
    site: Site, tmp_path: Path
) -> None:
    from kerasguard.errors import KerasGuardError

    push_digits(site, "doomed")
    admin = login(site, site.admin)
    url = f"/console/models/{NS}/doomed/1"
    csrf = csrf_of(admin.get(url).text)
    answer = admin.post(f"{url}/delete", data={"reason": "superseded by <b>v2</b>", "csrf": csrf})
    assert answer.status_code == 303, answer.text[:300]
    assert answer.headers["location"] == "/console/models?done=deleted"
    assert "Deleted: its data key and blob are gone" in admin.get(answer.headers["location"]).text
    page = admin.get(url).text
    assert '<td id="status">deleted</td>' in page
    assert "deleted: superseded by &lt;b&gt;v2&lt;/b&gt;" in page
    assert "delete-form" not in page and "promote-form" not in page  # nothing left to decide
    with site.world.store() as store:
        assert store.show(site.admin, "doomed", "1", namespace=NS).status == "deleted"
        with pytest.raises(KerasGuardError):
            store.pull(site.admin, "doomed", "1", tmp_path, namespace=NS)
    audit = admin.get("/console/audit").text
    row = next(r for r in audit.split("<tr ") if f"{NS}/doomed:1" in r and ">delete<" in r)
    assert "r-ok" in row and "superseded by &lt;b&gt;v2&lt;/b&gt;" in row
