"""Prometheus metrics of one gateway process, in a registry of their own (not the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Squared Mahalanobis distances: clean data sits near the feature width, outliers far above it.
# Max-softmax (minus the top probability, in [-1, 0)) and energy (minus the log-sum-exp of the logits,
# usually negative) fall in the negative buckets.
# fmt: off
OOD_BUCKETS = (
    -100, -50, -20, -10, -5, -2, -1, -0.9, -0.75, -0.5, -0.25, 0,
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000,
)
# fmt: on
# STRIP entropies (nats): 0 for a blend always in one class, ln(classes) at most (2.3 for 10 classes).
STRIP_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class Metrics:
    """Every metric the gateway exports; labels are tenant, model and version (bounded by the store)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "kerasguard_serve_request_seconds",
            "Latency of predict requests that reached a model, by model version and status.",
            ["tenant", "model", "version", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejects = Counter(
            "kerasguard_serve_rejects_total", "Requests refused, by reason.", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "kerasguard_serve_queue_depth",
            "Requests waiting for a worker.",
            ["tenant", "model", "version"],
            registry=r,
        )
        self.batch_size = Histogram(
            "kerasguard_serve_batch_size",
            "Instances per predict call sent to a worker.",
            ["tenant", "model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.worker_rss = Gauge(
            "kerasguard_serve_worker_rss_bytes",
            "Resident memory of each sandboxed worker.",
            ["tenant", "model", "version"],
            registry=r,
        )
        self.worker_up = Gauge(
            "kerasguard_serve_worker_up",
            "1 when the worker is ready.",
            ["tenant", "model", "version"],
            registry=r,
        )
        self.restarts = Counter(
            "kerasguard_serve_worker_restarts_total",
            "Worker restarts, by cause (crash, memory, cpu, wall, files, protocol, model-error, load).",
            ["tenant", "model", "version", "cause"],
            registry=r,
        )
        self.sandbox_kills = Counter(
            "kerasguard_serve_sandbox_kills_total",
            "Workers killed by the sandbox for breaking a limit, by limit.",
            ["limit"],
            registry=r,
        )
        self.ood_score = Histogram(
            "kerasguard_serve_ood_score",
            "OOD score per instance and detector kind (mahalanobis: squared distance; max-softmax:"
            " minus the top probability; energy: minus the log-sum-exp of the logits; squeeze: L1 change of"
            " the softmax on squeezed inputs).",
            ["tenant", "model", "version", "detector"],
            buckets=OOD_BUCKETS,
            registry=r,
        )
        self.ood_alarms = Counter(
            "kerasguard_serve_ood_alarms_total",
            "Instances whose OOD score is above the attached detector's threshold, by detector kind.",
            ["tenant", "model", "version", "detector"],
            registry=r,
        )
        self.drift_alarms = Counter(
            "kerasguard_serve_drift_alarms_total",
            "Drift windows that differ from the detector's reference, by kind (confidence, class_mix).",
            ["tenant", "model", "version", "kind"],
            registry=r,
        )
        self.strip_entropy = Histogram(
            "kerasguard_serve_strip_entropy",
            "STRIP entropy per instance (low: the prediction survives superimposition, a trigger sign).",
            ["tenant", "model", "version"],
            buckets=STRIP_BUCKETS,
            registry=r,
        )
        self.strip_flags = Counter(
            "kerasguard_serve_strip_flags_total",
            "Instances whose STRIP entropy is below the attached STRIP detector's threshold.",
            ["tenant", "model", "version"],
            registry=r,
        )
        self.detector_errors = Counter(
            "kerasguard_serve_detector_errors_total",
            "Loads refused because the attached detector failed its checks (the version is not served).",
            ["tenant", "model", "version"],
            registry=r,
        )
        self.models_served = Gauge("kerasguard_serve_models", "Model versions currently served.", registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
