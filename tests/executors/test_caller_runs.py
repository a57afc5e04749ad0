"""Caller runs: a thread blocked in ``result()`` runs its own queued request.

Most tests hold the executor's only worker in a model (``Blocker``) so that no
worker can take the request first: what runs on the waiting thread is then
decided, not raced. Each test checks a guarantee of the dispatch runtime on a
batch the caller ran: results, stage histograms, deadlines, priority order,
leases through a hot swap, a draining close with callers waiting, nested
submits; and where the caller must not run (off, with a timeout, asyncio,
offloading executors). The ``make_executor`` fixture (conftest.py) closes each
executor at teardown and checks its queues are empty and its workers gone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from helpers import Blocker, Versioned, route_everything_as

from fastroute import CPUExecutor, DeadlineExceeded, ModelSpec, Router
from fastroute.executors.offload import OffloadingExecutor

WAIT_S = 30  # generous: only reached when something is broken


def spec(name: str, model, *, batched: bool = False) -> ModelSpec:
    return ModelSpec(name, "1", model, "tabular", batched=batched)


class ThreadRecorder:
    """A model recording (input, thread id) of each call; returns its input."""

    def __init__(self, name: str = "recorded") -> None:
        self.calls: list[tuple[object, int]] = []
        self.lock = threading.Lock()
        self.spec = spec(name, self)

    def __call__(self, x):
        with self.lock:
            self.calls.append((x, threading.get_ident()))
        return x

    def threads(self) -> set[int]:
        return {thread for _, thread in self.calls}


def test_the_waiting_thread_runs_its_own_request_and_the_lane_records_it(make_executor):
    blocker, recorder = Blocker(), ThreadRecorder()
    executor = make_executor(blocker.spec, recorder.spec, threads=1)
    held = blocker.occupy(executor)
    assert executor.submit(recorder.spec, 7).result() == 7
    assert recorder.calls == [(7, threading.get_ident())]
    stats = executor.replica_stats(recorder.spec)[0]
    assert (stats.queued, stats.in_flight, stats.completed) == (0, 0, 1)
    stages = executor.stages(recorder.spec)
    assert sum(stages["queue_wait"][0]) == 1 and sum(stages["execute"][0]) == 1
    assert sum(stages["batch_size"][0]) == 1
    blocker.release.set()
    assert held.result() == "block"


def test_a_failing_model_fails_only_its_request_on_the_callers_thread(make_executor):
    def broken(x):
        raise ZeroDivisionError(f"no {x}")

    blocker, failing = Blocker(), spec("broken", broken)
    executor = make_executor(blocker.spec, failing, threads=1)
    blocker.occupy(executor)
    handle = executor.submit(failing, 1)
    with pytest.raises(ZeroDivisionError, match="no 1"):
        try:
            handle.result()
        except Exception as error:  # ModelError, the model's exception its cause
            raise error.__cause__ from None
    assert executor.replica_stats(failing)[0].failed == 1
    blocker.release.set()


@pytest.mark.parametrize("how", ["caller_runs=0", "a timeout", "an offloading executor"])
def test_without_caller_runs_a_worker_runs_the_request(make_executor, how):
    blocker, recorder = Blocker(), ThreadRecorder()
    kind = InProcessOffloading if how == "an offloading executor" else CPUExecutor
    caller_runs = 0 if how == "caller_runs=0" else 1
    executor = make_executor(blocker.spec, recorder.spec, kind=kind, threads=1, caller_runs=caller_runs)
    blocker.occupy(executor)
    handle = executor.submit(recorder.spec, 1)
    waiter = threading.Thread(target=_result_or_timeout if how == "a timeout" else type(handle).result, args=(handle,))
    waiter.start()
    waiter.join(0.05)  # the waiter blocks: the only worker is held, and it does not run the request itself
    assert not handle.done()
    blocker.release.set()
    waiter.join(WAIT_S)
    assert handle.result() == 1
    assert threading.get_ident() not in recorder.threads() and waiter.ident not in recorder.threads()


class InProcessOffloading(OffloadingExecutor):
    """An OffloadingExecutor offloading nothing: every model runs in process, but on its workers."""

    def _offloads(self, spec: ModelSpec) -> bool:
        return False


def _result_or_timeout(handle) -> None:
    while True:
        try:
            handle.result(timeout=0.01)
            return
        except TimeoutError:
            continue


def test_expired_requests_never_run_in_a_callers_batch(make_executor):
    blocker, recorder = Blocker(), ThreadRecorder()
    executor = make_executor(blocker.spec, recorder.spec, threads=1)
    blocker.occupy(executor)
    late = executor.submit(recorder.spec, "late", deadline=0.01)
    in_time = executor.submit(recorder.spec, "in time", deadline=WAIT_S)
    with pytest.raises(DeadlineExceeded):
        late.result(WAIT_S)  # failed at its deadline while queued (a timeout: this waits, never runs)
    assert in_time.result() == "in time"  # the caller's batch holds both; only this one runs
    assert recorder.calls == [("in time", threading.get_ident())]
    blocker.release.set()


def test_a_callers_batch_runs_high_priority_first_then_fifo(make_executor):
    blocker, recorder = Blocker(), ThreadRecorder()
    executor = make_executor(blocker.spec, recorder.spec, threads=1, max_batch=8)
    blocker.occupy(executor)
    handles = [executor.submit(recorder.spec, f"normal {i}") for i in range(3)]
    handles += [executor.submit(recorder.spec, f"high {i}", priority="high") for i in range(3)]
    assert handles[2].result() == "normal 2"
    me = threading.get_ident()
    assert recorder.calls == [(f"high {i}", me) for i in range(3)] + [(f"normal {i}", me) for i in range(3)]
    assert all(handle.done() for handle in handles)
    blocker.release.set()


def test_a_batched_model_is_run_by_a_caller_only_once_a_full_batch_is_queued(make_executor):
    batches: list[tuple[list, int]] = []

    def batched(xs):
        batches.append((list(xs), threading.get_ident()))
        return list(xs)

    blocker, model = Blocker(), spec("batched", batched, batched=True)
    executor = make_executor(blocker.spec, model, threads=1, max_batch=4, max_delay_us=60_000_000)
    blocker.occupy(executor)
    first = [executor.submit(model, i) for i in range(3)]
    with pytest.raises(TimeoutError):
        first[0].result(timeout=0.01)
    waiter = threading.Thread(target=first[0].result)
    waiter.start()
    waiter.join(0.05)  # 3 of 4: the batch may still fill, so the waiter leaves it to the worker
    assert not first[0].done()
    fourth = executor.submit(model, 3)
    assert fourth.result() == 3  # a full batch: a waiting thread runs it (the worker is held)
    waiter.join(WAIT_S)
    assert batches == [([0, 1, 2, 3], batches[0][1])]
    assert batches[0][1] in {threading.get_ident(), waiter.ident}  # this thread, unless the waiter came late
    blocker.release.set()


def test_nested_submit_from_a_model_waits_for_a_worker_instead_of_running_inline(make_executor):
    inner = ThreadRecorder("inner")
    outer_threads: list[int] = []
    executor = None

    def outer(x):
        outer_threads.append(threading.get_ident())
        return executor.submit(inner.spec, x + 1).result()  # never inline inside a model

    outer_spec = spec("outer", outer)
    executor = make_executor(outer_spec, inner.spec, threads=2)
    for i in range(50):
        assert executor.submit(outer_spec, i).result() == i + 1
    assert len(outer_threads) == 50
    assert all(thread != outer_thread for (_, thread), outer_thread in zip(inner.calls, outer_threads))
    assert threading.get_ident() not in inner.threads()


def test_asyncio_never_runs_a_model_on_the_event_loop(make_executor):
    recorder = ThreadRecorder()
    executor = make_executor(recorder.spec, threads=1)

    async def main():
        handles = [await executor.asubmit(recorder.spec, i) for i in range(20)]
        return [await handle for handle in handles]

    assert asyncio.run(main()) == list(range(20))
    assert threading.get_ident() not in recorder.threads()


def test_close_with_drain_while_a_caller_serves_and_others_wait(make_executor):
    gate_entered, gate_open = threading.Event(), threading.Event()
    calls: list[tuple[int, int]] = []

    def gated(x):
        calls.append((x, threading.get_ident()))
        if x == 0:
            gate_entered.set()
            assert gate_open.wait(WAIT_S)
        return x

    blocker, model = Blocker(), spec("gated", gated)
    executor = make_executor(blocker.spec, model, threads=1)
    held = blocker.occupy(executor)
    results: dict[int, object] = {}

    def client(i: int) -> None:
        results[i] = executor.submit(model, i).result()

    first = threading.Thread(target=client, args=(0,))
    first.start()
    assert gate_entered.wait(WAIT_S)  # the first client runs its request on its own thread, held at the gate
    blocker.release.set()  # the worker is free again; the lane stays the first client's
    others = [threading.Thread(target=client, args=(i,)) for i in (1, 2)]
    for thread in others:
        thread.start()
    closing = threading.Thread(target=executor.close, kwargs={"drain": True})
    closing.start()
    closing.join(0.05)
    assert closing.is_alive()  # waits for the caller's batch
    gate_open.set()
    for thread in [first, *others, closing]:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    assert results == {0: 0, 1: 1, 2: 2} and held.result() == "block"
    assert calls[0] == (0, first.ident)
    assert sorted(x for x, _ in calls) == [0, 1, 2]


def test_many_threads_every_request_ends_exactly_once(make_executor):
    recorder = ThreadRecorder()
    executor = make_executor(recorder.spec, threads=2, max_batch=4)
    threads, per_thread = 4, 500
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def client(worker: int) -> None:
        for i in range(per_thread):
            outcome = "ok" if executor.submit(recorder.spec, (worker, i)).result() == (worker, i) else "wrong"
            with lock:
                outcomes[outcome] += 1

    clients = [threading.Thread(target=client, args=(w,)) for w in range(threads)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(WAIT_S)
    assert outcomes == {"ok": threads * per_thread}
    assert Counter(x for x, _ in recorder.calls) == Counter((w, i) for w in range(threads) for i in range(per_thread))


def test_the_lease_is_held_until_a_callers_request_completes_through_a_hot_swap(monkeypatch):
    route_everything_as(monkeypatch)
    old, new = Versioned("1"), Versioned("2")
    returning = threading.Event()
    seen: dict[str, object] = {}
    router = Router(executor=CPUExecutor(threads=1))
    blocker = Blocker()

    def pausing(x):
        if x == "pause":
            seen["thread"] = threading.get_ident()
            _wait_until(lambda: router.models.resolve("m")[0].version == "2")  # swapped in, version 1 draining
            seen["in_flight_during"] = router.models.in_flight(old_spec)
            returning.set()
        return old(x)

    try:
        old_spec = router.register("m", pausing, modality="tabular", version="1", warmup=Versioned.WARMUP)
        blocker.occupy(router.executor)

        def swap() -> None:
            # Returns once the paused request let go of its lease on version 1.
            router.models.swap(ModelSpec("m", "2", new, "tabular"), warmup=Versioned.WARMUP)
            seen["returned_before_swap"] = returning.is_set()
            old.retired = True

        swapper = threading.Thread(target=swap)
        handle = router.submit("pause")
        swapper.start()
        assert handle.result() == ("1", "pause")
        swapper.join(WAIT_S)
        assert seen == {"thread": threading.get_ident(), "in_flight_during": 1, "returned_before_swap": True}
        assert router.submit("after").result() == ("2", "after")
        assert old.violations == [] and new.violations == []
        assert router.models.in_flight(old_spec) == 0
    finally:
        blocker.release.set()
        router.close()


def _wait_until(condition) -> None:
    give_up = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < give_up, "condition never became true"
        time.sleep(0.001)
