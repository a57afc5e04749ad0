"""Canary rollback on significant evidence only: the exact tests against scipy, then seeded
simulations of many canaries: no rollback on noise where a fixed margin would roll back,
a rollback on every real regression (errors or latency)."""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import FakeClock
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import fisher_exact, hypergeom, median_test

from fastroute import ConfigError, PolicyError, Router
from fastroute.library.experiments import (
    Canary,
    CanaryThresholds,
    hypergeometric_tail,
    more_often,
    slower_at_quantile,
)

# -- the tests themselves ------------------------------------------------------------------


@given(st.integers(1, 3000), st.data())
def test_hypergeometric_tail_matches_scipy(population: int, data: st.DataObject) -> None:
    marked = data.draw(st.integers(0, population))
    draws = data.draw(st.integers(0, population))
    at_least = data.draw(st.integers(-1, draws + 1))
    expected = hypergeom.sf(at_least - 1, population, marked, draws)
    assert hypergeometric_tail(at_least, population, marked, draws) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@given(st.integers(1, 500), st.integers(1, 5000), st.data())
def test_more_often_is_fishers_one_sided_exact_test(trials: int, other_trials: int, data: st.DataObject) -> None:
    hits, other_hits = data.draw(st.integers(0, trials)), data.draw(st.integers(0, other_trials))
    table = [[hits, trials - hits], [other_hits, other_trials - other_hits]]
    expected = fisher_exact(table, alternative="greater").pvalue
    assert more_often(hits, trials, other_hits, other_trials) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_quantile_test_at_the_median_is_moods_median_test() -> None:
    rng = np.random.default_rng(7)
    latencies, baseline = rng.lognormal(0.3, 0.5, 60), rng.lognormal(0.0, 0.5, 400)
    p = slower_at_quantile(latencies, baseline, 0.5)
    _, _, _, table = median_test(latencies, baseline, ties="below")  # counts above the pooled median
    assert p == pytest.approx(fisher_exact(table, alternative="greater").pvalue, rel=1e-9)
    assert p < 0.01 < slower_at_quantile(baseline[:60], baseline[60:], 0.5)


def test_settings_that_cannot_be_tested_are_refused_with_the_fix() -> None:
    with pytest.raises(PolicyError, match=r"significance must be in \(0, 1\), got 0"):
        CanaryThresholds(significance=0)
    with pytest.raises(PolicyError, match=r"latency_quantile must be in \(0, 1\), got 1"):
        CanaryThresholds(latency_quantile=1)
    with pytest.raises(PolicyError, match=r"fewer than 5 requests per version above latency_quantile 0\.99, too few to "
                                          r"test latency: raise min_samples to >= 500 or lower latency_quantile"):
        CanaryThresholds(min_samples=100, latency_quantile=0.99)
    limits = CanaryThresholds(steps=(0.1, 0.5), min_samples=50, significance=0.04)
    assert limits.step_level() == pytest.approx(0.005) and limits.early_level() == pytest.approx(0.0002)


# -- seeded simulations ---------------------------------------------------------------------

#: Small windows (40 requests per version and step), where fixed margins roll back on noise.
SMALL = CanaryThresholds(steps=(0.1, 0.3, 0.6), min_samples=40, max_error_increase=0.02, significance=0.05)
#: The default window, 100: enough to tell 25% errors from 5% at every step's level (0.0042).
DEFAULT = CanaryThresholds(steps=(0.1, 0.3, 0.6), max_error_increase=0.02)
REQUESTS = 4000  # more than a canary that steps through needs (about 700 with SMALL, 1,700 with DEFAULT)


@dataclass
class Version:
    error_rate: float = 0.05
    latency_scale: float = 1.0  # times a lognormal latency of median 10 ms

    def outcome(self, rng: np.random.Generator) -> tuple[bool, float]:
        return bool(rng.random() >= self.error_rate), float(0.010 * self.latency_scale * rng.lognormal(0.0, 0.5))


@dataclass
class Step:
    """One step's outcomes as the simulation saw them, per version."""

    errors: dict[str, int] = field(default_factory=lambda: {"1": 0, "2": 0})
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"1": [], "2": []})

    def over_a_fixed_margin(self, limits: CanaryThresholds) -> bool:
        """Whether the candidate measured worse than stable by the margins alone: what rolled
        a canary back before the significance tests."""
        n = {v: len(self.latencies[v]) for v in ("1", "2")}
        if min(n.values()) < limits.min_samples:
            return False
        errors = self.errors["2"] / n["2"] > self.errors["1"] / n["1"] + limits.max_error_increase
        q = limits.latency_quantile
        slower = np.quantile(self.latencies["2"], q) > np.quantile(self.latencies["1"], q) * limits.max_latency_ratio
        return bool(errors or slower)


