"""`kerasguard serve`: the inference gateway (docs/serve.md)."""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

from pathlib import Path
from typing import Annotated

import typer

from kerasguard.cli.app import app, handle_errors


@app.command("serve")
@handle_errors
def serve(
    store: Annotated[Path, typer.Option("--store", envvar="KERASGUARD_STORE", help="Store folder.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8500,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Gateway processes (use Redis limits if > 1).")
    ] = 1,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", envvar="KERASGUARD_MASTER_KEY_FILE", help="Master key file."),
    ] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file with a [serve] table.")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the store's admitted models at the policy's stage to clients with invoker keys.

    The gateway's own store token comes from $KERASGUARD_STORE_TOKEN (never the command line).
    """
    from kerasguard.errors import KerasGuardError
    from kerasguard.serve.process import ServeConfig, run

    if log_level not in ("debug", "info", "warning", "error"):
        raise KerasGuardError(f"unknown log level {log_level!r}")
    config = ServeConfig(
        store=str(store.absolute()),
        key_file=str(key_file.absolute()) if key_file else None,
        policy=str(policy.absolute()) if policy else None,
        log_level=log_level,
    )
    run(
        config,
        host=host,
        port=port,
        workers=workers,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
    )
