"""Experiments: sticky splits, canaries stepping up or rolling back, isolated shadows."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter

import numpy as np
import pytest
from helpers import FakeClock, route_everything_as
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare

from fastroute import InvalidInput, ModelError, PolicyError, RegistrationError, Router
from fastroute.library.experiments import Canary, CanaryThresholds, Shadow, Split

WEIGHTS = {"a": 0.2, "b": 0.3, "c": 0.5}


def test_split_is_sticky_per_key() -> None:
    split = Split(WEIGHTS, name="ab")
    first = {key: split.choose(f"user-{key}").version for key in range(2000)}
    again = {key: Split(WEIGHTS, name="ab").choose(f"user-{key}").version for key in range(2000)}
    assert first == again, "a key sees the same version, also from a fresh split"
    other = {key: Split(WEIGHTS, name="other").choose(f"user-{key}").version for key in range(2000)}
    assert first != other, "splits with different names hash independently"


@pytest.mark.parametrize("keyed", [True, False], ids=["sticky-keys", "random-draws"])
def test_split_proportions_match_weights(keyed: bool) -> None:
    split = Split(WEIGHTS, rng=random.Random(1234))
    n = 20_000
    counts = Counter(split.choose(f"session-{i}" if keyed else None).version for i in range(n))
    observed = [counts[v] for v in WEIGHTS]
    expected = [w * n for w in WEIGHTS.values()]
    assert chisquare(observed, expected).pvalue > 0.001, observed


@given(
    raw=st.lists(st.floats(0, 10), min_size=1, max_size=6).filter(lambda ws: sum(ws) > 0),
    keys=st.lists(st.one_of(st.text(), st.integers(), st.binary()), max_size=20),
)
def test_split_only_picks_versions_with_weight_and_is_deterministic(raw: list[float], keys: list) -> None:
    total = sum(raw)
    weights = {f"v{i}": w / total for i, w in enumerate(raw)}
    split = Split(weights)
    for key in keys:
        version = split.choose(key).version
        assert weights[version] > 0 and split.choose(key).version == version


def test_split_uses_the_injected_generator() -> None:
    first = Split(WEIGHTS, rng=np.random.default_rng(7))
    second = Split(WEIGHTS, rng=np.random.default_rng(7))
    assert [first.choose().version for _ in range(200)] == [second.choose().version for _ in range(200)]


def test_split_weights_change_live_and_invalid_ones_change_nothing() -> None:
    split = Split(WEIGHTS)
    split.set_weights({"a": 0.0, "b": 1.0, "c": 0.0})
    assert {split.choose(k).version for k in range(500)} == {"b"}
    for bad, problem in [
        ({"a": 0.5, "b": 0.6}, "must sum to 1, got 1.1"),
        ({"a": -0.5, "b": 1.5}, "weight of 'a' must be a finite number >= 0, got -0.5"),
        ({"a": float("nan"), "b": 1.0}, "weight of 'a'"),
        ({}, "non-empty mapping"),
        ({"": 1.0}, "version must be a non-empty str"),
    ]:
        with pytest.raises(PolicyError, match=problem):
            split.set_weights(bad)
    assert split.weights == {"a": 0.0, "b": 1.0, "c": 0.0}


def test_canary_thresholds_are_validated() -> None:
    with pytest.raises(PolicyError, match=r"increasing shares in \(0, 1\), got \(0.5, 0.25\)"):
        CanaryThresholds(steps=(0.5, 0.25))
    with pytest.raises(PolicyError, match="max_latency_ratio must be >= 1, got 0.5"):
        CanaryThresholds(max_latency_ratio=0.5)
    with pytest.raises(PolicyError, match="both '1'"):
        Canary("1", "1")


class Degrading:
    """A model version that advances the fake clock by its latency and gets worse on purpose:
    3x slower after ``slower_after`` calls, failing every 4th call after ``failing_after``."""

    def __init__(
        self, clock: FakeClock, latency: float, *, slower_after: int | None = None, failing_after: int | None = None
    ) -> None:
        self.clock, self.latency = clock, latency
        self.slower_after, self.failing_after = slower_after, failing_after
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        slow = self.slower_after is not None and self.calls > self.slower_after
        self.clock.advance(self.latency * (3 if slow else 1))
        if self.failing_after is not None and self.calls > self.failing_after and self.calls % 4 == 0:
            raise ValueError(f"bad output on call {self.calls}")
        return x


def canary_router(monkeypatch, stable: Degrading, candidate: Degrading, clock: FakeClock) -> tuple[Router, Canary]:
    route_everything_as(monkeypatch)
    router = Router()
    router.register("m", stable, modality="tabular", version="1", aliases=["stable"])
    router.register("m", candidate, modality="tabular", version="2")
    thresholds = CanaryThresholds(steps=(0.1, 0.3, 0.6), min_samples=40, max_error_increase=0.02)
    canary = Canary("1", "2", thresholds=thresholds, rng=random.Random(5), clock=clock)
    router.models.set_experiment("m", canary)
    return router, canary


def drive(router: Router, requests: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for i in range(requests):
        try:
            router.infer(i, key=f"user-{i}")
            outcomes["ok"] += 1
        except ModelError as error:
            assert isinstance(error.__cause__, ValueError)
            outcomes["error"] += 1
    return outcomes


def test_canary_steps_up_and_promotes_a_healthy_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    router, canary = canary_router(monkeypatch, Degrading(clock, 0.010), Degrading(clock, 0.009), clock)
    events: list[str] = []
    canary._on_event = lambda event: events.append(event.action)
    assert drive(router, 3000) == {"ok": 3000}
    assert canary.state == "promoted" and canary.share == 1.0
    assert [(e.action, e.share) for e in canary.history] == [
        ("start", 0.1), ("step", 0.3), ("step", 0.6), ("promote", 1.0)
    ]
    assert events == ["step", "step", "promote"]
    assert "no worse than stable: errors 0.0000 vs 0.0000" in canary.history[1].reason
    decision = router.route(0, key="anyone")
    assert decision.version == "2" and "canary 'canary' -> version '2' (promoted)" in decision.reason
    assert router.models.conclude_canary("m") == "2"
    assert router.models.versions("m") == ["2"] and router.models.aliases("m") == {"stable": "2"}
    assert router.models.experiment("m") is None


def test_routing_decisions_alone_record_no_canary_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    router, canary = canary_router(monkeypatch, Degrading(clock, 0.010), Degrading(clock, 0.009), clock)
    versions = Counter(router.route(i, key=f"user-{i}").version for i in range(2000))
    assert set(versions) == {"1", "2"}
    assert [e.action for e in canary.history] == ["start"] and canary.share == 0.1


def test_canary_rolls_back_at_once_when_errors_rise(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    candidate = Degrading(clock, 0.010, failing_after=60)
    router, canary = canary_router(monkeypatch, Degrading(clock, 0.010), candidate, clock)
    drive(router, 4000)
    actions = [e.action for e in canary.history]
    assert actions[0] == "start" and actions[-1] == "rollback" and "promote" not in actions
    assert canary.history[-1].reason.startswith("error rate ")
    assert canary.state == "rolled_back" and canary.share == 0.0
    calls_at_rollback = candidate.calls
    assert drive(router, 500) == {"ok": 500}, "after rollback the stable version serves everything"
    assert candidate.calls == calls_at_rollback
    assert router.models.conclude_canary("m", retire=False) == "1"
    assert router.models.versions("m") == ["1", "2"] and router.models.get("m").version == "1"
    with pytest.raises(RegistrationError, match=r"no finished canary to conclude \(no canary\)"):
        router.models.conclude_canary("m")


def test_canary_rolls_back_before_min_samples_once_errors_are_significant(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    candidate = Degrading(clock, 0.010, failing_after=0)  # every 4th call fails from the start
    router, canary = canary_router(monkeypatch, Degrading(clock, 0.010), candidate, clock)
    drive(router, 1000)
    assert [e.action for e in canary.history] == ["start", "rollback"]
    assert candidate.calls < canary.thresholds.min_samples, "rolled back without waiting for a full step"
    assert re.fullmatch(
        r"error rate 0\.\d+ after \d+ requests > stable 0\.0000 \+ 0\.02 \(p=\S+ < 0\.00021\)", canary.history[-1].reason
    )  # 0.05 / 3 steps / (2 x 40 early tests)


def test_canary_rolls_back_when_latency_rises(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    router, canary = canary_router(
        monkeypatch, Degrading(clock, 0.010), Degrading(clock, 0.010, slower_after=60), clock
    )
    assert drive(router, 4000) == {"ok": 4000}
    assert canary.state == "rolled_back"
    last = canary.history[-1]
    assert last.action == "rollback"
    assert re.fullmatch(r"latency q0.5 0\.0[23]s > stable 0.01s x 1.2 \(p=\S+ < 0\.0042\)", last.reason), last.reason


def test_decision_says_which_split_version_served(monkeypatch: pytest.MonkeyPatch) -> None:
    route_everything_as(monkeypatch)
    router = Router()
    router.register("m", lambda x: ("1", x), modality="tabular", version="1")
    router.register("m", lambda x: ("2", x), modality="tabular", version="2")
    router.models.set_experiment("m", Split({"1": 0.5, "2": 0.5}, name="ab"))
    for user in range(50):
        decision = router.route(0, key=user)
        assert router.infer(0, key=user) == (decision.version, 0)
        assert f"split 'ab' -> version '{decision.version}' (sticky key, weight 0.5)" in decision.reason


@pytest.fixture
def shadow_router(monkeypatch: pytest.MonkeyPatch):
    """Builds routers serving version 1 (x * 2) with ``shadow`` mirroring to version 2;
    at teardown every shadow's workers must have exited."""
    route_everything_as(monkeypatch)
    routers: list[Router] = []

    def build(shadow_model, shadow: Shadow) -> Router:
        router = Router()
        router.register("m", lambda x: x * 2, modality="tabular", version="1", aliases=["stable"])
        router.register("m", shadow_model, modality="tabular", version="2")
        router.models.set_shadow("m", shadow)
        routers.append(router)
        return router

    yield build
    for router in routers:
        assert router.models.shadow("m").close(timeout=30), "shadow workers still running"


