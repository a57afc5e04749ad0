"""Decisions under load, priority and failure: fastroute's LoadAware policy against the
model choices a user would otherwise make, on one executor, in one run.

Three models of different quality and speed (quality 0.9 / 0.8 / 0.7, 2 ms / 0.5 ms /
0.1 ms per call, sleeps that release the GIL) take open-loop Poisson arrivals at 0.5x,
1x, 2x and 4x the best model's capacity (500 requests/s: one replica, 2 ms a call).
20% of requests are high priority with a 5 ms deadline, 80% normal with 50 ms.
Strategies, all through ``Router.submit`` on the same executor:

- ``always-best`` (the baseline): every request to the best model;
- ``random``: a model drawn uniformly;
- ``least-busy``: the model with the fewest queued + in-flight requests (LiteLLM's least-busy);
- ``power-of-two``: two models drawn at random, the less loaded one (Ray Serve's rule, across models);
- ``fastroute``: :class:`fastroute.LoadAware` around always-best, default weights,
  ``on_late="refuse"``.

Figures: goodput (requests completed within their deadline per second of the run),
mean quality of those requests, p99 latency per class (completed requests), the share
refused or failed, and per class the share of served requests not served by the best model
(at 0.5x it should be 0 for fastroute: the same decisions as always-best).

The fault run: the best model fails half its calls for 2 s (0.3 s in --quick) at 0.5x
load. fastroute with fallbacks (best -> mid -> fast), retries (10% budget) and a
circuit breaker against always-best without failure handling: requests failed to the
caller, time for the breaker to open after the fault starts and to close after it ends,
and the extra load from retries.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from fastroute import (
    BreakerSettings,
    CPUExecutor,
    DeadlineExceeded,
    LoadAware,
    ModelError,
    Overloaded,
    Policy,
    Resilience,
    RetryPolicy,
    Router,
    Rules,
)
from fastroute.decision.base import Choice

MODELS = {"best": (0.9, 0.002), "mid": (0.8, 0.0005), "fast": (0.7, 0.0001)}  # quality, seconds per call
QUALITY = {name: quality for name, (quality, _) in MODELS.items()}
BEST_CAPACITY = 1 / MODELS["best"][1]  # requests/s
LOADS = (0.5, 1.0, 2.0, 4.0)
HIGH_SHARE, HIGH_DEADLINE_S, NORMAL_DEADLINE_S = 0.2, 0.005, 0.05
STRATEGIES = ("always-best", "random", "least-busy", "power-of-two", "fastroute")
X = np.ones(4, dtype=np.float32)
SEED = 12


class ModelFault(RuntimeError):
    """The injected failure of the fault run (declared retryable)."""


class SleepModel:
    """Sleeps its service time (releasing the GIL); during a fault window fails half its calls."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self.fault_until = 0.0
        self.fault_from = float("inf")
        self._rng = random.Random(SEED)

    def __call__(self, x: Any) -> str:
        time.sleep(self.seconds)
        now = time.perf_counter()
        if self.fault_from <= now < self.fault_until and self._rng.random() < 0.5:
            raise ModelFault(f"{self.name} failed")
        return self.name


