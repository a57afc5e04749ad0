"""LoadAware: the wrapped policy's choice when idle; spills, priorities and deadlines under load.

The load is real: a model blocked on an Event holds its worker while requests
queue behind it, and the C++ dispatcher's live state (queue lengths, EWMA
service time) is what the wrapper reads.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest

from fastroute import (
    FEATURE_NAMES,
    BreakerSettings,
    ByModality,
    ClassWeights,
    CPUExecutor,
    DeadlineExceeded,
    InvalidInput,
    LoadAware,
    PolicyError,
    Resilience,
    Router,
    Rule,
    Rules,
)
from fastroute.decision.load_aware import load_feature, parse_load_feature

WAIT_S = 30
X = np.ones(4, dtype=np.float32)
QUALITY = {"big": 0.9, "mid": 0.8, "small": 0.7}


class Gate:
    """A model that sleeps ``seconds`` per call, and blocks while ``closed``."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self.open = threading.Event()
        self.open.set()
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        self.open.wait(WAIT_S)
        time.sleep(self.seconds)
        return self.name


def three_models(policy, threads: int = 3, **router) -> tuple[Router, dict[str, Gate]]:
    models = {"big": Gate("big", 0.002), "mid": Gate("mid", 0.0005), "small": Gate("small", 0.0001)}
    r = Router(policy, executor=CPUExecutor(threads=threads, max_batch=1, max_delay_us=0), **router)
    for name, model in models.items():
        r.register(name, model, modality="tabular")
    for _ in range(3):  # a service-time sample for every model
        for name in models:
            r.policy, keep = Rules([], default=name), r.policy
            r.submit(X).result(WAIT_S)
            r.policy = keep
    return r, models


def wait_idle(router: Router) -> None:
    """Until no replica has a request queued or in flight (a worker finishes its
    batch a moment after it resolves the batch's futures)."""
    while any(r.queued or r.in_flight for m in router.stats()["models"].values() for r in m["replicas"]):
        time.sleep(0.0005)


@pytest.mark.parametrize("preferred", ["big", "mid", "small"])
def test_idle_system_gets_exactly_the_wrapped_choice(preferred):
    router, _ = three_models(LoadAware(Rules([], default=preferred), QUALITY, seed=1))
    with router:
        for priority in ("high", "normal"):
            for _ in range(20):  # one at a time, each once nothing is queued or in flight
                wait_idle(router)
                future = router.submit(X, priority=priority, deadline=1.0)
                assert future.result(WAIT_S) == preferred
                assert future.decision.model == preferred
        assert router.route(X).model == preferred  # no executor in the decision: the wrapped policy


def test_normal_requests_spill_under_load_and_high_ones_wait():
    router, models = three_models(LoadAware(Rules([], default="big"), QUALITY, seed=1), threads=3)
    with router:
        with held_back({"big": models["big"]}):  # big's worker hangs: its queue grows
            held = [router.submit(X, priority="normal") for _ in range(5)]
            high = router.submit(X, priority="high", deadline=0.5)  # only big's running request is ahead
            normal = [router.submit(X, priority="normal") for _ in range(10)]
        assert high.result(WAIT_S) == "big"
        served = [f.result(WAIT_S) for f in normal]
        assert set(served) <= {"big", "mid", "small"}
        assert served.count("big") < len(served)  # spilled
        spilled = [f.decision for f in normal if f.decision.model != "big"]
        assert all(d.reason.startswith("spilled: ") for d in spilled)
        assert all(f.result(WAIT_S) == "big" for f in held[:1])


@contextlib.contextmanager
def held_back(models: dict[str, Gate]):
    """Every model blocks until the block ends (its queue only grows meanwhile)."""
    for gate in models.values():
        gate.open.clear()
    try:
        yield
    finally:
        for gate in models.values():
            gate.open.set()


def queue_ahead(router: Router, ahead: dict[str, int]) -> list:
    """Queue ``ahead[name]`` high-priority requests straight on each model's executor queue."""
    return [
        router.executor.submit(router.models.get(name), X, priority="high")
        for name, count in ahead.items()
        for _ in range(count)
    ]


# small: >= 5 ms of sleeps ahead of a new request, the others far more.
HOPELESS_FOR_4_MS = {"big": 300, "mid": 300, "small": 50}


def test_a_deadline_no_candidate_can_meet_is_refused_before_queueing():
    router, models = three_models(LoadAware(Rules([], default="big"), QUALITY, on_late="refuse", seed=3))
    with router:
        with held_back(models):
            queued = queue_ahead(router, HOPELESS_FOR_4_MS)
            with pytest.raises(DeadlineExceeded, match="refused before queueing"):
                router.submit(X, priority="high", deadline=0.004)
            feasible = router.submit(X, priority="high", deadline=60.0)
        for future in queued:
            future.result(WAIT_S)
        assert feasible.result(WAIT_S) in QUALITY
        wait_idle(router)  # the refused request never reached a queue: warm-ups + queued + feasible ran
        ran = sum(r.completed for m in router.stats()["models"].values() for r in m["replicas"])
        assert ran == 9 + sum(HOPELESS_FOR_4_MS.values()) + 1


