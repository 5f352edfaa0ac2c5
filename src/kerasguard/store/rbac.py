"""Access control: API tokens with a role in one namespace, and a deny-by-default permission matrix.

Tokens look like ``kgs_<id>_<secret>``: the id is public (it names the actor in the audit log), the
secret is 32 random bytes. Only ``sha256(salt | secret)`` is stored, and each token row carries a MAC
under a key derived from the master key, so someone who can write the database still cannot mint a
token or raise a token's role. The MAC covers the row's revision (1 created, 2 revoked), which the
audit log records too: the store refuses a token row older than its latest audit entry, so putting
back the row from before a revocation does not bring the token back. A namespace is a tenant; only
an admin token may have the ``*`` namespace (every tenant), and a token never acts outside its
namespace.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from kerasguard.errors import StoreError
from kerasguard.store import crypto
from kerasguard.store.db import TokenRow

ALL_NAMESPACES = "*"
TOKEN_RE = re.compile(r"^kgs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# A token named by its id (16 hex characters), or given whole (``kgs_<id>_<secret>``): the id is taken.
TOKEN_ID_RE = re.compile(r"^(?:kgs_)?([0-9a-f]{16})(?:_[A-Za-z0-9_-]*)?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Role(StrEnum):
    reader = "reader"
    publisher = "publisher"
    admin = "admin"
    # Calls served models through the gateway (``kerasguard serve``) and nothing else: it cannot list,
    # show or pull from the store, so a leaked key exposes predictions, never model files.
    invoker = "invoker"


class Action(StrEnum):
    list = "list"
    show = "show"
    pull = "pull"
    push = "push"
    promote = "promote"
    list_quarantined = "list-quarantined"
    show_quarantined = "show-quarantined"
    pull_quarantined = "pull-quarantined"
    quarantine = "quarantine"
    release = "release"
    delete = "delete"
    audit_verify = "audit-verify"
    audit_export = "audit-export"
    token_create = "token-create"  # noqa: S105 - an action name, not a secret
    token_revoke = "token-revoke"  # noqa: S105
    token_list = "token-list"  # noqa: S105
    rotate_key = "rotate-key"
    invoke = "invoke"
    attach = "attach"  # add an attachment to a pushed version (admins; publishers attach at push)


_READ = frozenset({Action.list, Action.show, Action.pull})
_PUBLISH = _READ | {Action.push, Action.promote}
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.reader: _READ,
    Role.publisher: _PUBLISH,
    Role.admin: frozenset(Action),
    Role.invoker: frozenset({Action.invoke}),
}
# Actions on the whole store, not one tenant: only an admin of every namespace may run them.
GLOBAL_ACTIONS = frozenset({Action.rotate_key, Action.audit_verify})


def a_role(role: Role | str) -> str:
    """The role after its indefinite article, for messages: ``a reader``, ``an admin``, ``an invoker``."""
    text = str(role)
    return f"{'an' if text.startswith(tuple('aeiou')) else 'a'} {text}"


@dataclass(frozen=True)
class Principal:
    """An authenticated token."""

    token_id: str
    role: Role
    namespace: str
    label: str

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}({self.label})"

    def allowed(self, action: Action, namespace: str | None) -> bool:
        """Deny by default: the role must grant the action and the namespace must be the token's."""
        if action not in PERMISSIONS.get(self.role, frozenset()):
            return False
        if self.namespace == ALL_NAMESPACES:
            return True
        if action in GLOBAL_ACTIONS:
            return False
        return namespace is not None and namespace == self.namespace


def token_id_of(value: str) -> str:
    """The id of a token given by its id or as the whole token (``kgs_<id>_<secret>``).

    ``value`` may be a secret, so a value that names no token id is refused without repeating it.
    """
    match = TOKEN_ID_RE.match(value.strip())
    if match is None:
        raise StoreError(
            "not a token id: give the 16 hex characters between 'kgs_' and the second '_' of the token "
            "(or the whole token)",
            hint="`kerasguard store token list` shows the ids",
        )
    return match.group(1)


def check_namespace(namespace: str, *, allow_all: bool = False) -> str:
    if allow_all and namespace == ALL_NAMESPACES:
        return namespace
    if not NAMESPACE_RE.match(namespace):
        raise StoreError(
            f"invalid namespace {namespace!r} (lowercase letters, digits, '.', '_', '-'; up to 64)"
        )
    return namespace


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("ascii")).hexdigest()


def token_mac(key: bytes, row: TokenRow) -> str:
    return crypto.mac(
        key,
        [
            "token-v2",
            row.id,
            row.salt,
            row.hash,
            row.role,
            row.namespace,
            row.label,
            row.created_at,
            row.revoked_at,
            row.revision,
        ],
    )


def new_token(
    role: Role, namespace: str, label: str, created_by: str, created_at: str, mac_key: bytes
) -> tuple[str, TokenRow]:
    """A fresh token string (shown once) and the row that stores only its salted hash."""
    if namespace == ALL_NAMESPACES and role is not Role.admin:
        raise StoreError("only admin tokens may cover every namespace ('*')")
    check_namespace(namespace, allow_all=True)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    row = TokenRow(
        id=token_id,
        salt=salt,
        hash=_hash(salt, secret),
        role=role.value,
        namespace=namespace,
        label=label[:128],
        created_at=created_at,
        created_by=created_by[:128],
        revoked_at=None,
        revision=1,
        row_mac="",
    )
    row.row_mac = token_mac(mac_key, row)
    return f"kgs_{token_id}_{secret}", row


def parse_token(token: str) -> tuple[str, str] | None:
    match = TOKEN_RE.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def authenticate(row: TokenRow | None, secret: str, mac_key: bytes) -> Principal | None:
    """The principal for a token, or None (unknown, wrong secret, revoked or tampered row)."""
    if row is None:
        return None
    if not hmac.compare_digest(_hash(row.salt, secret), row.hash):
        return None
    if not hmac.compare_digest(token_mac(mac_key, row), row.row_mac):
        raise StoreError(f"token {row.id} failed its integrity check: the tokens table was tampered with")
    if row.revoked_at is not None:
        return None
    try:
        role = Role(row.role)
    except ValueError:
        return None
    return Principal(token_id=row.id, role=role, namespace=row.namespace, label=row.label)