def simulate(stable: Version, candidate: Version, seed: int, limits: CanaryThresholds = SMALL) -> tuple[Canary, bool]:
    """One canary driven to its end (or REQUESTS requests); whether a fixed margin would
    have rolled it back at one of its step ends."""
    canary = Canary("1", "2", thresholds=limits, rng=random.Random(seed), clock=FakeClock())
    rng = np.random.default_rng(seed)
    versions, step, margin_fired = {"1": stable, "2": candidate}, Step(), False
    for _ in range(REQUESTS):
        version = canary.choose().version
        ok, latency = versions[version].outcome(rng)
        step.errors[version] += not ok
        step.latencies[version].append(latency)
        events = len(canary.history)
        canary.observe(version, ok, latency)
        if len(canary.history) != events:  # the step ended: judge it by the margins alone too
            margin_fired |= step.over_a_fixed_margin(limits)
            step = Step()
        if canary.state != "running":
            break
    return canary, margin_fired


CANARIES = 100


def test_an_equal_candidate_is_not_rolled_back_on_noise() -> None:
    runs = [simulate(Version(), Version(), seed) for seed in range(CANARIES)]
    rolled_back = sum(canary.state == "rolled_back" for canary, _ in runs)
    margin_would = sum(fired for _, fired in runs)
    assert all(canary.state in ("promoted", "rolled_back") for canary, _ in runs)
    assert margin_would >= CANARIES // 4  # the noise is there: the fixed margins alone would roll these back
    assert rolled_back <= SMALL.significance * CANARIES  # at most 5 of 100 (the union bound's promise)


def test_a_slightly_better_candidate_is_promoted() -> None:
    runs = [simulate(Version(), Version(error_rate=0.04, latency_scale=0.95), seed) for seed in range(CANARIES)]
    assert sum(canary.state == "promoted" for canary, _ in runs) >= CANARIES * 0.95


@pytest.mark.parametrize(
    "candidate,reason",
    [(Version(error_rate=0.25), "error rate "), (Version(latency_scale=2.0), "latency q0.5 ")],
    ids=["errors", "latency"],
)
def test_a_real_regression_is_rolled_back_every_time(candidate: Version, reason: str) -> None:
    for seed in range(CANARIES // 2):
        canary, _ = simulate(Version(), candidate, seed, DEFAULT)
        assert canary.state == "rolled_back", (seed, canary.history)
        assert canary.history[-1].reason.startswith(reason)
        assert [e.action for e in canary.history].count("step") <= 1  # caught at the first or second step


def test_small_windows_still_catch_most_real_regressions() -> None:
    """What 40 requests can tell: 25% errors against 5% is caught by 49 canaries of these 50;
    the one missed saw 6 errors in 40, not evidence enough at each step's level (0.0042)."""
    caught = sum(simulate(Version(), Version(error_rate=0.25), seed)[0].state == "rolled_back" for seed in range(50))
    assert caught >= 45


def test_many_errors_roll_back_before_the_step_ends() -> None:
    for seed in range(CANARIES // 2):
        canary, _ = simulate(Version(error_rate=0.01), Version(error_rate=0.5), seed, DEFAULT)
        assert canary.state == "rolled_back" and [e.action for e in canary.history] == ["start", "rollback"]
        requests = int(canary.history[-1].reason.split(" after ")[1].split()[0])
        assert requests < DEFAULT.min_samples, canary.history[-1].reason


# -- from a config file ---------------------------------------------------------------------


def test_significance_is_set_from_a_config_file(tmp_path: Path) -> None:
    text = textwrap.dedent("""
        models:
          m:
            modality: tabular
            versions: {"1": {model: "config_models:double"}, "2": {model: "config_models:double"}}
            canary: {stable: "1", candidate: "2", min_samples: 40, significance: %s}
        """)
    path = tmp_path / "router.yaml"
    path.write_text(text % "0.01")
    with Router.from_config(path) as router:
        assert router.models.experiment("m").thresholds.significance == 0.01
    path.write_text(text % "1.5")
    with pytest.raises(ConfigError, match=r"models\.m\.canary: canary significance must be in \(0, 1\), got 1\.5"):
        Router.from_config(path)
