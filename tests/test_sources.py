"""Trusted sources and the private copy: escapes through '..' and symlinks, URLs, odd files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.errors import KerasGuardError, UntrustedSourceError
from kerasguard.loading.private_copy import make_private_copy
from kerasguard.loading.sources import check_url, open_source
from kerasguard.policy import Policy, Trust, policy_from_mapping


def trusting(*sources: str) -> Policy:
    return Policy(trust=Trust(sources=tuple(sources)))


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """models/ (trusted) and elsewhere/ (not), each with a model file."""
    trusted = tmp_path / "models"
    other = tmp_path / "elsewhere"
    trusted.mkdir()
    other.mkdir()
    (trusted / "good.keras").write_bytes(b"PK good model bytes")
    (other / "evil.keras").write_bytes(b"PK evil model bytes")
    return {"trusted": trusted, "other": other, "root": tmp_path}


def test_file_under_a_trusted_prefix_is_opened(layout: dict[str, Path]) -> None:
    src = open_source(layout["trusted"] / "good.keras", trusting(str(layout["trusted"])))
    try:
        assert src.canonical == (layout["trusted"] / "good.keras").resolve()
        assert os.read(src.fd, 2) == b"PK"
    finally:
        src.close()


def test_dotdot_is_refused_when_prefixes_are_set(layout: dict[str, Path]) -> None:
    sneaky = layout["trusted"] / ".." / "elsewhere" / "evil.keras"
    with pytest.raises(UntrustedSourceError, match=r"'\.\.'"):
        open_source(sneaky, trusting(str(layout["trusted"])))


def test_symlink_out_of_the_prefix_is_refused(layout: dict[str, Path]) -> None:
    link = layout["trusted"] / "innocent.keras"
    link.symlink_to(layout["other"] / "evil.keras")
    with pytest.raises(UntrustedSourceError, match="outside the trusted prefixes"):
        open_source(link, trusting(str(layout["trusted"])))


def test_symlinked_directory_out_of_the_prefix_is_refused(layout: dict[str, Path]) -> None:
    (layout["trusted"] / "sub").symlink_to(layout["other"], target_is_directory=True)
    with pytest.raises(UntrustedSourceError, match="outside"):
        open_source(layout["trusted"] / "sub" / "evil.keras", trusting(str(layout["trusted"])))


def test_prefix_is_a_path_not_a_string_prefix(layout: dict[str, Path]) -> None:
    sibling = layout["root"] / "models-evil"
    sibling.mkdir()
    (sibling / "x.keras").write_bytes(b"PK")
    with pytest.raises(UntrustedSourceError):
        open_source(sibling / "x.keras", trusting(str(layout["trusted"])))


def test_relative_prefix_is_relative_to_the_policy_file(layout: dict[str, Path]) -> None:
    policy_file = layout["root"] / "kerasguard.toml"
    policy_file.write_text('[trust]\nsources = ["models"]\n')
    policy = policy_from_mapping({"trust": {"sources": ["models"]}}, source=str(policy_file))
    open_source(layout["trusted"] / "good.keras", policy).close()
    with pytest.raises(UntrustedSourceError):
        open_source(layout["other"] / "evil.keras", policy)


def test_without_prefixes_any_local_file_is_allowed(layout: dict[str, Path]) -> None:
    open_source(layout["other"] / "evil.keras", Policy()).close()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p, "is a directory"),
        (lambda p: (os.mkfifo(p / "pipe.keras"), p / "pipe.keras")[1], "not a regular file"),
        (lambda p: p / "missing.keras", "cannot open"),
        (lambda p: (p / "weights.bin").write_bytes(b"x") and p / "weights.bin", "not a .keras"),
    ],
    ids=["directory", "fifo", "missing", "suffix"],
)
def test_odd_sources_are_clear_errors(tmp_path: Path, make: object, match: str) -> None:
    target = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(KerasGuardError, match=match):
        open_source(target, Policy())


def test_nul_byte_is_refused() -> None:
    with pytest.raises(UntrustedSourceError):
        open_source("model\x00.keras", Policy())


# -- URLs ----------------------------------------------------------------------------------------

URL_POLICY = trusting("https://models.example.com/org/")


def test_allowed_url_is_refused_because_kerasguard_does_not_download() -> None:
    with pytest.raises(KerasGuardError, match="does not download") as err:
        open_source("https://models.example.com/org/m.keras", URL_POLICY)
    assert not isinstance(err.value, UntrustedSourceError)


@pytest.mark.parametrize(
    "url, match",
    [
        ("http://models.example.com/org/m.keras", "only https"),
        ("https://models.example.com/org/m.keras#frag", "fragment"),
        ("https://models.example.com/org/m.keras#", "fragment"),
        ("https://user:pw@models.example.com/org/m.keras", "user info"),
        ("https://models.example.com@evil.com/org/m.keras", "user info"),
        ("https://models.example.com/org/../other/m.keras", "dot segments"),
        ("https://models.example.com/org/%2e%2e/other/m.keras", "dot segments"),
        ("https://models.example.com/org\\..\\m.keras", "backslash"),
        ("https://models.example.com.evil.com/org/m.keras", "not under any trusted"),
        ("https://models.example.com/organisation/m.keras", "not under any trusted"),
        ("https://models.example.com:8443/org/m.keras", "not under any trusted"),
        ("hf://org/m", "only https"),
        ("file:///etc/passwd", "only https"),
        ("https://models.example.com/org/m.keras\n", "control"),
    ],
)
def test_untrusted_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(UntrustedSourceError, match=match):
        check_url(url, URL_POLICY)


def test_url_host_match_is_case_insensitive() -> None:
    assert check_url("https://MODELS.example.com/org/m.keras", URL_POLICY).startswith("https://models.")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_any_source_string_is_refused_cleanly_or_opened(text: str) -> None:
    try:
        src = open_source(text, URL_POLICY)
    except KerasGuardError:
        return
    src.close()


# -- the private copy ---------------------------------------------------------------------------


def test_private_copy_has_the_same_bytes_and_their_digest(layout: dict[str, Path]) -> None:
    model = layout["trusted"] / "good.keras"
    src = open_source(model, Policy())
    try:
        copy = make_private_copy(src, max_bytes=1 << 20)
    finally:
        src.close()
    try:
        assert copy.path.read_bytes() == model.read_bytes()
        assert copy.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
        assert copy.path.name == "good.keras"
        assert stat.S_IMODE(copy.directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(copy.path.stat().st_mode) == 0o400
        # Replacing the source afterwards changes nothing about what will be loaded.
        model.write_bytes(b"PK swapped after the check")
        assert copy.path.read_bytes() == b"PK good model bytes"
    finally:
        copy.remove()
    assert not copy.directory.exists()


def test_copy_reads_through_the_descriptor_not_the_path(layout: dict[str, Path]) -> None:
    """A file renamed and replaced between open and copy: the opened one is copied."""
    model = layout["trusted"] / "good.keras"
    src = open_source(model, Policy())
    model.rename(layout["trusted"] / "moved.keras")
    model.write_bytes(b"PK attacker replacement")
    try:
        copy = make_private_copy(src, max_bytes=1 << 20)
    finally:
        src.close()
    assert copy.path.read_bytes() == b"PK good model bytes"
    copy.remove()


def test_copy_over_the_size_limit_is_refused_and_cleaned(layout: dict[str, Path], tmp_path: Path) -> None:
    src = open_source(layout["trusted"] / "good.keras", Policy())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    try:
        with pytest.raises(KerasGuardError, match="max_file_bytes"):
            make_private_copy(src, max_bytes=4, tmpdir=str(scratch))
    finally:
        src.close()
    assert not list(scratch.iterdir())


def test_private_dirs_of_dead_processes_are_swept(tmp_path: Path) -> None:
    from kerasguard import tempdirs

    dead = tmp_path / "kerasguard-model-4194999-abc"  # pid above pid_max: never alive
    dead.mkdir()
    (dead / "copy.keras").write_bytes(b"PK")
    alive = tmp_path / f"kerasguard-model-{os.getpid()}-def"
    alive.mkdir()
    other_kind = tmp_path / "kerasguard-scratch-4194999-ghi"
    other_kind.mkdir()
    fresh = tempdirs.private_dir("model", base=str(tmp_path))
    assert not dead.exists()
    assert alive.exists() and other_kind.exists() and fresh.is_dir()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
