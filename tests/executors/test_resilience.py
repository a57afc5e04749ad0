"""Failure handling of Router.submit: fallbacks, retries within a budget, circuit breakers.

Every test checks the exactly-once guarantee: each accepted request's Future
ends with one result or one error (a Future cannot be set twice; the models
count their calls).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastroute import (
    BreakerSettings,
    ConfigError,
    CPUExecutor,
    DeadlineExceeded,
    ModelError,
    Overloaded,
    Resilience,
    RetryPolicy,
    Router,
)

WAIT_S = 30
X = np.ones(4, dtype=np.float32)


class Flaky:
    """A model that raises ``error`` on the calls ``fails(call_number)`` selects."""

    def __init__(self, value: float, fails=lambda n: False, error=RuntimeError) -> None:
        self.value, self.fails, self.error = value, fails, error
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, x):
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.fails(n):
            raise self.error(f"call {n} failed")
        return self.value


class ManualClock:
    """Monotonic nanoseconds the test moves by hand (drives the breakers)."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def make_router(resilience: Resilience, models: dict[str, Flaky], **executor) -> Router:
    router = Router(executor=CPUExecutor(threads=2, max_batch=8, **executor), resilience=resilience)
    for name, model in models.items():
        router.register(name, model, modality="tabular")
    return router


def test_a_fallback_serves_when_the_model_raises_and_the_decision_says_why():
    big, small = Flaky(1.0, fails=lambda n: True), Flaky(2.0)
    with make_router(Resilience(breaker=None), {"big": big, "small": small}) as router:
        router.set_fallbacks({"big": ["small"]})
        router.policy = _always("big")
        future = router.submit(X)
        assert future.result(WAIT_S) == 2.0
        decision = future.decision
        assert decision.model == "small"
        assert "fallback 'small' served" in decision.reason
        assert decision.attempts and decision.attempts[0].startswith("big: model 'big' failed: RuntimeError")
        assert router.stats()["resilience"]["fallbacks"] == 1
        assert (big.calls, small.calls) == (1, 1)


def test_without_a_fallback_the_model_error_reaches_the_caller_once():
    big = Flaky(1.0, fails=lambda n: True)
    with make_router(Resilience(breaker=None), {"big": big}) as router:
        futures = [router.submit(X) for _ in range(20)]
        for future in futures:
            with pytest.raises(ModelError, match="call"):
                future.result(WAIT_S)
        assert big.calls == 20
        assert router.stats()["resilience"]["failed"] == 20


def test_retries_only_declared_errors_on_the_same_model():
    timeouts = Flaky(1.0, fails=lambda n: n % 2 == 1, error=TimeoutError)  # every first try fails
    others = Flaky(1.0, fails=lambda n: n == 1, error=ValueError)
    retry = RetryPolicy(retry_on=(TimeoutError,), budget=1.0, burst=100, backoff_s=0.0001)
    with make_router(Resilience(retry=retry, breaker=None), {"t": timeouts, "v": others}) as router:
        router.policy = _always("t")
        for _ in range(5):  # one at a time: each request's first call fails, its retry succeeds
            future = router.submit(X)
            assert future.result(WAIT_S) == 1.0
            assert future.decision.attempts[-1] == "t: TimeoutError, retried"
        router.policy = _always("v")
        with pytest.raises(ModelError, match="ValueError"):
            router.submit(X).result(WAIT_S)  # not declared retryable
        assert others.calls == 1
        stats = router.stats()["resilience"]
        assert stats["retries"] == 5 and stats["requests"] == 6 and timeouts.calls == 10


def test_the_retry_budget_caps_extra_load():
    always = Flaky(1.0, fails=lambda n: True, error=TimeoutError)
    retry = RetryPolicy(retry_on=(TimeoutError,), max_retries=5, budget=0.1, burst=2, backoff_s=0.0)
    with make_router(Resilience(retry=retry, breaker=None), {"m": always}) as router:
        futures = [router.submit(X) for _ in range(200)]
        for future in futures:
            with pytest.raises(ModelError):
                future.result(WAIT_S)
        retries = router.stats()["resilience"]["retries"]
        assert retries <= 0.1 * 200 + 2
        assert always.calls == 200 + retries


