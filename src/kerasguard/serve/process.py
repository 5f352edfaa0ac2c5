"""Start-up of a gateway process: open the store, build the app, run uvicorn (one or more processes).

The settings travel to each uvicorn worker process in ``KERASGUARD_SERVE_CONFIG`` (paths only); the
store token and the master key stay in their own environment variables or files, never in argv.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasguard.errors import KerasGuardError

if TYPE_CHECKING:
    from kerasguard.policy import Policy

CONFIG_ENV = "KERASGUARD_SERVE_CONFIG"
TOKEN_ENV = "KERASGUARD_STORE_TOKEN"  # noqa: S105 - the name of a variable
# What the gateway's own token must allow (registry.StoreAccess): list, show and pull in every namespace it
# serves, and token-list when [serve] namespaces is not set (the tenants are then the namespaces with
# live invoker keys): in the RBAC table, an admin; with [serve] namespaces naming the token's own
# namespace, a reader or publisher is enough. An invoker key can do none of this.
ROLE_HINT = (
    "the gateway's store token lists, shows and pulls the served models: use an admin token (for every "
    "namespace, or for the one namespace to serve), or a reader or publisher token with [serve] "
    'namespaces = ["its namespace"] in the policy; invoker keys are for the gateway\'s clients only'
)


@dataclass(frozen=True)
class ServeConfig:
    store: str
    key_file: str | None = None
    policy: str | None = None
    log_level: str = "info"


def serve_policy(config: ServeConfig) -> Policy:
    """The policy the gateway runs under: ``--policy`` if given, else the one found upwards."""
    from kerasguard.policy import load_policy

    return load_policy(config.policy) if config.policy else load_policy()


def app_from_env() -> Any:
    """The uvicorn factory: one app per gateway process, from ``KERASGUARD_SERVE_CONFIG``."""
    raw = json.loads(os.environ[CONFIG_ENV])
    config = ServeConfig(**raw)
    setup_logging(config.log_level)
    return build_app(config, os.environ.get(TOKEN_ENV, ""))


def build_app(config: ServeConfig, token: str) -> Any:
    from kerasguard.serve.app import create_app
    from kerasguard.serve.registry import StoreAccess
    from kerasguard.store import ModelStore, load_master_key

    if not token:
        raise KerasGuardError(
            f"the gateway needs a store token in ${TOKEN_ENV} to list and pull the served models",
            hint=ROLE_HINT,
        )
    policy = serve_policy(config)
    key_file = Path(config.key_file) if config.key_file else None
    store = ModelStore.open(Path(config.store), load_master_key(key_file), policy=policy)
    access = StoreAccess(store, token, policy)
    # A token that cannot tell which tenants to serve, or list their models, fails now, not at every poll.
    try:
        tenants = access.tenants()
    except KerasGuardError as exc:
        store.close()
        raise KerasGuardError(
            f"the gateway's store token cannot list the tenants to serve: {exc.message}", hint=ROLE_HINT
        ) from None
    for tenant in tenants:
        try:
            access.served(tenant)
        except KerasGuardError as exc:
            store.close()
            raise KerasGuardError(
                f"the gateway's store token cannot list the models of namespace {tenant}: {exc.message}",
                hint=ROLE_HINT,
            ) from None
    return create_app(access, policy)


def setup_logging(level: str) -> None:
    """Access-log lines and gateway events as plain lines (the access log is JSON) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("kerasguard.serve", "kerasguard.events", "kerasguard.sandbox", "kerasguard.loader"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def run(
    config: ServeConfig,
    *,
    host: str,
    port: int,
    workers: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Run uvicorn in the foreground until interrupted."""
    import uvicorn

    from kerasguard.serve.connections import protocol

    if (tls_cert is None) != (tls_key is None):
        raise KerasGuardError("--tls-cert and --tls-key go together")
    os.environ[CONFIG_ENV] = json.dumps(asdict(config))
    limits = serve_policy(config).serve
    # One process: build the app here, so a wrong store, key or token fails before binding. Several:
    # each uvicorn worker process builds its own from the environment.
    target: Any = app_from_env() if workers == 1 else "kerasguard.serve.process:app_from_env"
    if tls_cert is None and host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("kerasguard.serve").warning(
            "serving plain http on %s: the review console's Secure session cookie only works on loopback "
            "or over TLS (--tls-cert/--tls-key, or a TLS proxy); see docs/console.md",
            host[:100],
        )
    uvicorn.run(
        target,
        factory=workers > 1,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level=config.log_level,
        timeout_graceful_shutdown=10,
        # connection limits (docs/serve.md, "Connection limits"): the h11 protocol with a deadline on the
        # request head (never httptools), uvicorn's 503 past max_connections, the idle keep-alive timeout
        http=protocol(limits.header_timeout_s),
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive_timeout_s,
    )