def test_shadow_results_are_compared_and_never_returned(shadow_router) -> None:
    shadow = Shadow("2", compare=lambda served, mirrored: served == mirrored)
    router = shadow_router(lambda x: x * 2 if x % 3 else -1, shadow)
    assert [router.infer(i) for i in range(30)] == [i * 2 for i in range(30)]
    assert shadow.wait_idle(timeout=30)
    records = shadow.records()
    assert len(records) == 30 and {r.served_version for r in records} == {"1"}
    assert Counter(r.comparison for r in records) == {True: 20, False: 10}
    assert shadow.counts() == {"ok": 30}


def test_shadow_failures_never_reach_the_served_request(shadow_router) -> None:
    def broken(x):
        raise RuntimeError(f"shadow blew up on {x}")

    def bad_compare(served, mirrored):
        raise KeyError("compare bug")

    shadow = Shadow("2", compare=bad_compare)
    router = shadow_router(lambda x: broken(x) if x % 2 else x, shadow)
    assert [router.infer(i) for i in range(20)] == [i * 2 for i in range(20)]
    assert shadow.wait_idle(timeout=30)
    assert shadow.counts() == {"error": 10, "compare_error": 10}
    errors = [r.error for r in shadow.records() if r.status == "error"]
    assert any("RuntimeError: shadow blew up on 1" in error for error in errors), errors


