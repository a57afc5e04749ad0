"""Prometheus metrics of a serving router: counters kept on the hot path, read at scrape time.

Per request nothing calls prometheus_client: the HTTP handlers update a few
integers on the event loop thread and one C++ latency histogram (total); the
router records each decision's analyze and decide latencies into C++
histograms (``Router.route_stages``); the C++ dispatcher keeps each model
replica's queue wait, batch wait, execute and batch size histograms.
``/metrics`` reads them all, plus live state read from the router (queue
depth, leases in flight, canary state), into Prometheus families through
one collector. Names follow Prometheus conventions: base units (seconds),
``_total`` counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily

from .. import _core
from ..errors import RouterClosed

if TYPE_CHECKING:
    from ..router import Router
    from .decision_log import DecisionLog

__all__ = [
    "LATENCY_BUCKETS_S", "PER_BATCH_STAGES", "STAGES", "Histogram", "ServingMetrics", "decision_log_families", "router_families",
    "stage_families", "stage_histograms",
]

#: Latency histogram bounds, seconds: 1 us to 10 s (the C++ histograms' bounds).
LATENCY_BUCKETS_S = tuple(ns / 1e9 for ns in _core.LATENCY_BOUNDS_NS)
#: The measured stages of a request, in order: ``analyze`` (the input's features) and
#: ``decide`` (the policy's choice) per routed request; ``queue_wait`` (per request: its
#: model queue until the batcher took it), ``batch_wait`` (per batch: until it filled or
#: its delay ran out) and ``execute`` (per batch: the model call and delivering results)
#: per model version; ``total`` (HTTP body read to response) per inference request.
STAGES = ("analyze", "decide", "queue_wait", "batch_wait", "execute", "total")
_BATCH_SIZE_BOUNDS = tuple(float(bound) for bound in _core.BATCH_SIZE_BOUNDS)
#: The stages counted once per batch (the others once per request).
PER_BATCH_STAGES = frozenset({"batch_wait", "execute"})
_NS = 1e-9


@dataclass(frozen=True)
class Histogram:
    """One histogram as read at scrape time: ``counts`` per bucket (not cumulative, the
    last above every bound) over ``bounds``, and the ``total`` of the values."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @classmethod
    def of_latencies(cls, snapshot: tuple[Any, int]) -> Histogram:
        """From a C++ latency histogram's ``(counts, sum of nanoseconds)``: seconds."""
        counts, total_ns = snapshot
        return cls(LATENCY_BUCKETS_S, tuple(counts), total_ns * _NS)

    def count(self) -> int:
        return sum(self.counts)

    def merged(self, other: Histogram) -> Histogram:
        """This histogram plus ``other`` (same bounds)."""
        return Histogram(self.bounds, tuple(a + b for a, b in zip(self.counts, other.counts)), self.total + other.total)

    def buckets(self) -> list[tuple[str, int]]:
        """``(le, observations in this bucket)`` pairs, ending with +Inf."""
        return list(zip((*map(repr, self.bounds), "+Inf"), self.counts))

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` pairs, ending with +Inf."""
        pairs, running = [], 0
        for bound, count in self.buckets():
            running += count
            pairs.append((bound, running))
        return pairs


class ServingMetrics:
    """What the server counts; updated on the event loop thread (the C++ histograms from
    any thread), read by :meth:`render`."""

    def __init__(self) -> None:
        #: Latency of each inference request, body read to response (``total``).
        self.total = _core.LatencyHistogram()
        #: Analyze and decide latencies; given to the router (``Router.route_stages``) to record.
        self.route_stages = _core.RouteStages()
        self.decisions: Counter[tuple[str, str, str]] = Counter()  # (model, version, version rule)
        self.errors: Counter[str] = Counter()  # error class
        self.responses: Counter[tuple[str, int]] = Counter()  # (endpoint, status)
        self.reloads: Counter[str] = Counter()  # ok | failed
        self.feedback: Counter[str] = Counter()  # feedback status (joined, unknown, ...)
        self.reward_sum = 0.0  # over joined feedback with a reward
        self.reward_count = 0
        self.quality_sum = 0.0  # over joined feedback with a quality (with 0/1 qualities: routing accuracy)
        self.quality_count = 0
        self.in_flight = 0
        self._registry = CollectorRegistry(auto_describe=False)
        self._live: list[Callable[[], Iterator[Any]]] = []
        self._registry.register(_Collector(self))

    def add_live(self, families: Callable[[], Iterator[Any]]) -> None:
        """Add a source of metric families read at scrape time (queue depth, canary state...)."""
        self._live.append(families)

    def count_decision(self, model: str, version: str, reason: str) -> None:
        self.decisions[(model, version, version_rule(reason))] += 1

    def count_feedback(self, status: str, reward: Any, quality: Any) -> None:
        self.feedback[status] += 1
        if status != "joined":
            return
        if _is_number(reward):
            self.reward_sum += reward
            self.reward_count += 1
        if _is_number(quality):
            self.quality_sum += quality
            self.quality_count += 1

    def render(self) -> bytes:
        """The Prometheus text exposition of everything counted and every live source."""
        return generate_latest(self._registry)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def version_rule(reason: str) -> str:
    """What chose the version, from a decision's reason: alias, split, canary, latest, pinned...

    The last clause of a reason names it (``...; alias 'stable' -> version '2'``).
    """
    clause = reason.rsplit("; ", 1)[-1]
    word = clause.split(" ", 1)[0]
    return {"version": "pinned"}.get(word, word) if word.isidentifier() else "other"


def router_families(router: Router) -> Iterator[Any]:
    """Live state read from ``router.stats()`` (the C++ dispatcher and breakers) and the
    registry at scrape time: per model version queues, service times, errors, breakers, canaries."""
    from ..executors.resilience import BREAKER_STATES

    stats = router.stats()
    labels = ["model", "version"]
    queued = GaugeMetricFamily("fastroute_model_queued_requests", "Requests waiting in a version's queues.", labels=labels)
    running = GaugeMetricFamily("fastroute_model_running_requests", "Requests inside a version's model call.", labels=labels)
    leased = GaugeMetricFamily("fastroute_model_leased_requests",
                               "Requests holding a lease on a version (decided, not finished).", labels=labels)
    service = GaugeMetricFamily("fastroute_model_request_seconds",
                                "Moving average of a version's time per request (mean over replicas).", labels=labels)
    error_rate = GaugeMetricFamily("fastroute_model_error_rate", "Moving average of a version's share of failed calls.",
                                   labels=labels)
    completed = CounterMetricFamily("fastroute_model_completed_requests", "Requests a version's model call finished.",
                                    labels=labels)
    failed = CounterMetricFamily("fastroute_model_failed_requests", "Requests whose model call failed.", labels=labels)
    breaker = GaugeMetricFamily("fastroute_breaker_state", "1 for a version's circuit breaker state.",
                                labels=[*labels, "state"])
    for spec in router.models.list():
        state = stats["models"].get(f"{spec.name}/{spec.version}")
        if state is None:  # retired between the two reads
            continue
        version = [spec.name, spec.version]
        replicas = state["replicas"]
        queued.add_metric(version, sum(r.queued for r in replicas))
        running.add_metric(version, sum(r.in_flight for r in replicas))
        leased.add_metric(version, state["leases"])
        if replicas:
            service.add_metric(version, sum(r.request_ms for r in replicas) / len(replicas) / 1e3)
            error_rate.add_metric(version, sum(r.error_rate for r in replicas) / len(replicas))
        completed.add_metric(version, sum(r.completed for r in replicas))
        failed.add_metric(version, sum(r.failed for r in replicas))
        if state["breaker"] is not None:
            for name in BREAKER_STATES:
                breaker.add_metric([*version, name], float(state["breaker"]["state"] == name))
    yield from (queued, running, leased, service, error_rate, completed, failed, breaker)
    if stats["resilience"] is not None:
        events = {(k,): v for k, v in stats["resilience"].items() if k != "retry_budget"}
        yield _counter("fastroute_resilience_events", "Requests, retries, fallbacks served and failures to the caller.",
                       ["event"], events)
    yield from _canary_families(router)


def stage_histograms(router: Router, metrics: ServingMetrics) -> dict[tuple[str, str, str], Histogram]:
    """Every stage histogram: ``(stage, model, version) -> Histogram``, model and version
    empty for the router-wide stages (analyze, decide, total); per model version the
    dispatcher's latencies and its ``batch_size`` (requests, not seconds)."""
    found = {(stage, "", ""): Histogram.of_latencies(snapshot) for stage, snapshot in metrics.route_stages.snapshot().items()}
    found[("total", "", "")] = Histogram.of_latencies(metrics.total.snapshot())
    try:
        executor = router.executor
    except RouterClosed:  # nothing runs any more: no model stages
        return found
    for spec in router.models.list():
        for stage, (counts, total) in executor.stages(spec).items():
            found[(stage, spec.name, spec.version)] = (
                Histogram(_BATCH_SIZE_BOUNDS, tuple(counts), float(total)) if stage == "batch_size"
                else Histogram.of_latencies((counts, total))
            )
    return found


def stage_families(router: Router, metrics: ServingMetrics) -> Iterator[Any]:
    """The stage latency histograms (one family, labelled by stage, model and version) and
    each model version's batch sizes."""
    stages = HistogramMetricFamily(
        "fastroute_stage_duration_seconds",
        "Latency of each stage of a served request: analyze, decide, total per request (no model label); "
        "queue_wait per request, batch_wait and execute per batch, per model version.",
        labels=["stage", "model", "version"],
    )
    sizes = HistogramMetricFamily("fastroute_model_batch_size", "Requests per batch a model version ran.",
                                  labels=["model", "version"])
    for (stage, model, version), histogram in stage_histograms(router, metrics).items():
        if stage == "batch_size":
            sizes.add_metric([model, version], histogram.cumulative(), histogram.total)
        else:
            stages.add_metric([stage, model, version], histogram.cumulative(), histogram.total)
    yield stages
    yield sizes


def decision_log_families(log: DecisionLog) -> Iterator[Any]:
    """The decision log's written and dropped record counts."""
    yield _counter("fastroute_decision_log_records", "Decision log records by fate (written, dropped when the queue was full).",
                   ["fate"], {("written",): log.written, ("dropped",): log.dropped})


def _canary_families(router: Router) -> Iterator[Any]:
    from ..library.experiments import Canary

    share = GaugeMetricFamily(
        "fastroute_canary_candidate_share", "Share of a model's traffic its canary candidate receives.",
        labels=["model", "stable", "candidate"],
    )
    state = GaugeMetricFamily(
        "fastroute_canary_state", "1 for a canary's current state (running, promoted, rolled_back).",
        labels=["model", "state"],
    )
    for name in router.models.names():
        canary = router.models.experiment(name)
        if isinstance(canary, Canary):
            share.add_metric([name, canary.stable, canary.candidate], canary.share)
            state.add_metric([name, canary.state], 1)
    yield share
    yield state


class _Collector:
    """Turns :class:`ServingMetrics`' counters into Prometheus families at scrape time."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self._metrics
        yield _counter("fastroute_decisions", "Routing decisions by model, version and what chose the version.",
                       ["model", "version", "rule"], m.decisions)
        yield _counter("fastroute_errors", "Failed requests by error class.", ["error"], {(k,): v for k, v in m.errors.items()})
        yield _counter("fastroute_http_responses", "HTTP responses by endpoint and status code.", ["endpoint", "code"],
                       {(endpoint, str(code)): n for (endpoint, code), n in m.responses.items()})
        yield _counter("fastroute_config_reloads", "Config reloads by outcome.", ["outcome"], {(k,): v for k, v in m.reloads.items()})
        yield _counter("fastroute_feedback", "Feedback received by status.", ["status"], {(k,): v for k, v in m.feedback.items()})
        rewards = SummaryMetricFamily("fastroute_feedback_reward", "Rewards of joined feedback.",
                                      count_value=m.reward_count, sum_value=m.reward_sum)
        yield rewards
        yield SummaryMetricFamily("fastroute_feedback_quality",
                                  "Qualities of joined feedback (0/1 correctness: sum / count is the routing accuracy).",
                                  count_value=m.quality_count, sum_value=m.quality_sum)
        in_flight = GaugeMetricFamily("fastroute_http_in_flight_requests", "HTTP requests being served now.")
        in_flight.add_metric([], m.in_flight)
        yield in_flight
        for families in m._live:
            yield from families()


def _counter(name: str, documentation: str, labels: list[str], counts: Any) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in counts.items():
        family.add_metric(list(values), count)
    return family
