"""The store's own settings file, ``<root>/store.toml``: where metadata and blobs live. No secrets.

The master key never goes here; a database password belongs in the environment (``PGPASSWORD``) or
``~/.pgpass``, not in the URL written to this file.
"""

from __future__ import annotations

import grp
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from kerasguard.errors import StoreError
from kerasguard.store.perms import Modes, create_file

CONFIG_NAME = "store.toml"
FORMAT = 1


@dataclass(frozen=True)
class StoreConfig:
    db_url: str
    blob_url: str | None = None
    reader_group: str | None = None
    witness: str | None = None  # audit head witness URL; None: audit-witness.jsonl in the store folder

    def modes(self) -> Modes:
        if not self.reader_group:
            return Modes()
        try:
            return Modes(group_gid=grp.getgrnam(self.reader_group).gr_gid)
        except KeyError:
            raise StoreError(f"reader group {self.reader_group!r} does not exist") from None


def not_a_store_hint(root: Path) -> str:
    """What to run when ``root`` holds no store: ``store init`` takes the folder as ``--store``."""
    return (
        f"create a store there with `kerasguard store init --store {shlex.quote(str(root))}`; or, for "
        f"another node of an existing store, copy that store's {CONFIG_NAME} into the folder"
    )


def default_db_url(root: Path) -> str:
    return f"sqlite:///{root / 'store.db'}"


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_config(root: Path, config: StoreConfig, modes: Modes) -> None:
    lines = [f"format = {FORMAT}", f"db_url = {_quote(config.db_url)}"]
    if config.blob_url:
        lines.append(f"blob_url = {_quote(config.blob_url)}")
    if config.reader_group:
        lines.append(f"reader_group = {_quote(config.reader_group)}")
    if config.witness:
        lines.append(f"witness = {_quote(config.witness)}")
    fd = create_file(root / CONFIG_NAME, modes)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# kerasguard model store settings (no secrets here)\n" + "\n".join(lines) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_config(root: Path) -> StoreConfig:
    path = root / CONFIG_NAME
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise StoreError(
            f"{root} is not a kerasguard store (no {CONFIG_NAME})", hint=not_a_store_hint(root)
        ) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    if data.get("format") != FORMAT:
        raise StoreError(f"{path}: unsupported store format {data.get('format')!r}")
    unknown = set(data) - {"format", "db_url", "blob_url", "reader_group", "witness"}
    if unknown:
        raise StoreError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    db_url = data.get("db_url")
    if not isinstance(db_url, str) or not db_url:
        raise StoreError(f"{path}: db_url must be a non-empty string")
    blob_url = data.get("blob_url")
    group = data.get("reader_group")
    if blob_url is not None and not isinstance(blob_url, str):
        raise StoreError(f"{path}: blob_url must be a string")
    if group is not None and not isinstance(group, str):
        raise StoreError(f"{path}: reader_group must be a string")
    witness = data.get("witness")
    if witness is not None and (not isinstance(witness, str) or not witness):
        raise StoreError(f"{path}: witness must be a non-empty URL string (file:/path or redis://...)")
    return StoreConfig(
        db_url=db_url, blob_url=blob_url or None, reader_group=group or None, witness=witness or None
    )
