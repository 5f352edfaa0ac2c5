"""`kerasguard hash`, `keygen`, `sign` and `verify`.

``verify`` exits 0 when the model verified, 1 when verification failed (changed, extra or missing
files, bad or missing signature, untrusted signer), 2 on a usage or configuration error.
"""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kerasguard.cli.app import (
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_FINDINGS,
    app,
    console,
    handle_errors,
    print_error,
    say,
    write_output,
)
from kerasguard.cli.scan import PolicyOption, resolve_policy
from kerasguard.errors import IntegrityError, KerasGuardError
from kerasguard.render.safe_text import markup_safe

if TYPE_CHECKING:
    from kerasguard.integrity.manifest import Manifest

# Hashing, signing and rich's progress bar are imported inside the commands that use them.

EXIT_VERIFIED = EXIT_CLEAN
EXIT_FAILED = EXIT_FINDINGS


class Algorithm(StrEnum):
    sha256 = "sha256"
    blake3 = "blake3"


class HashFormat(StrEnum):
    json = "json"
    text = "text"


class VerifyFormat(StrEnum):
    text = "text"
    json = "json"


ProgressFlag = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")
]


@contextmanager
def _progress(enabled: bool | None, verb: str) -> Iterator[Callable[[str, int, int], None] | None]:
    """A byte progress bar on stderr when on a terminal (or forced); yields the callback or None."""
    if not (console.is_terminal if enabled is None else enabled):
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn(verb),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def update(name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=markup_safe(name[-40:]))

        yield update


def _password(env: str | None) -> bytes | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if value is None:
        raise KerasGuardError(f"environment variable {env} is not set")
    return value.encode("utf-8")


def _hash_text(manifest: "Manifest", path: Path) -> str:
    """``sha256sum``-compatible lines (``<hex>  <path>``), checkable with ``sha256sum -c``."""
    if manifest.kind == "file":
        ((_, entry),) = manifest.files.items()
        return f"{entry.digest}  {path}\n"
    return "".join(f"{e.digest}  {path / name}\n" for name, e in manifest.files.items())


@app.command("hash")
@handle_errors
def hash_command(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    algorithm: Annotated[Algorithm, typer.Option("--algorithm", "-a")] = Algorithm.sha256,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the manifest here.")] = None,
    fmt: Annotated[HashFormat, typer.Option("--format", "-f", help="json manifest or sha256sum lines.")] = (
        HashFormat.json
    ),
    progress: ProgressFlag = None,
) -> None:
    """Print or write a manifest: the digest of every file of a model.

    The last line on stderr is the digest to pin with `kerasguard verify --digest`: the file's
    digest, or for a directory the digest of its canonical manifest.
    """
    from kerasguard.integrity.manifest import compute_manifest

    with _progress(progress, "hashing") as callback:
        manifest = compute_manifest(path, algorithm.value, callback)
    if fmt is HashFormat.text:
        if algorithm is not Algorithm.sha256:
            print_error(
                "text lines hold BLAKE3 digests; `sha256sum -c` cannot check them",
                label="note",
                style="yellow",
            )
        text = _hash_text(manifest, path)
    else:
        text = manifest.to_json()
    write_output(text, output)
    say(f"digest: {manifest.digest()}")


