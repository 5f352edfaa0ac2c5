"""Gateway figures for the console, read from the gateway's own Prometheus registry, as bar charts.

The charts are plain SVG rectangles computed here and drawn by a template: no JavaScript, no inline
styles (the Content-Security-Policy forbids both). The registry holds every tenant's series, so each
chart keeps only the tenants the reviewer's token may see; the rejects, which carry no tenant, are
shown only to tokens of every namespace (docs/console.md, "Who sees what").
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

BAR_WIDTH = 360  # px of the longest bar
MAX_BARS = 40


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    width: int
    shown: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    bars: list[Bar]
    withheld: str | None = None  # why the chart is empty for this reviewer (not "nothing yet")

    @property
    def height(self) -> int:
        return 24 * max(len(self.bars), 1) + 8


def _chart(title: str, unit: str, values: list[tuple[str, float]], fmt: str = "{:g}") -> Chart:
    values = values[:MAX_BARS]
    top = max((v for _, v in values), default=0.0)
    bars = [
        Bar(label, value, round(BAR_WIDTH * value / top) if top > 0 else 0, fmt.format(value))
        for label, value in values
    ]
    return Chart(title, unit, bars)


GATEWAY_WIDE = "gateway-wide counts (they name no tenant): shown to admin tokens of every namespace ('*')"


def gateway_charts(registry: CollectorRegistry, tenants: frozenset[str] | None) -> list[Chart]:
    """Requests by model and outcome, rejects by reason, the latency distribution, and the monitoring
    alarms (out-of-distribution inputs and drift, per model version).

    ``tenants``: the namespaces whose series are counted, so no other tenant's model names, versions or
    traffic reach the page; None for a ``*`` token, which sees every series and the gateway-wide rejects.
    """
    requests: dict[str, float] = {}
    alarms: dict[str, float] = {}
    rejects: dict[str, float] = {}
    buckets: dict[float, float] = {}
    total_seconds = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if tenants is not None and labels.get("tenant") not in tenants:
                continue  # another tenant's series, or a gateway-wide one (no tenant label)
            if sample.name == "kerasguard_serve_rejects_total":
                rejects[labels.get("reason", "?")] = rejects.get(labels.get("reason", "?"), 0) + sample.value
            elif sample.name == "kerasguard_serve_request_seconds_count":
                model = f"{labels.get('tenant')}/{labels.get('model')}:{labels.get('version')}"
                key = f"{model} {labels.get('status')}"
                requests[key] = requests.get(key, 0) + sample.value
            elif sample.name in ("kerasguard_serve_ood_alarms_total", "kerasguard_serve_drift_alarms_total"):
                model = f"{labels.get('tenant')}/{labels.get('model')}:{labels.get('version')}"
                detector = labels.get("detector") or "mahalanobis"
                ood = "ood" if detector == "mahalanobis" else f"ood {detector}"
                kind = f"drift {labels.get('kind')}" if "drift" in sample.name else ood
                alarms[f"{model} {kind}"] = alarms.get(f"{model} {kind}", 0) + sample.value
            elif sample.name == "kerasguard_serve_request_seconds_sum":
                total_seconds += sample.value
            elif sample.name == "kerasguard_serve_request_seconds_bucket":
                le = float(labels.get("le", "inf"))
                buckets[le] = buckets.get(le, 0) + sample.value
    latency: list[tuple[str, float]] = []
    previous = 0.0
    lower = 0.0
    for le in sorted(buckets):
        count = buckets[le] - previous  # buckets are cumulative
        previous = buckets[le]
        label = f"> {lower * 1000:g} ms" if le == float("inf") else f"<= {le * 1000:g} ms"
        latency.append((label, count))
        lower = le
    count = sum(requests.values())
    mean = f", mean {1000 * total_seconds / count:.1f} ms" if count else ""
    by_count = sorted(rejects.items(), key=lambda kv: -kv[1])
    rejected = _chart("Rejected requests by reason", "requests", by_count)
    return [
        _chart("Predict requests by model and outcome", "requests", sorted(requests.items())),
        rejected if tenants is None else Chart(rejected.title, rejected.unit, [], GATEWAY_WIDE),
        _chart(f"Predict latency ({int(count)} requests{mean})", "requests", latency),
        _chart("Monitoring alarms (OOD inputs, drift windows)", "alarms", sorted(alarms.items())),
    ]