def test_a_hanging_shadow_drops_mirrors_instead_of_blocking(shadow_router) -> None:
    entered, release = threading.Event(), threading.Event()

    def hanging(x):
        entered.set()
        release.wait()
        return x

    shadow = Shadow("2", queue_size=4)
    router = shadow_router(hanging, shadow)
    assert router.infer(0) == 0
    assert entered.wait(timeout=30)
    assert [router.infer(i) for i in range(1, 100)] == [i * 2 for i in range(1, 100)]
    dropped = shadow.counts()["dropped"]
    assert dropped == 100 - 1 - 4, "one mirror hangs in the worker, four wait in the queue"
    release.set()
    assert shadow.wait_idle(timeout=30)
    assert shadow.counts() == {"dropped": dropped, "ok": 5}
    shadow.close()


def test_shadow_share_samples_with_the_injected_generator(shadow_router) -> None:
    shadow = Shadow("2", share=0.25, rng=random.Random(3), queue_size=400)
    router = shadow_router(lambda x: x, shadow)
    for i in range(400):
        router.infer(i)
    assert shadow.wait_idle(timeout=30)
    draws = random.Random(3)
    expected = sum(draws.random() < 0.25 for _ in range(400))
    assert len(shadow.records()) == expected


def test_infer_batch_applies_the_split_per_key_and_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    route_everything_as(monkeypatch)
    router = Router()
    calls: Counter[str] = Counter()

    def version(tag: str):
        def model(batch):
            calls[tag] += 1
            return [(tag, x) for x in batch]

        return model

    router.register("m", version("1"), modality="tabular", version="1", batched=True)
    router.register("m", version("2"), modality="tabular", version="2", batched=True)
    split = Split({"1": 0.5, "2": 0.5}, name="ab")
    router.models.set_experiment("m", split)
    keys = [f"user-{i}" for i in range(64)]
    results = router.infer_batch(list(range(64)), keys=keys)
    assert [x for _, x in results] == list(range(64))
    assert [tag for tag, _ in results] == [split.choose(key).version for key in keys]
    assert calls == {"1": 1, "2": 1}, "one call per version group"
    assert all(router.models.in_flight(spec) == 0 for spec in router.models.list())