@app.command()
@handle_errors
def keygen(
    private_key: Annotated[
        Path, typer.Option("--private-key", help="Where to write the private key.")
    ] = Path("kerasguard.key"),
    public_key: Annotated[Path, typer.Option("--public-key", help="Where to write the public key.")] = Path(
        "kerasguard.pub"
    ),
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Encrypt the private key with this env variable.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Generate an ECDSA P-256 key pair (PEM; the private key is created with mode 0600)."""
    from kerasguard.integrity.keys import generate_keypair

    hint = generate_keypair(private_key, public_key, password=_password(password_env), overwrite=force)
    say(f"wrote {private_key} (private, 0600) and {public_key}; key id {hint}")


@app.command()
@handle_errors
def sign(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="ECDSA private key (PEM).")],
    signature: Annotated[
        Path | None, typer.Option("--signature", "-s", help="Default: DIR/model.sig or FILE.sig.")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="Name to bind (default: file/folder name).")] = None,
    model_version: Annotated[str | None, typer.Option(help="Version to bind.")] = None,
    signer: Annotated[str | None, typer.Option(help="Signer name to record (checked at verify).")] = None,
    certificate: Annotated[
        Path | None, typer.Option("--certificate", help="Signing certificate (PEM) for the key.")
    ] = None,
    cert_chain: Annotated[
        list[Path] | None, typer.Option("--cert-chain", help="Intermediate certificates (PEM), repeatable.")
    ] = None,
    algorithm: Annotated[Algorithm, typer.Option("--algorithm", "-a")] = Algorithm.sha256,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Env variable holding the key's password.")
    ] = None,
    progress: ProgressFlag = None,
) -> None:
    """Sign a model in the OpenSSF model-signing format (Sigstore bundle, DSSE, in-toto)."""
    from kerasguard.integrity.signing import sign as sign_model

    if cert_chain and certificate is None:
        raise KerasGuardError("--cert-chain needs --certificate (the signing certificate)")
    with _progress(progress, "hashing") as callback:
        written = sign_model(
            path,
            key,
            signature_path=signature,
            model_name=model_name,
            model_version=model_version,
            signer=signer,
            certificate=certificate,
            certificate_chain=cert_chain or (),
            password=_password(password_env),
            algorithm=algorithm.value,
            progress=callback,
        )
    say(f"signed {path}: wrote {written}")


@app.command()
@handle_errors
def verify(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    key: Annotated[Path | None, typer.Option("--key", "-k", help="Trusted public key (PEM).")] = None,
    cert_chain: Annotated[
        Path | None, typer.Option("--cert-chain", help="Trusted root certificates (PEM).")
    ] = None,
    identity: Annotated[
        str | None, typer.Option("--identity", help="Certificate identity (SAN e-mail/URI) that must sign.")
    ] = None,
    digest: Annotated[str | None, typer.Option("--digest", help="Pinned digest, e.g. sha256:<hex>.")] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Trusted manifest from `kerasguard hash`.")
    ] = None,
    signature: Annotated[
        Path | None, typer.Option("--signature", "-s", help="Default: DIR/model.sig or FILE.sig.")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Fail unless the signature names this model.")
    ] = None,
    model_version: Annotated[str | None, typer.Option(help="Fail unless it names this version.")] = None,
    policy_file: PolicyOption = None,
    fmt: Annotated[VerifyFormat, typer.Option("--format", "-f")] = VerifyFormat.text,
    progress: ProgressFlag = None,
) -> None:
    """Verify a model against a signature, a pinned digest or a trusted manifest.

    Exit codes: 0 verified, 1 verification failed, 2 usage or configuration error.
    """
    from kerasguard.integrity.verifying import verify as verify_model

    policy = resolve_policy(policy_file)
    try:
        with _progress(progress, "verifying") as callback:
            result = verify_model(
                path,
                key=key,
                cert_chain=cert_chain,
                digest=digest,
                policy=policy,
                model_name=model_name,
                model_version=model_version,
                signature=signature,
                manifest=manifest,
                identity=identity,
                progress=callback,
            )
    except IntegrityError as exc:
        if fmt is VerifyFormat.json:
            doc = {"verified": False, "path": str(path), "reason": type(exc).__name__, "error": exc.message}
            write_output(json.dumps(doc, indent=2), None)
        print_error(exc, label="verification failed")
        raise typer.Exit(EXIT_FAILED) from None
    if fmt is VerifyFormat.json:
        out: dict[str, Any] = {
            "verified": True,
            "path": str(path),
            "checks": list(result.checks),
            "digest": result.manifest.digest(),
            "files": {name: e.digest for name, e in result.manifest.files.items()},
            "model": {"name": result.model_name, "version": result.model_version},
            "signer": None,
        }
        if result.signer:
            s = result.signer
            out["signer"] = {
                "name": s.name,
                "kind": s.kind,
                "key_id": s.key_id,
                "identities": list(s.identities),
            }
        write_output(json.dumps(out, indent=2), None)
    else:
        write_output(result.summary(), None)
    raise typer.Exit(EXIT_VERIFIED)


__all__ = ["EXIT_ERROR", "hash_command", "keygen", "sign", "verify"]