class _LoadProbe(Policy):
    """A baseline policy that reads a model's queued + in-flight requests from the executor (what LiteLLM-style
    least-busy routing and power-of-two choices look at)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.names = list(MODELS)
        self.rng = random.Random(SEED)

    def load(self, name: str) -> int:
        stats = self.router.executor.stats(self.router.models.get(name))
        return stats.queued + stats.in_flight


class RandomModel(_LoadProbe):
    def select(self, analysis: Any, models: Any) -> Choice:
        return Choice(self.rng.choice(self.names), "random")


class LeastBusy(_LoadProbe):
    def select(self, analysis: Any, models: Any) -> Choice:
        loads = {name: self.load(name) for name in self.names}
        low = min(loads.values())
        return Choice(self.rng.choice([n for n, v in loads.items() if v == low]), "least busy")


class PowerOfTwo(_LoadProbe):
    def select(self, analysis: Any, models: Any) -> Choice:
        first, second = self.rng.sample(self.names, 2)
        return Choice(first if self.load(first) <= self.load(second) else second, "power of two")


@dataclass
class Outcome:
    high: bool
    latency_s: float = 0.0
    model: str | None = None
    error: BaseException | None = None


@dataclass
class RunResult:
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        def deadline(o: Outcome) -> float:
            return HIGH_DEADLINE_S if o.high else NORMAL_DEADLINE_S

        good = [o for o in self.outcomes if o.model is not None and o.latency_s <= deadline(o)]
        served = [o for o in self.outcomes if o.model is not None]
        figures: dict[str, Any] = {
            "offered/s": round(len(self.outcomes) / self.duration_s),
            "goodput/s": round(len(good) / self.duration_s, 1),
            "quality": round(float(np.mean([QUALITY[o.model] for o in good])), 3) if good else float("nan"),
            "p99 high ms": _p99_ms([o for o in served if o.high]),
            "p99 normal ms": _p99_ms([o for o in served if not o.high]),
            "refused or failed": f"{100 * (len(self.outcomes) - len(served)) / max(1, len(self.outcomes)):.1f}%",
            "not best high": _share_not_best([o for o in served if o.high]),
            "not best normal": _share_not_best([o for o in served if not o.high]),
        }
        return figures


def _share_not_best(served: list[Outcome]) -> str:
    """Of the requests served, the share served by another model than the best."""
    return f"{100 * sum(o.model != 'best' for o in served) / max(1, len(served)):.1f}%"


def _p99_ms(outcomes: list[Outcome]) -> float:
    if not outcomes:
        return float("nan")
    return round(float(np.percentile([o.latency_s for o in outcomes], 99)) * 1e3, 2)


def make_router(strategy: str, resilience: Resilience | None = None) -> tuple[Router, dict[str, SleepModel]]:
    router = Router(executor=CPUExecutor(threads=4, max_batch=8, max_delay_us=0), resilience=resilience)
    models = {name: SleepModel(name, seconds) for name, (_, seconds) in MODELS.items()}
    for name, model in models.items():
        router.register(name, model, modality="tabular")
    always_best = Rules([], default="best")
    policies = {
        "always-best": lambda: always_best,
        "random": lambda: RandomModel(router),
        "least-busy": lambda: LeastBusy(router),
        "power-of-two": lambda: PowerOfTwo(router),
        "fastroute": lambda: LoadAware(always_best, QUALITY, on_late="refuse", seed=SEED),
    }
    policy = policies[strategy]()
    for name in models:  # a service-time sample for every model before traffic
        router.policy = Rules([], default=name)
        for _ in range(5):
            router.submit(X).result(5)
    router.policy = policy
    return router, models


def drive(router: Router, rate: float, duration_s: float, seed: int = SEED) -> RunResult:
    """Open-loop Poisson arrivals at ``rate`` per second for ``duration_s``: each request is
    submitted at its arrival time whether or not earlier ones finished."""
    rng = random.Random(seed)
    result = RunResult(duration_s)
    pending: list[Any] = []
    lock = threading.Lock()
    start = time.perf_counter()
    arrival = 0.0
    while True:
        arrival += rng.expovariate(rate)
        if arrival >= duration_s:
            break
        delay = start + arrival - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        outcome = Outcome(high=rng.random() < HIGH_SHARE)
        sent = time.perf_counter()
        try:
            future = router.submit(
                X, priority="high" if outcome.high else "normal",
                deadline=HIGH_DEADLINE_S if outcome.high else NORMAL_DEADLINE_S,
            )
        except (DeadlineExceeded, Overloaded) as error:
            outcome.error = error
            result.outcomes.append(outcome)
            continue

        def done(future: Any, outcome: Outcome = outcome, sent: float = sent) -> None:
            outcome.latency_s = time.perf_counter() - sent
            if future.exception() is None:
                outcome.model = future.result()
            else:
                outcome.error = future.exception()

        future.add_done_callback(done)
        with lock:
            pending.append(future)
        result.outcomes.append(outcome)
    for future in pending:
        try:
            future.result(10)
        except (ModelError, DeadlineExceeded, Overloaded):
            pass
    return result


_GOODPUT: dict[tuple[float, str], float] = {}


@pytest.mark.parametrize("load", LOADS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_load_aware_under_load(benchmark, record, quick, load, strategy):
    duration = 0.15 if quick else 2.0
    group = f"load-aware {load:g}x best capacity"
    benchmark.group = group
    if strategy == "always-best":
        benchmark.extra_info["baseline"] = True
    router, _ = make_router(strategy)
    with router:
        result = benchmark.pedantic(drive, args=(router, load * BEST_CAPACITY, duration), rounds=1, iterations=1)
    figures = result.figures()
    _GOODPUT[(load, strategy)] = figures["goodput/s"]
    for baseline in ("always-best", "least-busy"):
        if strategy != baseline and (load, baseline) in _GOODPUT and _GOODPUT[(load, baseline)] > 0:
            figures[f"goodput vs {baseline}"] = f"{figures['goodput/s'] / _GOODPUT[(load, baseline)]:.2f}x"
    record(group, strategy, **figures)
    assert figures["offered/s"] > 0


class BreakerWatch:
    """Polls the best model's breaker state every millisecond and notes each change."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.changes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BreakerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = "closed"
        while not self._stop.wait(0.001):
            breaker = self.router.stats()["models"]["best/1"]["breaker"]
            state = breaker["state"] if breaker else "closed"
            if state != last:
                self.changes.append((time.perf_counter(), state))
                last = state

    def first(self, state: str, after: float) -> float | None:
        return next((t - after for t, s in self.changes if s == state and t >= after), None)


