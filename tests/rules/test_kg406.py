"""KG406: single datasets declaring more than h5_large_dataset (1 GiB)."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.policy import GiB, MiB
from support.h5craft import all_findings, declare_bomb, h5file, module_context, rule_context
from support.scanhelp import hits

h5ctx = module_context()


def read(path: Path, ctx: ReadContext):  # type: ignore[no-untyped-def]
    ctx.start_file()
    return open_artifact(path, ctx)


def test_over_one_gib_is_medium(tmp_path: Path, h5ctx: ReadContext) -> None:
    art = read(h5file(tmp_path / "big.h5", lambda f: declare_bomb(f, "w", 3 * GiB)), h5ctx)
    (hit,) = hits(all_findings(art), "KG406")
    assert hit.severity == Severity.MEDIUM and "3.0 GiB" in hit.message


def test_under_the_threshold_is_quiet_and_the_threshold_is_policy(tmp_path: Path, h5ctx: ReadContext) -> None:
    art = read(h5file(tmp_path / "mid.h5", lambda f: declare_bomb(f, "w", 512 * MiB)), h5ctx)
    assert hits(all_findings(art), "KG406") == []
    assert len(hits(all_findings(art, rule_context(h5_large_dataset=256 * MiB)), "KG406")) == 1
