"""The one-call enqueue: ``router.submit`` and ``router.ainfer`` route, hold, and queue a plain
request in one native call (``FastRoute.submit``/``ainfer`` over the executor's
``_core.RequestQueue``); everything else keeps the general path.

Each test checks a guarantee of the dispatch runtime on requests queued natively: the
hold on the version ends exactly once with the request (``in_flight`` back to 0), a
refused request leaves neither a hold nor a waiting entry, deadlines, cancellation,
caller runs, exactly-once under concurrent submits with a hot swap and a draining
close, and the cases that must still work through the general path (a spec's first
request, several replicas, a timeout, an offloading executor).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from helpers import Blocker, route_everything_as

import fastroute
from fastroute import CPUExecutor, DeadlineExceeded, InvalidInput, ModelSpec, Overloaded, Router, RouterClosed
from fastroute.executors.offload import OffloadingExecutor

WAIT_S = 30  # generous: only reached when something is broken


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch):
    """``make(**settings)``: a router over ``CPUExecutor(**settings)`` serving "m" (returns its
    input) with plain ints routed natively; closed at teardown, which checks that no hold and
    no waiting entry is left."""
    route_everything_as(monkeypatch)
    made: list[Router] = []

    def make(model=lambda x: x, replicas: int = 1, **settings: int) -> Router:
        router = Router(executor=CPUExecutor(**settings))
        router.register("m", model, modality="tabular", replicas=replicas)
        made.append(router)
        return router

    yield make
    for router in made:
        executor = router._executor
        router.close(drain=True)
        assert executor._waiting.unclaimed == {}
        for spec in router.models.list():
            assert router.models.in_flight(spec) == 0


class TwoStepCounter:
    """Stands in for a router's native path (``router._fast_path``), counting the requests
    that were not queued in one native call: those asking it for a hold (``hold``,
    ``hold_only``) to queue in a second step, as every request did before."""

    def __init__(self, fast_path) -> None:
        self.fast_path = fast_path
        self.two_step = 0

    def __getattr__(self, name: str):
        if name in ("hold", "hold_only"):
            self.two_step += 1
        return getattr(self.fast_path, name)


def counting(router: Router) -> TwoStepCounter:
    router._fast_path = counter = TwoStepCounter(router._fast_path)
    return counter


def started(router: Router) -> tuple[ModelSpec, TwoStepCounter]:
    """Runs the first request of "m" (the general path starts its lane), then counts the
    requests not queued in one native call: ("m"'s spec, the counter)."""
    assert router.submit(0).result() == 0
    return router.models.get("m"), counting(router)


def occupied(router: Router) -> Blocker:
    """Holds the router executor's only worker in a model until ``release`` is set."""
    blocker = Blocker()
    blocker.occupy(router.executor)
    return blocker


def test_after_a_specs_first_request_submit_is_one_native_call(plain):
    router = plain(threads=1)
    fast = counting(router)
    first = router.submit(1)  # the spec has no lanes yet: the general path starts them
    assert first.result() == 1 and fast.two_step == 1
    handles = [router.submit(x) for x in range(2, 50)]
    assert [handle.result() for handle in handles] == list(range(2, 50))
    assert fast.two_step == 1  # every later one was queued natively
    decision = handles[0].decision
    assert decision.model == "m" and decision.version == "1"
    assert router.feedback(decision.id, reward=1.0) == "joined"
    assert router.models.in_flight(router.models.get("m")) == 0


def test_the_hold_lasts_until_the_request_ends_and_the_waiting_thread_runs_it(plain):
    recorder = Recorder()
    router = plain(recorder, threads=1)
    spec, fast = started(router)
    blocker = occupied(router)
    try:
        handle = router.submit(5)
        assert router.models.in_flight(spec) == 1 and not handle.done()
        assert handle.result() == 5  # no timeout: this thread runs it (the worker is held)
        assert recorder.calls[-1] == (5, threading.get_ident())
        assert router.models.in_flight(spec) == 0 and fast.two_step == 0
    finally:
        blocker.release.set()


def test_a_full_queue_is_overloaded_with_the_hold_released_and_no_waiting_entry(plain):
    router = plain(threads=1, queue_capacity=4, caller_runs=0)
    router.submit(0).result()
    spec, waiting, fast = router.models.get("m"), router.executor._waiting, counting(router)
    blocker = occupied(router)
    try:
        queued = [router.submit(x) for x in range(4)]
        for _ in range(3):
            with pytest.raises(Overloaded, match="queue of model 'm' is full"):
                router.submit(99)
        assert fast.two_step == 0  # refused natively
        assert router.models.in_flight(spec) == 4  # the queued ones only
        assert len(waiting.unclaimed) == 4
    finally:
        blocker.release.set()
    assert [handle.result() for handle in queued] == [0, 1, 2, 3]
    assert router.models.in_flight(spec) == 0 and waiting.unclaimed == {}


def test_ainfer_on_a_full_queue_waits_for_room_through_the_general_path(plain):
    router = plain(threads=1, queue_capacity=2, caller_runs=0)
    router.submit(0).result()
    spec = router.models.get("m")

    async def main(blocker: Blocker):
        first = [router.ainfer(x) for x in (1, 2)]  # natively: asyncio futures, not coroutines
        assert all(isinstance(future, asyncio.Future) for future in first)
        waiting = asyncio.ensure_future(router.ainfer(3, timeout=WAIT_S))  # full: waits for room
        await asyncio.sleep(0.01)
        assert not waiting.done() and router.models.in_flight(spec) == 3  # its hold is kept meanwhile
        blocker.release.set()
        assert await asyncio.gather(*first, waiting) == [1, 2, 3]

    asyncio.run(main(occupied(router)))
    assert router.models.in_flight(spec) == 0


def test_ainfer_queues_natively_and_cancelling_its_future_cancels_the_request(plain):
    recorder = Recorder()
    router = plain(recorder, threads=1)
    spec, fast = started(router)

    async def main():
        assert await router.ainfer(7) == 7
        blocker = occupied(router)
        try:
            future = router.ainfer(8)
            assert isinstance(future, asyncio.Future) and router.models.in_flight(spec) == 1
            future.cancel()  # the request is cancelled when a worker reaches it (ResultHandle reads it lazily)
            await asyncio.sleep(0)
        finally:
            blocker.release.set()
        with pytest.raises(asyncio.CancelledError):
            await future
        assert await router.ainfer(9, deadline=WAIT_S) == 9  # queued after 8 (FIFO): 8 was reached first

    asyncio.run(main())
    assert fast.two_step == 0
    assert [x for x, _ in recorder.calls] == [0, 7, 9]  # 8 never ran
    assert router.models.in_flight(spec) == 0


def test_cancelling_a_natively_queued_request_before_it_runs(plain):
    recorder = Recorder()
    router = plain(recorder, threads=1)
    spec, fast = started(router)
    blocker = occupied(router)
    try:
        handle = router.submit(1)
        assert handle.cancel() and handle.cancelled()
        assert router.models.in_flight(spec) == 0  # the hold ended with the cancelled request
    finally:
        blocker.release.set()
    assert router.submit(2).result() == 2
    assert [x for x, _ in recorder.calls] == [0, 2]  # the cancelled one never ran
    assert fast.two_step == 0
    with pytest.raises(Exception) as raised:
        handle.result()
    assert type(raised.value).__name__ == "CancelledError"


def test_a_deadline_on_the_native_path_fails_a_request_still_queued(plain):
    router = plain(threads=1, caller_runs=0)
    spec, fast = started(router)
    blocker = occupied(router)
    try:
        handle = router.submit(1, deadline=0.01)
        later = router.submit(2, deadline=WAIT_S, priority="high")
        with pytest.raises(DeadlineExceeded, match="'m' passed its deadline"):
            handle.result(timeout=WAIT_S)
        assert router.models.in_flight(spec) == 1  # the later one only
    finally:
        blocker.release.set()
    assert later.result(timeout=WAIT_S) == 2
    assert fast.two_step == 0 and router.models.in_flight(spec) == 0


def test_bad_arguments_raise_clear_errors_and_hold_nothing(plain):
    router = plain(threads=1)
    router.submit(0).result()
    spec = router.models.get("m")
    with pytest.raises(InvalidInput, match="priority must be one of"):
        router.submit(1, priority="urgent")
    with pytest.raises(InvalidInput, match="deadline must be a positive number"):
        router.submit(1, deadline=-1)
    with pytest.raises(InvalidInput, match="deadline must be a positive number"):
        router.submit(1, deadline="soon")
    assert router.models.in_flight(spec) == 0
    fast, queue = router._fast_path, router.executor.native_queue
    with pytest.raises(TypeError, match="take 8 arguments"):
        fast.submit(router.policy, router.feedback_store, 1)
    with pytest.raises(TypeError, match="RequestQueue"):
        fast.submit(router.policy, router.feedback_store, 1, None, None, "not a queue", "normal", None)
    with pytest.raises(InvalidInput, match="dispatcher must be a fastroute._core.Dispatcher"):
        fastroute._core.RequestQueue("not a dispatcher", {}, router.executor._waiting, 0, True, None, ("high", "normal"), None)
    with pytest.raises(fastroute.InvalidInput, match="unknown lane"):
        queue.push(10_000, spec, 1, False, fastroute._core.NO_DEADLINE, 0.0)
    assert router.executor._waiting.unclaimed == {}  # the failed push left no entry
    router.close()
    with pytest.raises(RouterClosed):
        router.submit(1)


def test_several_replicas_and_a_timeout_keep_the_general_path(plain):
    router = plain(replicas=3, threads=2)
    fast = counting(router)
    assert [router.submit(x).result() for x in range(20)] == list(range(20))
    assert fast.two_step == 20  # the executor picks among the replicas
    assert sum(stats.completed for stats in router.executor.replica_stats(router.models.get("m"))) == 20
    single = plain(threads=1)
    fast = counting(single)
    single.submit(0).result()
    assert single.submit(1, timeout=WAIT_S).result() == 1 and fast.two_step == 2


class Recorder:
    """A model recording (input, thread id) of each call; returns its input."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, int]] = []

    def __call__(self, x):
        self.calls.append((x, threading.get_ident()))
        return x


class InProcessOffloading(OffloadingExecutor):
    """Offloads nothing: checks that an offloading executor keeps every request on submit()."""

    def _offloads(self, spec: ModelSpec) -> bool:
        return False


def test_an_offloading_executor_has_no_native_queue(monkeypatch):
    route_everything_as(monkeypatch)
    router = Router(executor=InProcessOffloading(threads=1))
    try:
        router.register("m", lambda x: x, modality="tabular")
        assert router.executor.native_queue is None
        assert [router.submit(x).result() for x in range(3)] == [0, 1, 2]
    finally:
        router.close()


def test_exactly_once_under_concurrent_submits_a_hot_swap_and_a_draining_close(plain):
    """Four threads submit natively while "m" is swapped twice and the router then closes with
    drain: every handle a submit returned ends exactly once (its result, or RouterClosed only
    for submits refused after the close), each accepted input runs once, and no hold is left."""
    router = plain(threads=2)
    router.submit(-1).result()
    fast = counting(router)
    ran: Counter = Counter()
    lock = threading.Lock()

    def model(version: str):
        def run(x):
            with lock:
                ran[x] += 1
            return (version, x)

        return run

    router.models.swap(ModelSpec("m", "2", model("2"), "tabular"))
    accepted: list[tuple[int, object]] = []
    refused: list[BaseException] = []
    started = threading.Barrier(5)

    def submitter(base: int) -> None:
        started.wait(WAIT_S)
        for n in range(2_000):
            x = base + n
            try:
                handle = router.submit(x)
            except RouterClosed as error:
                refused.append(error)
                return
            accepted.append((x, handle))
            if n % 7 == 0:
                handle.result()  # no timeout: this thread may run it (caller runs)

    threads = [threading.Thread(target=submitter, args=(base,)) for base in range(0, 40_000, 10_000)]
    for thread in threads:
        thread.start()
    started.wait(WAIT_S)
    for version, after in (("3", 500), ("4", 2_000)):
        wait_until(lambda: len(accepted) >= after)  # no timing: once requests flow
        router.models.swap(ModelSpec("m", version, model(version), "tabular"), timeout=WAIT_S)
    wait_until(lambda: len(accepted) >= 4_000)
    router.close(drain=True)
    for thread in threads:
        thread.join(WAIT_S)
    outcomes = Counter()
    for x, handle in accepted:
        assert handle.done()
        version, result = handle.result()
        assert result == x and version in {"2", "3", "4"}
        outcomes["ok"] += 1
    assert outcomes["ok"] == len(accepted) > 0
    assert all(ran[x] == 1 for x, _ in accepted) and sum(ran.values()) == len(accepted)
    assert {version for _, handle in accepted for version in handle.result()[:1]} == {"2", "3", "4"}
    assert fast.two_step < len(accepted) // 2  # most were queued natively (the rest: a version's first)


def wait_until(condition) -> None:
    give_up = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < give_up, "condition never became true"
        time.sleep(0.001)