@pytest.mark.parametrize("strategy", ["always-best", "fastroute"])
def test_fault_run(benchmark, record, quick, strategy):
    """The best model fails half its calls for a while: what reaches the caller."""
    fault_s, before_s, after_s = (0.3, 0.1, 0.8) if quick else (2.0, 0.5, 1.5)
    group = "load-aware fault run (best fails 50% of calls)"
    benchmark.group = group
    resilience = None
    if strategy == "fastroute":
        resilience = Resilience(
            fallbacks={"best": ["mid", "fast"]},
            retry=RetryPolicy(retry_on=(ModelFault,), budget=0.1),
            # A fault that fails half the calls must trip it: open at 30% failures over 0.5 s.
            breaker=BreakerSettings(failure_rate=0.3, min_calls=20, window_s=0.5, cooldown_s=0.5, probes=3),
            rng=random.Random(SEED),
        )
    else:
        benchmark.extra_info["baseline"] = True
    router, models = make_router(strategy, resilience)
    best = models["best"]
    with router, BreakerWatch(router) as watch:
        best.fault_from = time.perf_counter() + before_s
        best.fault_until = best.fault_from + fault_s

        def run() -> RunResult:
            return drive(router, 0.5 * BEST_CAPACITY, before_s + fault_s + after_s)

        result = benchmark.pedantic(run, rounds=1, iterations=1)
        stats = router.stats()["resilience"]
    failed = sum(isinstance(o.error, ModelError) for o in result.outcomes)
    opened = watch.first("open", best.fault_from)
    closed = watch.first("closed", best.fault_until)
    figures = result.figures()
    record(
        group,
        strategy,
        **{
            "requests": len(result.outcomes),
            "failed to caller": failed,
            "goodput/s": figures["goodput/s"],
            "breaker opened after ms": "-" if opened is None else round(opened * 1e3, 1),
            "breaker closed after recovery ms": "-" if closed is None else round(closed * 1e3, 1),
            "retry extra load": "-" if stats is None else f"{100 * stats['retries'] / max(1, stats['requests']):.1f}%",
            "fallbacks served": "-" if stats is None else stats["fallbacks"],
        },
    )
    assert result.outcomes


@pytest.fixture(scope="module")
def idle_router():
    router, _ = make_router("always-best")
    yield router
    router.close()


def test_decision_cost_wrapped_policy(benchmark, idle_router):
    """The cost of one decision without load: analyze + the wrapped policy + version choice."""
    benchmark.group = "load-aware decision cost per request"
    benchmark.extra_info["baseline"] = True
    idle_router.policy = Rules([], default="best")
    benchmark(idle_router._choose, X, None, None, (idle_router.executor, "normal", 0.05))


def test_decision_cost_load_aware(benchmark, idle_router):
    """The same decision through LoadAware: three candidates' live state read and scored in C++."""
    benchmark.group = "load-aware decision cost per request"
    idle_router.policy = LoadAware(Rules([], default="best"), QUALITY, seed=SEED)
    benchmark(idle_router._choose, X, None, None, (idle_router.executor, "normal", 0.05))