def test_on_late_fastest_sends_a_hopeless_request_to_the_quickest_candidate():
    router, models = three_models(LoadAware(Rules([], default="big"), QUALITY, on_late="fastest", seed=3))
    with router:
        with held_back(models):
            queued = queue_ahead(router, HOPELESS_FOR_4_MS)
            late = router.submit(X, priority="high", deadline=0.004)
        for future in queued:
            future.result(WAIT_S)
        assert late.decision.model == "small"
        assert late.decision.reason.startswith("fastest_late: 'small' instead of 'big'")
        with pytest.raises(DeadlineExceeded):
            late.result(WAIT_S)  # it waited behind 50 requests: too late, as predicted


def test_an_open_breaker_takes_the_model_out_of_the_candidates():
    failing = {"on": True}

    def flaky_big(x):
        if failing["on"]:
            raise RuntimeError("down")
        return "big"

    resilience = Resilience(breaker=BreakerSettings(min_calls=3, cooldown_s=60.0))
    router = Router(
        LoadAware(Rules([], default="big"), QUALITY, seed=1),
        executor=CPUExecutor(threads=2),
        resilience=resilience,
    )
    with router:
        router.register("big", flaky_big, modality="tabular")
        router.register("mid", lambda x: "mid", modality="tabular")
        for _ in range(3):
            with pytest.raises(Exception):
                router.submit(X).result(WAIT_S)
        assert router.stats()["models"]["big/1"]["breaker"]["state"] == "open"
        future = router.submit(X)
        assert future.result(WAIT_S) == "mid"
        assert future.decision.reason.startswith("unavailable: 'mid' instead of 'big'")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassWeights(-1.0), "time_per_s"),
        (lambda: ClassWeights(float("nan")), "time_per_s"),
        (lambda: ClassWeights(1.0, cost=float("inf")), "cost"),
        (lambda: ClassWeights(True), "time_per_s"),
        (lambda: LoadAware(ByModality(), {"a": float("nan")}), "quality"),
        (lambda: LoadAware(ByModality(), QUALITY, on_late="later"), "on_late"),
        (lambda: LoadAware(ByModality(), QUALITY, weights={"low": ClassWeights(1.0)}), "priority class"),
        (lambda: LoadAware(ByModality(), QUALITY, weights={"high": 1.0}), "ClassWeights"),
        (lambda: LoadAware("big", QUALITY), "wraps a fastroute Policy"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(PolicyError, match=message):
        make()


def test_a_deadline_in_the_past_is_refused_at_once():
    router, _ = three_models(LoadAware(Rules([], default="big"), QUALITY))
    with router:
        for deadline in (0.0, -1.0, float("nan")):
            with pytest.raises(InvalidInput, match="deadline"):
                router.submit(X, deadline=deadline)


def test_ties_are_broken_at_random_not_to_the_first_candidate():
    # Two spill targets that never ran (no service sample: both look idle, a tie) while
    # the preferred model's queue grows: tied requests go to both, not always the first.
    models = {"big": Gate("big", 0.002), "a": Gate("a", 0.0), "b": Gate("b", 0.0)}
    policy = LoadAware(Rules([], default="big"), {"big": 0.9, "a": 0.85, "b": 0.85}, seed=7)
    router = Router(Rules([], default="big"), executor=CPUExecutor(threads=3, max_batch=1))
    with router:
        for name, model in models.items():
            router.register(name, model, modality="tabular")
        router.submit(X).result(WAIT_S)  # big's service time is known
        router.policy = policy
        with held_back(models):
            futures = [router.submit(X) for _ in range(60)]
        chosen = [f.result(WAIT_S) for f in futures]
    spilled = [name for name in chosen if name != "big"]
    assert spilled and set(spilled) == {"a", "b"}
    assert min(spilled.count("a"), spilled.count("b")) >= len(spilled) // 5


def test_policies_can_split_on_live_load_features():
    queued_big = load_feature("queued", "big")
    rules = Rules(
        [Rule(None, f"{queued_big} >= 3", "small")],
        default="big",
        models=["big", "small"],
        feature_names=FEATURE_NAMES + (queued_big, load_feature("breaker_open", "big")),
    )
    models = {"big": Gate("big", 0.0), "small": Gate("small", 0.0)}
    with Router(rules, executor=CPUExecutor(threads=2, max_batch=1)) as router:
        for name, model in models.items():
            router.register(name, model, modality="tabular")
        assert router.route(X).model == "big"  # the column is NaN before big ever ran: no match
        router.submit(X).result(WAIT_S)
        with held_back({"big": models["big"]}):
            futures = [router.submit(X)]
            while not router.stats()["models"]["big/1"]["replicas"][0].in_flight:
                time.sleep(0.0005)  # big's worker holds the first request
            futures += [router.submit(X) for _ in range(7)]  # big's queue grows to 3, then small
            assert router.route(X).model == "small"
            assert router.route_batch([X, X]).names() == ["small", "small"]
        served = [f.result(WAIT_S) for f in futures]
    assert served[:4] == ["big"] * 4 and set(served[4:]) == {"small"}


def test_load_feature_names_are_checked():
    assert parse_load_feature(load_feature("expected_ms", "m1")) == ("expected_ms", "m1")
    assert parse_load_feature("load_nothing__m1") is None and parse_load_feature("queued") is None
    with pytest.raises(PolicyError, match="unknown load feature"):
        load_feature("queue_length", "m1")