def test_infer_batch_frees_every_lease_when_a_group_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    route_everything_as(monkeypatch)
    router = Router()

    def broken(batch):
        raise ValueError("version 2 is broken")

    router.register("m", lambda batch: list(batch), modality="tabular", version="1", batched=True)
    router.register("m", broken, modality="tabular", version="2", batched=True)
    router.models.set_experiment("m", Split({"1": 0.5, "2": 0.5}, rng=random.Random(0)))
    with pytest.raises(ModelError, match="'m' failed: ValueError: version 2 is broken"):
        router.infer_batch(list(range(32)))
    assert [router.models.in_flight(spec) for spec in router.models.list()] == [0, 0]
    with pytest.raises(InvalidInput, match="got 2 keys for 3 inputs"):
        router.infer_batch([1, 2, 3], keys=["a", "b"])


def test_closing_a_shadow_drops_pending_mirrors_and_stops_idle_workers(shadow_router) -> None:
    entered, release = threading.Event(), threading.Event()

    def hanging(x):
        entered.set()
        release.wait()
        return x

    hung = Shadow("2", workers=2, queue_size=8)
    router = shadow_router(hanging, hung)
    router.infer(0)
    assert entered.wait(timeout=30)
    for i in range(1, 6):
        router.infer(i)
    assert not hung.close(timeout=0.05), "the hung worker is still inside the model"
    assert router.infer(7) == 14 and hung.counts()["dropped"] >= 4, "nothing is mirrored after close"
    release.set()
    assert hung.close(timeout=30), hung.counts()
    assert hung.wait_idle(timeout=30)
    assert sum(hung.counts().values()) == 6
