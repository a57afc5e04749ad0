"""BanditSplit rolls back on significant evidence only (the same exact test as Canary's):
its test levels sum to at most ``significance``; seeded simulations of many bandits: no
rollback on noise where a fixed margin would roll back, a rollback on every real regression."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import FakeClock

from fastroute import BanditSplit, PolicyError
from fastroute.library.experiments import errs_more, more_often


def test_the_levels_of_every_test_sum_to_at_most_significance() -> None:
    bandit = BanditSplit(["1", "2", "3"], min_samples=10, significance=0.04)  # 0.02 per version but stable
    assert bandit.look_level(1) == bandit.look_level(9) == pytest.approx(0.02 / 2 / 10)  # each early outcome
    assert [bandit.look_level(n) for n in (10, 20, 40, 80)] == pytest.approx([0.005, 0.0025, 0.00125, 0.000625])
    assert bandit.look_level(15) is None and bandit.look_level(30) is None and bandit.look_level(100) is None
    spent = sum(level for n in range(1, 1_000_000) if (level := bandit.look_level(n)) is not None)
    assert 0.02 * 0.9 < spent <= 0.02  # the early tests spend 19/20 of their half


def test_significance_out_of_its_bounds_is_refused() -> None:
    for bad in (0, 1, -0.1, float("nan")):
        with pytest.raises(PolicyError, match=r"significance must be in \(0, 1\), got"):
            BanditSplit(["1", "2"], significance=bad)


def test_the_rollback_reason_carries_the_canarys_test() -> None:
    bandit = BanditSplit(["1", "2"], min_samples=20, max_error_increase=0.02, seed=3, clock=FakeClock())
    for _ in range(20):
        bandit.observe("1", True, 0.01)
    for n in range(1, 20):
        bandit.observe("2", False, 0.01)
        if bandit.state == "rolled_back":
            break
    level = bandit.look_level(n)
    assert bandit.history[-1].reason == errs_more(n, n, 0, 20, 0.02, level)
    assert more_often(n, n, 0, 20) < level <= more_often(n - 1, n - 1, 0, 20)  # the first outcome with evidence enough


# -- seeded simulations ---------------------------------------------------------------------

BANDITS = 100
REQUESTS = 1000


@dataclass(frozen=True)
class Simulated:
    bandit: BanditSplit
    margin_fired: bool  # whether the fixed margin alone (the rule before the test) would have rolled back


def simulate(error_rates: dict[str, float], seed: int, requests: int = REQUESTS, **settings) -> Simulated:
    """One bandit over ``requests`` requests (or until it ends); the first version is stable."""
    bandit = BanditSplit(list(error_rates), seed=seed, rng=random.Random(seed), clock=FakeClock(), **settings)
    rng = np.random.default_rng(seed)
    stable = next(iter(error_rates))
    served, errors, margin_fired = dict.fromkeys(error_rates, 0), dict.fromkeys(error_rates, 0), False
    for _ in range(requests):
        version = bandit.choose().version
        ok = bool(rng.random() >= error_rates[version])
        served[version] += 1
        errors[version] += not ok
        if version != stable and served[stable] >= bandit.min_samples:
            conclusive = errors[version] / max(served[version], bandit.min_samples)  # can only end up higher
            margin_fired |= conclusive > errors[stable] / served[stable] + bandit.max_error_increase
        bandit.observe(version, ok, 0.01)
        if bandit.state != "running":
            break
    return Simulated(bandit, margin_fired)


def test_equal_versions_are_rarely_rolled_back() -> None:
    runs = [
        simulate({"1": 0.05, "2": 0.05}, seed, min_samples=40, max_error_increase=0.02, promote_at=None)
        for seed in range(BANDITS)
    ]
    rolled_back = sum(run.bandit.state == "rolled_back" for run in runs)
    assert sum(run.margin_fired for run in runs) >= BANDITS // 4  # the noise is there: a fixed margin rolls back
    assert rolled_back <= 0.05 * BANDITS  # the default significance's promise, over the whole run


def test_a_real_regression_is_still_rolled_back_every_time() -> None:
    for seed in range(BANDITS // 2):
        bandit = simulate({"1": 0.05, "2": 0.25}, seed, requests=2000, max_error_increase=0.02).bandit
        assert bandit.state == "rolled_back" and bandit.winner == "1", (seed, bandit.history)
        assert bandit.history[-1].version == "2" and bandit.history[-1].reason.startswith("error rate ")


def test_a_failing_version_is_rolled_back_before_its_min_samples() -> None:
    for seed in range(BANDITS // 2):
        bandit = simulate({"1": 0.01, "2": 0.5}, seed, max_error_increase=0.02).bandit
        assert [event.action for event in bandit.history] == ["start", "rollback"], (seed, bandit.history)
        requests = int(bandit.history[-1].reason.split(" after ")[1].split()[0])
        assert requests < bandit.min_samples, bandit.history[-1].reason


def test_a_better_version_is_not_rolled_back_and_mostly_wins() -> None:
    runs = [simulate({"1": 0.05, "2": 0.03}, seed, requests=1500, max_error_increase=0.02) for seed in range(25)]
    assert not any(run.bandit.state == "rolled_back" for run in runs)
    assert sum(run.bandit.winner == "2" for run in runs) >= 15  # 18 of these 25 promote it within 1,500 requests
