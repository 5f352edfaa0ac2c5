"""Rendering of robustness results: text, JSON, Markdown tables and a PNG plot (matplotlib, Agg).

Model and file names come from the user's files: control and format characters are shown escaped
(:func:`kerasguard.escaping.printable`) before they are printed, and Markdown table cells have their
pipes escaped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from kerasguard.escaping import printable
from kerasguard.robustness.evaluate import RobustnessReport


def _md(value: object) -> str:
    return printable(value, limit=200).replace("|", "\\|")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool = False) -> str:
    """A plain-text (aligned) or Markdown table."""
    cells = [[_md(c) if markdown else printable(c, limit=200) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _attack_rows(report: RobustnessReport) -> list[list[object]]:
    return [
        [
            r.attack + (" (targeted)" if r.targeted else ""),
            r.norm,
            f"{r.eps:g}",
            _pct(r.robust_accuracy),
            _pct(r.success_rate),
            f"{r.examples_per_second:.0f}",
        ]
        for r in report.rows
    ]


HEADERS = ("attack", "norm", "eps", "robust acc", "attack success", "examples/s")


def render_text(report: RobustnessReport) -> str:
    head = [
        f"model {printable(report.model, limit=200)} on {printable(report.data, limit=200)}"
        f" ({report.examples} examples,"
        f" backend {report.backend}, range [{report.clip_min:g}, {report.clip_max:g}])",
        f"clean accuracy {_pct(report.clean_accuracy)}",
    ]
    body = table(HEADERS, _attack_rows(report)) if report.rows else "no attack was run"
    notes = [f"note: {printable(n, limit=500)}" for n in report.notes]
    return "\n".join([*head, "", body, *notes])


def render_markdown(report: RobustnessReport) -> str:
    head = [
        f"# Robustness of `{_md(report.model)}`",
        "",
        f"Data: `{_md(report.data)}` ({report.examples} examples, input range [{report.clip_min:g},"
        f" {report.clip_max:g}]), backend {report.backend}, seed {report.seed}.",
        "",
        f"Clean accuracy: **{_pct(report.clean_accuracy)}**",
        "",
    ]
    body = table(HEADERS, _attack_rows(report), markdown=True) if report.rows else "No attack was run."
    notes = ["", *(f"> {_md(n)}" for n in report.notes)] if report.notes else []
    return "\n".join([*head, body, *notes])


def render_json(report: RobustnessReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def plot_accuracy(report: RobustnessReport, path: str | os.PathLike[str]) -> None:
    """Robust accuracy against epsilon, one line per attack, clean accuracy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        series: dict[str, list[tuple[float, float]]] = {}
        for r in report.rows:
            name = f"{r.attack} {r.norm}" + (" targeted" if r.targeted else "")
            series.setdefault(name, []).append((r.eps, r.robust_accuracy))
        for name, points in series.items():
            points.sort()
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=name)
        ax.axhline(100 * report.clean_accuracy, linestyle="--", color="grey", label="clean")
        ax.set_xlabel("epsilon")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(printable(f"robust accuracy: {report.model}", limit=80))
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
    finally:
        plt.close(fig)


def render(report: Any, fmt: str) -> str:
    """The report in ``text``, ``json`` or ``markdown``."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    if fmt == "markdown":
        return str(report.to_markdown()) if hasattr(report, "to_markdown") else render_markdown(report)
    return str(report.to_text()) if hasattr(report, "to_text") else render_text(report)
