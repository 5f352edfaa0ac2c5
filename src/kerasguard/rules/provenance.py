"""Rules of the provenance family."""

from __future__ import annotations

from collections.abc import Iterator

from kerasguard.findings import Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.rules.base import Hit, Rule, RuleContext


def _emitted_by_enrich_findings(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    """KG601 findings are made after the other rules, by kerasguard.advisories.enrich.enrich_findings."""
    return iter(())


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG601",
        name="triggers-known-advisory",
        title="File content triggers a known advisory on the Keras that will load it",
        severity=Severity.HIGH,
        cwe="CWE-1395",
        rationale=(
            "Another rule found content (for example an HDF5 shape bomb or a TFSMLayer) that a published "
            "advisory describes, and the Keras version that will load the file (the policy's keras_version, "
            "else the installed one; never the version the file claims in metadata.json) is inside that "
            "advisory's affected ranges. Loading the file there reproduces the advisory. The severity is the "
            "advisory's; ranges come from kerasguard's offline advisory database (`kerasguard advisories "
            "show ID`), which corrects several public records."
        ),
        remediation=(
            "Do not load the file with this Keras. Upgrade to the smallest safe release named in the message "
            "(`kerasguard audit` lists it) and re-scan; the underlying rule finding still applies."
        ),
        check=_emitted_by_enrich_findings,
        example=(
            "A `.keras` whose `model.weights.h5` declares an 8 GiB dataset with no stored bytes (KG405), "
            "scanned for keras 3.13.1: KG601 names CVE-2026-12570 and CVE-2026-0897 and the upgrade to "
            "3.15.1."
        ),
        references=(
            "https://osv.dev/",
            "https://github.com/keras-team/keras/security/advisories",
        ),
    ),
)