def test_the_breaker_opens_sheds_to_the_fallback_probes_and_closes():
    clock = ManualClock()
    failing = threading.Event()
    failing.set()
    big = Flaky(1.0, fails=lambda n: failing.is_set())
    small = Flaky(2.0)
    breaker = BreakerSettings(failure_rate=0.5, min_calls=4, window_s=10.0, cooldown_s=1.0, probes=2)
    with make_router(Resilience(breaker=breaker, clock=clock), {"big": big, "small": small}) as router:
        router.set_fallbacks({"big": ["small"]})
        router.policy = _always("big")
        for _ in range(4):  # one at a time: each failure is recorded before the next admission
            assert router.submit(X).result(WAIT_S) == 2.0
        state = router.stats()["models"]["big/1"]["breaker"]
        assert state["state"] == "open" and state["opened"] == 1
        calls = big.calls
        shed = router.submit(X)
        assert shed.result(WAIT_S) == 2.0 and big.calls == calls  # shed without calling big
        assert shed.decision.attempts == ("big: circuit breaker open",)
        failing.clear()  # big recovers
        clock.now += 1_000_000_000  # cooldown over: probes go to big
        for _ in range(2):
            future = router.submit(X)
            assert future.result(WAIT_S) == 1.0 and future.decision.model == "big"
        state = router.stats()["models"]["big/1"]["breaker"]
        assert state["state"] == "closed" and state["closed"] == 1 and state["rejected"] >= 1


def test_a_full_queue_sends_the_request_to_the_fallback():
    started, release = threading.Event(), threading.Event()

    def blocked(x):
        started.set()
        release.wait(WAIT_S)
        return 1.0

    spare = Flaky(2.0)
    router = Router(executor=CPUExecutor(threads=2, max_batch=1, queue_capacity=1), resilience=Resilience(breaker=None))
    with router:
        router.register("slow", blocked, modality="tabular")
        router.register("spare", spare, modality="tabular")
        router.set_fallbacks({"slow": ["spare"]})
        router.policy = _always("slow")
        running = router.submit(X)
        assert started.wait(WAIT_S)
        queued = router.submit(X)  # the one free slot of slow's queue
        try:
            for _ in range(4):  # slow's queue is full: each goes to spare
                spilled = router.submit(X)
                assert spilled.result(WAIT_S) == 2.0
                assert spilled.decision.attempts == ("slow: overloaded",)
        finally:
            release.set()
        assert running.result(WAIT_S) == 1.0 and queued.result(WAIT_S) == 1.0
        assert spare.calls == 4


def test_a_passed_deadline_is_not_sent_to_a_fallback():
    release = threading.Event()
    spare = Flaky(2.0)
    router = Router(executor=CPUExecutor(threads=1, max_batch=1), resilience=Resilience(breaker=None))
    with router:
        router.register("slow", lambda x: release.wait(WAIT_S) and 1.0, modality="tabular")
        router.register("spare", spare, modality="tabular")
        router.set_fallbacks({"slow": ["spare"]})
        router.policy = _always("slow")
        first = router.submit(X)
        late = router.submit(X, deadline=0.01)
        threading.Timer(0.1, release.set).start()  # after the late request's deadline
        with pytest.raises(DeadlineExceeded):
            late.result(WAIT_S)
        assert first.result(WAIT_S) == 1.0
        assert spare.calls == 0


