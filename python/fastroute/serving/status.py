"""The status page's data (``GET /status.json``), read from the router and the counters.

``GET /`` serves ``static/status.html``: one HTML file with inline script, no
build step, which polls this JSON every two seconds and draws it.
"""

from __future__ import annotations

from collections import deque
from importlib import resources
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..library.experiments import Canary, Split
from .metrics import PER_BATCH_STAGES, STAGES, Histogram, ServingMetrics, stage_histograms

if TYPE_CHECKING:
    from ..router import Decision, Router

__all__ = ["RecentDecisions", "status_page", "status_snapshot"]


def status_page() -> bytes:
    """The status page's HTML."""
    return resources.files(__package__).joinpath("static/status.html").read_bytes()


class RecentDecisions:
    """The last ``size`` routed requests, for the status page (appended on the event loop thread)."""

    def __init__(self, size: int = 50) -> None:
        self._decisions: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, decision: Decision, when: float, latency_s: float, outcome: str) -> None:
        self._decisions.append({
            "time": when, "id": decision.id, "model": decision.model, "version": decision.version,
            "reason": decision.reason, "latency_s": latency_s, "outcome": outcome,
        })

    def list(self) -> list[dict[str, Any]]:
        return list(self._decisions)


def status_snapshot(router: Router, metrics: ServingMetrics, recent: RecentDecisions, draining: bool) -> dict[str, Any]:
    """Models with traffic shares and load, stage latency histograms, batch sizes per model
    version, experiments, recent decisions."""
    decided: dict[tuple[str, str], int] = {}
    for (model, version, _), count in metrics.decisions.items():
        decided[(model, version)] = decided.get((model, version), 0) + count
    everything = sum(decided.values())
    live = router.stats()
    models = []
    for spec in router.models.list():
        state = live["models"].get(f"{spec.name}/{spec.version}", {"replicas": [], "leases": 0})
        models.append({
            "name": spec.name,
            "version": spec.version,
            "modality": spec.modality,
            "decisions": decided.get(spec.key, 0),
            "share": decided.get(spec.key, 0) / everything if everything else 0.0,
            "queued": sum(replica.queued for replica in state["replicas"]),
            "in_flight": state["leases"],
        })
    by_stage: dict[str, Histogram] = {}
    batch_sizes = []
    for (stage, model, version), histogram in stage_histograms(router, metrics).items():
        if stage == "batch_size":
            if histogram.count():  # a version that has run no batch yet has nothing to show
                batch_sizes.append({"model": model, "version": version, **_plot(histogram)})
            continue
        by_stage[stage] = by_stage[stage].merged(histogram) if stage in by_stage else histogram
    stages = {
        stage: {**_plot(histogram), "counted": "batches" if stage in PER_BATCH_STAGES else "requests"}
        for stage in STAGES
        if (histogram := by_stage.get(stage)) is not None
    }
    return {
        "server": {"version": __version__, "models": len(router.models), "in_flight": metrics.in_flight,
                   "draining": draining},
        "models": models,
        "stages": stages,
        "batch_sizes": batch_sizes,
        "experiments": _experiments(router) + _breakers(live),
        "recent": recent.list(),
    }


def _plot(histogram: Histogram) -> dict[str, Any]:
    """A histogram as the page draws it: ``buckets`` of ``[upper bound, count]`` (not
    cumulative, the last ``+Inf``), ``count`` of observations and their ``sum``."""
    return {"buckets": [[bound, count] for bound, count in histogram.buckets()], "count": histogram.count(),
            "sum": histogram.total}


def _breakers(live: dict[str, Any]) -> list[dict[str, Any]]:
    """Circuit breakers that have seen traffic (only with ``Router(resilience=...)``)."""
    return [
        {"model": key, "kind": "breaker", "state": state["breaker"]["state"],
         "detail": f"{state['breaker']['window_failures']}/{state['breaker']['window_calls']} failed in the window, "
                   f"opened {state['breaker']['opened']} times"}
        for key, state in live["models"].items()
        if state.get("breaker") is not None
    ]


def _experiments(router: Router) -> list[dict[str, Any]]:
    found = []
    for name in router.models.names():
        experiment = router.models.experiment(name)
        if isinstance(experiment, Canary):
            found.append({"model": name, "kind": "canary", "state": experiment.state,
                          "detail": f"{experiment.stable} -> {experiment.candidate}, candidate share {experiment.share:.2f}"})
        elif isinstance(experiment, Split):
            weights = ", ".join(f"{version}: {weight:.2f}" for version, weight in experiment.weights.items())
            found.append({"model": name, "kind": "split", "state": "running", "detail": weights})
        shadow = router.models.shadow(name)
        if shadow is not None:
            found.append({"model": name, "kind": "shadow", "state": "running", "detail": f"mirrors to version {shadow.version}"})
    return found
