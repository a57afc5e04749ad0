"""BanditSplit: Thompson sampling over versions with a floor, rollback, promotion and stickiness."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fastroute import BanditSplit, InvalidInput, ModelError, PolicyError, Router


def run(experiment: BanditSplit, error_rates: dict[str, float], requests: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    served = []
    for _ in range(requests):
        version = experiment.choose().version
        experiment.observe(version, rng.random() >= error_rates[version], 0.01)
        served.append(version)
    return served


def test_traffic_shifts_to_the_better_version_and_it_is_promoted() -> None:
    events = []
    experiment = BanditSplit(
        ["1", "2"], min_samples=50, promote_at=0.95, max_error_increase=0.2, seed=1, on_event=events.append
    )
    served = run(experiment, {"1": 0.10, "2": 0.03}, 3000)
    assert served[:300].count("2") < served[-300:].count("2")
    assert experiment.state == "promoted" and experiment.winner == "2"
    assert [e.action for e in experiment.history] == ["start", "promote"] and events == experiment.history[1:]
    assert {experiment.choose().version for _ in range(50)} == {"2"}


def test_every_version_keeps_its_floor_share() -> None:
    experiment = BanditSplit(["1", "2", "3"], floor=0.05, promote_at=None, max_error_increase=1.0, seed=2)
    served = run(experiment, {"1": 0.5, "2": 0.5, "3": 0.0}, 6000)
    late = served[-3000:]
    assert late.count("3") > 0.8 * 3000
    for version in ("1", "2"):
        assert late.count(version) >= 0.03 * 3000


def test_a_version_with_more_errors_is_rolled_back_at_once() -> None:
    experiment = BanditSplit(["stable", "new"], min_samples=50, max_error_increase=0.02, seed=3)
    run(experiment, {"stable": 0.0, "new": 0.5}, 400)
    assert experiment.state == "rolled_back" and experiment.winner == "stable"
    assert experiment.history[-1].action == "rollback" and experiment.history[-1].version == "new"
    assert {experiment.choose(key=k).version for k in range(100)} == {"stable"}


def test_keyed_requests_stay_on_their_version() -> None:
    experiment = BanditSplit(["1", "2"], promote_at=None, seed=4)
    first = [experiment.choose(key=f"user-{i}").version for i in range(200)]
    again = [experiment.choose(key=f"user-{i}").version for i in range(200)]
    assert first == again and set(first) == {"1", "2"}


def test_bad_rewards_and_settings_are_refused() -> None:
    experiment = BanditSplit(["1", "2"])
    before = experiment._bandit.export_stats(False).copy()
    with pytest.raises(InvalidInput, match="rewards in"):
        experiment.record("2", 1.5)
    with pytest.raises(InvalidInput, match="finite"):
        experiment.record("2", float("nan"))
    assert np.array_equal(experiment._bandit.export_stats(False), before)
    with pytest.raises(PolicyError, match="two distinct versions"):
        BanditSplit(["1", "1"])
    with pytest.raises(PolicyError, match="floor must be"):
        BanditSplit(["1", "2"], floor=0.6)
    with pytest.raises(PolicyError, match="stable version"):
        BanditSplit(["1", "2"], stable="3")


def test_in_a_router_the_executor_outcomes_drive_it_and_conclude_retires_the_loser() -> None:
    router = Router()
    router.register("m", lambda x: x, modality="tabular", version="1")
    flaky = random.Random(5)

    def sometimes_fails(x):
        if flaky.random() < 0.5:
            raise RuntimeError("bad version")
        return x

    router.register("m", sometimes_fails, modality="tabular", version="2")
    router.models.set_experiment("m", BanditSplit(["1", "2"], min_samples=30, seed=6))
    for _ in range(300):
        try:
            router.infer(np.ones(3))
        except ModelError:
            pass
    assert router.models.experiment("m").state == "rolled_back"
    assert router.models.conclude_canary("m") == "1"
    assert router.models.versions("m") == ["1"]
    router.close()
