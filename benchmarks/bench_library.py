"""Model library: what version resolution with a lease costs per request.

Baseline: a bare ``Registry.get`` lookup (what the skeleton did per request,
with no lease and no experiment). Measured: ``lease`` + ``release`` through
the ``stable`` alias, a sticky keyed split and a canary (which also records
the outcome). Run: ``python -m pytest benchmarks/bench_library.py --benchmark-only -p no:randomly``.
"""

from __future__ import annotations

import random

import pytest

from fastroute.library.experiments import Canary, CanaryThresholds, Split
from fastroute.library import ModelSpec, Registry


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.register(ModelSpec("m", "1", lambda x: x, "tabular"), aliases=["stable"])
    registry.register(ModelSpec("m", "2", lambda x: x, "tabular"))
    return registry


def lease_and_release(registry: Registry, key: str | None = None) -> None:
    registry.lease("m", key=key).release()


@pytest.mark.benchmark(group="version resolution per request")
def test_baseline_bare_lookup(benchmark, registry: Registry) -> None:
    benchmark.extra_info["baseline"] = True
    benchmark(registry.get, "m")


@pytest.mark.benchmark(group="version resolution per request")
def test_lease_through_alias(benchmark, registry: Registry) -> None:
    benchmark(lease_and_release, registry)


@pytest.mark.benchmark(group="version resolution per request")
def test_lease_through_sticky_split(benchmark, registry: Registry) -> None:
    registry.set_experiment("m", Split({"1": 0.5, "2": 0.5}))
    benchmark(lease_and_release, registry, "user-12345")


@pytest.mark.benchmark(group="version resolution per request")
def test_lease_through_canary(benchmark, registry: Registry) -> None:
    # min_samples so high that the canary keeps measuring for the whole run
    canary = Canary("1", "2", thresholds=CanaryThresholds(min_samples=10**9), rng=random.Random(0))
    registry.set_experiment("m", canary)
    benchmark(lease_and_release, registry)