def test_many_threads_every_request_ends_exactly_once():
    half = Flaky(1.0, fails=lambda n: n % 2 == 0)
    backup = Flaky(2.0)
    retry = RetryPolicy(retry_on=(RuntimeError,), budget=0.1, backoff_s=0.0001)
    breaker = BreakerSettings(failure_rate=0.9, min_calls=1000)
    with make_router(Resilience(retry=retry, breaker=breaker), {"half": half, "backup": backup}) as router:
        router.set_fallbacks({"half": ["backup"]})
        router.policy = _always("half")
        futures: list = []
        lock = threading.Lock()

        def client():
            mine = [router.submit(X) for _ in range(250)]
            with lock:
                futures.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results = [f.result(WAIT_S) for f in futures]
        assert len(results) == 1000 and set(results) <= {1.0, 2.0}
        stats = router.stats()["resilience"]
        assert stats["failed"] == 0 and stats["requests"] == 1000
        # Every call of either model is one request's attempt: first tries, retries, fallbacks.
        assert half.calls + backup.calls == 1000 + stats["retries"] + stats["fallbacks"]
        assert stats["retries"] <= 0.1 * 1000 + RetryPolicy().burst


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        ({"a": ["b"], "b": ["a"]}, "fallback cycle: a -> b -> a"),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, "fallback cycle"),
        ({"a": ["a"]}, "or name the model itself"),
        ({"a": ["text_model"]}, "fallbacks must serve the same modality"),
        ({"a": ["nope"]}, "'nope' is not a registered model"),
        ({"nope": ["a"]}, "unknown model 'nope'"),
    ],
)
def test_bad_fallbacks_are_refused_when_set(fallbacks, message):
    with Router() as router:
        for name in "abc":
            router.register(name, lambda x: x, modality="tabular")
        router.register("text_model", lambda x: x, modality="text")
        with pytest.raises(ConfigError, match=message):
            router.set_fallbacks(fallbacks)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RetryPolicy(budget=-0.1), "budget"),
        (lambda: RetryPolicy(budget=float("nan")), "budget"),
        (lambda: RetryPolicy(retry_on=("TimeoutError",)), "exception types"),
        (lambda: RetryPolicy(max_retries=1.5), "max_retries"),
        (lambda: RetryPolicy(backoff_s=0.1, max_backoff_s=0.01), "max_backoff_s"),
        (lambda: BreakerSettings(failure_rate=0.0), "failure_rate"),
        (lambda: BreakerSettings(failure_rate=float("nan")), "failure_rate"),
        (lambda: BreakerSettings(cooldown_s=-1), "cooldown_s"),
        (lambda: BreakerSettings(probes=0), "probes"),
        (lambda: Resilience(retry="often"), "RetryPolicy"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_stats_without_resilience_show_live_replica_state():
    with Router(executor=CPUExecutor(threads=1)) as router:
        router.register("m", Flaky(1.0, fails=lambda n: n <= 2), modality="tabular", replicas=2)
        for _ in range(6):
            try:
                router.submit(X).result(WAIT_S)
            except ModelError:
                pass
        stats = router.stats()
        assert stats["resilience"] is None
        replicas = stats["models"]["m/1"]["replicas"]
        assert len(replicas) == 2
        assert sum(r.completed for r in replicas) == 6 and sum(r.failed for r in replicas) == 2
        assert all(r.queued == 0 and r.in_flight == 0 for r in replicas)
        assert any(r.request_ms > 0 and r.batch_ms >= r.request_ms for r in replicas)
        assert any(r.error_rate > 0 for r in replicas)


def _always(name: str):
    from fastroute import Rule, Rules

    return Rules([], default=name)


def test_overloaded_everywhere_is_one_error():
    release = threading.Event()
    router = Router(executor=CPUExecutor(threads=1, max_batch=1, queue_capacity=1), resilience=Resilience(breaker=None))
    with router:
        router.register("only", lambda x: release.wait(WAIT_S) and 1.0, modality="tabular")
        futures = [router.submit(X) for _ in range(5)]
        refused = [f for f in futures if f.done() and isinstance(f.exception(), Overloaded)]
        release.set()
        assert len(refused) >= 2
        done = [f.result(WAIT_S) for f in futures if f not in refused]
        assert done and set(done) == {1.0}


def test_a_fallback_unregistered_since_is_skipped():
    big, spare = Flaky(1.0, fails=lambda n: True), Flaky(3.0)
    with make_router(Resilience(breaker=None), {"big": big, "gone": Flaky(2.0), "spare": spare}) as router:
        router.set_fallbacks({"big": ["gone", "spare"]})
        router.policy = _always("big")
        router.models.unregister("gone", "1")
        future = router.submit(X)
        assert future.result(WAIT_S) == 3.0
        assert future.decision.attempts[1] == "gone: not registered"
