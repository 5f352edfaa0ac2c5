"""Text and Markdown renderings of the probe reports (JSON is ``report.to_dict()``).

Model names come from model files: control and format characters are shown escaped
(:func:`kerasguard.escaping.printable`) and Markdown-active characters escaped before they are printed.
"""

from __future__ import annotations

import re
from pathlib import Path

from kerasguard.escaping import printable
from kerasguard.probe.backdoor import BackdoorReport
from kerasguard.probe.privacy import PrivacyReport

_MD_ACTIVE = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md(text: str) -> str:
    return _MD_ACTIVE.sub(r"\\\1", printable(text, limit=200))


def _index(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:+.2f}"


def backdoor_text(report: BackdoorReport) -> str:
    name = printable(report.model, limit=200) or "model"
    lines = [f"backdoor probe: {name} ({report.n_classes} classes, {report.n_samples} clean samples)"]
    if report.classes:
        lines.append(
            f"verdict: {report.verdict.upper()}"
            + (f" (target class {', '.join(map(str, report.flagged))})" if report.flagged else "")
            + f"  [anomaly index > {report.anomaly_threshold:g}, mask <= {report.max_norm_ratio:g} x median, "
            + f"attack success >= {report.min_attack_success:.0%}; "
            + f"search {report.search_seconds:.1f} s on {report.backend}]"
        )
        lines.append("  class   mask L1   / median   anomaly   attack success   flagged")
        for c in report.classes:
            lines.append(
                f"  {c.target:5d}  {c.mask_l1:8.2f}  {c.norm_ratio:9.2f}  {_index(c.anomaly_index):>8}   "
                + f"{c.attack_success:13.1%}   "
                + ("YES" if c.flagged else "no")
                + ("" if c.reached_threshold else "  (threshold not reached)")
            )
        if report.trigger_images:
            first = next(iter(report.trigger_images.values()))
            folder = printable(Path(first[0]).parent, limit=400)
            lines.append(f"recovered triggers: {folder}/class_<k>_mask.png and class_<k>_trigger.png")
    else:
        lines.append("verdict: NOT SEARCHED (STRIP only)")
    if report.strip is not None:
        s = report.strip
        lines.append(
            f"STRIP detector: threshold {s.threshold:.4f} at {s.fpr:.1%} target FPR "
            f"({s.calibration_fpr:.1%} on {s.calibration_n} held-out clean inputs); digest {s.digest}"
        )
        for cls, rate in s.detection_rate.items():
            lines.append(f"  catches {rate:.1%} of inputs carrying the recovered trigger of class {cls}")
        if s.saved_to:
            lines.append(f"  saved to {printable(s.saved_to, limit=400)}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def backdoor_markdown(report: BackdoorReport) -> str:
    out = [f"# Backdoor probe: {md(report.model) or 'model'}", ""]
    if report.classes:
        flagged = ", ".join(map(str, report.flagged))
        out.append(f"**Verdict: {report.verdict}**" + (f" (target class {flagged})" if flagged else ""))
        out += [
            "",
            f"Neural Cleanse trigger search on {report.n_samples} clean samples, {report.backend}, "
            f"{report.search_seconds:.1f} s. A class is flagged when its anomaly index exceeds "
            f"{report.anomaly_threshold:g}, its mask norm is at most {report.max_norm_ratio:g} x the median "
            f"and its trigger sends at least {report.min_attack_success:.0%} of held-out inputs to it.",
            "",
            "| class | mask L1 | / median | anomaly index | attack success | flagged | trigger |",
            "|---:|---:|---:|---:|---:|:---:|---|",
        ]
        for c in report.classes:
            images = report.trigger_images.get(c.target, [])
            link = f"![class {c.target}]({md(images[1])})" if len(images) > 1 else ""
            out.append(
                f"| {c.target} | {c.mask_l1:.2f} | {c.norm_ratio:.2f} | {_index(c.anomaly_index)} | "
                f"{c.attack_success:.1%} | "
                f"{'**yes**' if c.flagged else 'no'} | {link} |"
            )
    else:
        out.append("**Verdict: not searched** (STRIP detector only)")
    if report.strip is not None:
        s = report.strip
        out += [
            "",
            "## STRIP detector",
            "",
            f"- threshold {s.threshold:.4f} at {s.fpr:.1%} target FPR; {s.calibration_fpr:.1%} measured on "
            f"{s.calibration_n} held-out clean inputs",
            f"- digest `{s.digest}`" + (f", saved to `{md(s.saved_to)}`" if s.saved_to else ""),
        ]
        for cls, rate in s.detection_rate.items():
            out.append(f"- catches {rate:.1%} of inputs carrying the recovered trigger of class {cls}")
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {md(n)}" for n in report.notes]
    return "\n".join(out) + "\n"


def privacy_text(report: PrivacyReport) -> str:
    lines = [
        f"privacy probe: {printable(report.model, limit=200) or 'model'} "
        f"({report.n_members} members vs {report.n_nonmembers} non-members)",
        f"verdict: {report.verdict.upper()}  "
        f"[AUC > {report.max_auc:g} or TPR@1%FPR > {report.max_tpr_at_1pct_fpr:g}]",
    ]
    lines += [f"  {r}" for r in report.reasons]
    lines.append("  attack        AUC   TPR@0.1%FPR   TPR@1%FPR")
    for a in report.attacks:
        lines.append(f"  {a.name:10} {a.auc:6.3f}   {a.tpr_at_fpr[0.001]:10.1%}   {a.tpr_at_fpr[0.01]:9.1%}")
    lines.append("  per-class AUC (" + ", ".join(a.name for a in report.attacks) + "):")
    classes = sorted({c for a in report.attacks for c in a.per_class_auc})
    for c in classes:
        values = "  ".join(
            f"{a.per_class_auc[c]:.3f}" if c in a.per_class_auc else "  -  " for a in report.attacks
        )
        lines.append(f"    class {c:3d}: {values}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def privacy_markdown(report: PrivacyReport) -> str:
    out = [
        f"# Privacy probe: {md(report.model) or 'model'}",
        "",
        f"**Verdict: {report.verdict}** (leak when an attack's AUC > {report.max_auc:g} "
        f"or its TPR at 1% FPR > {report.max_tpr_at_1pct_fpr:g})",
        "",
    ]
    out += [f"- {md(r)}" for r in report.reasons]
    out += [
        "",
        f"{report.n_members} training samples (members) against {report.n_nonmembers} holdout samples.",
        "",
        "| attack | AUC | TPR @ 0.1% FPR | TPR @ 1% FPR |",
        "|---|---:|---:|---:|",
    ]
    for a in report.attacks:
        out.append(f"| {a.name} | {a.auc:.3f} | {a.tpr_at_fpr[0.001]:.1%} | {a.tpr_at_fpr[0.01]:.1%} |")
    out += ["", "## AUC per class", "", "| class | " + " | ".join(a.name for a in report.attacks) + " |"]
    out.append("|---:|" + "---:|" * len(report.attacks))
    for c in sorted({c for a in report.attacks for c in a.per_class_auc}):
        cells = " | ".join(
            f"{a.per_class_auc[c]:.3f}" if c in a.per_class_auc else "-" for a in report.attacks
        )
        out.append(f"| {c} | {cells} |")
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {md(n)}" for n in report.notes]
    return "\n".join(out) + "\n"
