"""The permission matrix: every role against every action, in its own namespace and in another tenant's.

The expected table is written out here, not derived from ``rbac.PERMISSIONS``, so a change to the
matrix has to change this test too. Every denial must be in the audit log.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import SOURCE, StoreEnv
from kerasguard.errors import StoreError
from kerasguard.store import AccessDenied, MasterKey, ModelStore

READER = {"list", "show", "pull"}
PUBLISHER = READER | {"push", "promote"}
TENANT_ADMIN = PUBLISHER | {
    "list-quarantined",
    "show-quarantined",
    "pull-quarantined",
    "quarantine",
    "release",
    "delete",
    "audit-export",
    "token-create",
    "token-revoke",
    "token-list",
}
GLOBAL_ADMIN = TENANT_ADMIN | {"audit-verify", "rotate-key"}
# An invoker key only calls served models through the gateway: every store action is denied.
EXPECTED = {"reader": READER, "publisher": PUBLISHER, "admin": TENANT_ADMIN, "invoker": set()}


@dataclass
class World:
    env: StoreEnv
    model_file: Path
    dest: Path
    reader_ids: dict[str, str]


Call = Callable[[ModelStore, str, str, World], object]

ACTIONS: dict[str, Call] = {
    "list": lambda s, t, ns, w: s.list(t, namespace=ns),
    "show": lambda s, t, ns, w: s.show(t, "m", "1", namespace=ns),
    "pull": lambda s, t, ns, w: s.pull(t, "m", "1", w.dest, namespace=ns),
    "push": lambda s, t, ns, w: s.push(t, w.model_file, name="new", version="1", source=SOURCE, namespace=ns),
    "promote": lambda s, t, ns, w: s.promote(t, "m", "1", "production", namespace=ns),
    "list-quarantined": lambda s, t, ns, w: s.list(t, namespace=ns, include_quarantined=True),
    "show-quarantined": lambda s, t, ns, w: s.show(t, "q", "1", namespace=ns),
    "pull-quarantined": lambda s, t, ns, w: s.pull(t, "q", "1", w.dest, namespace=ns, allow_quarantined=True),
    "quarantine": lambda s, t, ns, w: s.quarantine(t, "m", "1", "suspicious", namespace=ns),
    "release": lambda s, t, ns, w: s.release(t, "q", "1", "reviewed", namespace=ns),
    "delete": lambda s, t, ns, w: s.delete(t, "m", "1", "retired", namespace=ns),
    "audit-verify": lambda s, t, ns, w: s.audit_verify(t),
    "audit-export": lambda s, t, ns, w: s.audit_export(t, io.StringIO(), namespace=ns),
    "token-create": lambda s, t, ns, w: s.create_token(t, "reader", ns, "new"),
    "token-revoke": lambda s, t, ns, w: s.revoke_token(t, w.reader_ids[ns]),
    "token-list": lambda s, t, ns, w: s.list_tokens(t, ns),
    "rotate-key": lambda s, t, ns, w: s.rotate_key(t, MasterKey.generate()),
}


@pytest.fixture
def world(make_store: Callable[..., StoreEnv], tmp_path: Path) -> World:
    env = make_store()
    model = tmp_path / "model.keras"
    model.write_bytes(os.urandom(20_000))
    reader_ids = {}
    for ns in ("team", "other"):
        pub = env.token("publisher", ns)
        env.store.push(pub, model, name="m", version="1", source=SOURCE, namespace=ns)
        env.store.push(pub, model, name="q", version="1", source=SOURCE, namespace=ns)
        env.store.quarantine(env.admin, "q", "1", "under review", namespace=ns)
        reader_ids[ns] = env.token("reader", ns).split("_")[1]
    return World(env, model, tmp_path / "pulled.keras", reader_ids)


def denials(env: StoreEnv) -> list[tuple[str, str, str | None]]:
    with env.store.engine.begin() as conn:
        rows = conn.execute(text("select actor, action, namespace from audit where result = 'denied'")).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.mark.parametrize("target", ["own", "cross-tenant"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("role", ["reader", "publisher", "admin", "invoker"])
def test_tenant_roles(world: World, role: str, action: str, target: str) -> None:
    env = world.env
    token = env.token(role, "team")
    token_id = token.split("_")[1]
    ns = "team" if target == "own" else "other"
    allowed = action in EXPECTED[role] and target == "own"
    before = len(denials(env))
    if allowed:
        ACTIONS[action](env.store, token, ns, world)
        assert len(denials(env)) == before
        return
    with pytest.raises(StoreError) as info:
        ACTIONS[action](env.store, token, ns, world)
    if action == "show-quarantined":
        # quarantined models are invisible to non-admins: "no model", not a hint that one exists
        assert "no model team/q:1" in info.value.message or isinstance(info.value, AccessDenied)
    else:
        assert isinstance(info.value, AccessDenied), info.value
    after = denials(env)
    assert len(after) == before + 1, "a denied action was not audited"
    actor, audited_action, _ = after[-1]
    assert actor.startswith(f"token:{token_id}")
    # a quarantined model is first a model: another tenant is already denied "show"
    assert audited_action == action or (action == "show-quarantined" and audited_action == "show")


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("ns", ["team", "other"])
def test_global_admin_may_do_everything(world: World, action: str, ns: str) -> None:
    assert action in GLOBAL_ADMIN
    ACTIONS[action](world.env.store, world.env.admin, ns, world)
    assert denials(world.env) == []


@pytest.mark.parametrize(
    "token",
    ["", "not-a-token", "kgs_0123456789abcdef_" + "A" * 43, "kgs_../../_x"],
)
def test_invalid_tokens_denied_and_audited(world: World, token: str) -> None:
    for action in ("list", "pull", "push", "audit-verify"):
        with pytest.raises(AccessDenied):
            ACTIONS[action](world.env.store, token, "team", world)
    assert len(denials(world.env)) == 4


def test_wrong_secret_for_real_token_id_is_denied(world: World) -> None:
    real = world.env.token("admin", "team")
    token_id = real.split("_")[1]
    forged = f"kgs_{token_id}_{'B' * 43}"
    assert forged != real
    with pytest.raises(AccessDenied):
        world.env.store.list(forged)


def test_revoked_token_is_denied(world: World) -> None:
    reader = world.env.token("reader", "team")
    world.env.store.list(reader)
    world.env.store.revoke_token(world.env.admin, reader.split("_")[1])
    with pytest.raises(AccessDenied):
        world.env.store.list(reader)


def test_tenant_admin_cannot_mint_global_or_foreign_tokens(world: World) -> None:
    admin = world.env.token("admin", "team")
    with pytest.raises(AccessDenied):
        world.env.store.create_token(admin, "admin", "*")
    with pytest.raises(AccessDenied):
        world.env.store.create_token(admin, "reader", "other")
    with pytest.raises(StoreError, match="only admin tokens"):
        world.env.store.create_token(world.env.admin, "reader", "*")


def test_tenant_audit_export_shows_only_its_namespace(world: World) -> None:
    admin = world.env.token("admin", "team")
    buf = io.StringIO()
    world.env.store.audit_export(admin, buf)
    import json

    entries = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert entries and {e["namespace"] for e in entries} == {"team"}


def test_authenticate_invoker_accepts_only_live_invoker_keys(world: World) -> None:
    env = world.env
    key = env.token("invoker", "team")
    principal = env.store.authenticate_invoker(key)
    assert principal is not None
    assert (principal.namespace, principal.role) == ("team", "invoker")
    # other roles (admin of every namespace included) are refused on the data plane
    for other in (env.admin, env.token("reader", "team"), env.token("admin", "team")):
        assert env.store.authenticate_invoker(other) is None
    assert env.store.authenticate_invoker(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert env.store.authenticate_invoker("") is None
    before = len(denials(env))
    env.store.revoke_token(env.admin, key.split("_")[1])
    assert env.store.authenticate_invoker(key) is None
    assert len(denials(env)) == before  # not audited: the gateway logs each request itself


def test_revoke_takes_the_id_or_the_whole_token_and_never_repeats_the_secret(env: StoreEnv) -> None:
    reader = env.token("reader", "team")
    token_id, secret = reader.split("_", 2)[1:]
    assert env.store.revoke_token(env.admin, reader) == token_id  # the whole token: its id is revoked
    with pytest.raises(AccessDenied):
        env.store.list(reader)
    other = env.token("reader", "team")
    assert env.store.revoke_token(env.admin, f"kgs_{other.split('_')[1]}") == other.split("_")[1]
    with pytest.raises(StoreError) as info:
        env.store.revoke_token(env.admin, f"kgs_{'0' * 16}_{secret}")
    assert info.value.message == f"no token with id {'0' * 16}"
    assert secret not in info.value.diagnostics()
    for garbage in (secret, f"kgs_NOTHEX_{secret}", ""):
        with pytest.raises(StoreError) as info:
            env.store.revoke_token(env.admin, garbage)
        assert "not a token id" in info.value.message and secret not in info.value.diagnostics()
    with env.store.engine.begin() as conn:
        details = conn.execute(text("select detail from audit where action = 'token-revoke'")).scalars().all()
    assert details == [f"token {token_id}", f"token {other.split('_')[1]}"]


def test_denials_name_the_role_with_its_article(env: StoreEnv) -> None:
    """Denials say "an invoker token", "an admin token", "a reader token" (never "a invoker")."""
    from kerasguard.store.rbac import Role, a_role

    assert [a_role(r) for r in Role] == ["a reader", "a publisher", "an admin", "an invoker"]
    cases: list[tuple[str, Callable[[str], object], str]] = [
        (
            "invoker",
            lambda token: env.store.list(token),
            "an invoker token for namespace 'team' may not list",
        ),
        ("reader", lambda token: env.store.list_tokens(token), "a reader token for namespace 'team' may not"),
        ("admin", lambda token: env.store.rotate_key(token, MasterKey.generate()), "an admin token for"),
    ]
    for role, call, said in cases:
        with pytest.raises(AccessDenied) as info:
            call(env.token(role, "team"))
        assert info.value.message.startswith(f"access denied: {said}"), info.value.message


def test_revoking_a_revoked_token_changes_nothing(env: StoreEnv) -> None:
    """The first revocation's time and revision stay (a second one used to overwrite them)."""
    token_id = env.token("reader", "team").split("_")[1]

    def state() -> tuple[object, ...]:
        with env.store.engine.begin() as conn:
            return tuple(
                conn.execute(
                    text("select revoked_at, revision from tokens where id = :i"), {"i": token_id}
                ).one()
            )

    env.store.revoke_token(env.admin, token_id)
    first = state()
    time.sleep(0.01)
    assert env.store.revoke_token(env.admin, token_id) == token_id
    assert state() == first and first[0] is not None
