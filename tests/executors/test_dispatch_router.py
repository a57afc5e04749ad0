"""Router-level dispatch: submit, ainfer, replicas, close, context manager.

These route through the analyzer (``Router.route``), so they need the
analyzer's ``analyze()``: a 1-D float vector is routed as "tabular".
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from helpers import native_thread_count, settled_native_thread_count

from fastroute import CPUExecutor, ModelError, Overloaded, Router, RouterClosed, UnsupportedInput

WAIT_S = 30


def test_submit_routes_then_runs_on_the_executor():
    with Router(executor=CPUExecutor(threads=2, max_batch=8)) as router:
        router.register("sum", lambda x: float(np.sum(x)), modality="tabular")
        futures = [router.submit(np.full(4, i, dtype=np.float32)) for i in range(50)]
        assert [f.result(WAIT_S) for f in futures] == [4.0 * i for i in range(50)]
        assert router.infer(np.ones(4, dtype=np.float32)) == 4.0  # synchronous path unchanged


def test_default_executor_is_created_lazily_and_closed_with_the_router():
    before = settled_native_thread_count()
    router = Router()
    router.register("double", lambda x: 2 * x, modality="tabular")
    assert native_thread_count() == before
    assert router.submit(np.ones(3)).result(WAIT_S).tolist() == [2.0, 2.0, 2.0]
    assert isinstance(router.executor, CPUExecutor)
    router.close()
    assert settled_native_thread_count(before) == before
    with pytest.raises(RouterClosed):
        router.submit(np.ones(3))
    router.close()  # idempotent


def test_ainfer_resolves_on_the_callers_loop():
    with Router() as router:
        router.register("neg", lambda x: -x, modality="tabular")

        async def main():
            loop_thread = threading.get_ident()
            results = await asyncio.gather(*(router.ainfer(np.full(2, i, dtype=np.float32)) for i in range(20)))
            assert threading.get_ident() == loop_thread
            return [r.tolist() for r in results]

        assert asyncio.run(main()) == [[-i, -i] for i in range(20)]


def test_submit_passes_priority_deadline_and_model_errors():
    def broken(x):
        raise ZeroDivisionError("no")

    with Router() as router:
        router.register("broken", broken, modality="tabular")
        future = router.submit(np.ones(2), priority="high", deadline=WAIT_S)
        with pytest.raises(ModelError, match="'broken' failed: ZeroDivisionError") as info:
            future.result(WAIT_S)
        assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_replicas_get_one_queue_each():
    with Router(executor=CPUExecutor(threads=2)) as router:
        spec = router.register("wide", lambda x: x, modality="tabular", replicas=3)
        futures = [router.submit(np.ones(2)) for _ in range(30)]
        assert all(f.result(WAIT_S).tolist() == [1.0, 1.0] for f in futures)
        assert router.executor.stats(spec).replicas == 3


def test_close_without_drain_fails_pending_and_overload_is_reported():
    release = threading.Event()
    started = threading.Event()

    def slow(x):
        started.set()
        release.wait(WAIT_S)
        return x

    executor = CPUExecutor(threads=1, queue_capacity=2)
    router = Router(executor=executor)
    router.register("slow", slow, modality="tabular")
    running = router.submit(np.ones(2))
    assert started.wait(WAIT_S)
    pending = [router.submit(np.ones(2)) for _ in range(2)]
    with pytest.raises(Overloaded):
        router.submit(np.ones(2))
    closing = threading.Thread(target=router.close, kwargs={"drain": False})
    closing.start()
    while not executor._core.closed:  # set after the queues are marked aborting
        time.sleep(0.001)
    release.set()
    closing.join(WAIT_S)
    assert running.result(WAIT_S).tolist() == [1.0, 1.0]  # close(drain=False) does not wait for it
    for future in pending:
        with pytest.raises(RouterClosed):
            future.result(0)


def test_ainfer_on_the_native_path_is_the_handles_asyncio_future_and_raises_where_awaited():
    """With queue room, ainfer hands back the asyncio future its handle sets (gather takes it
    without a task); a bad input or a full queue raises where the awaitable is awaited; a
    cancelled request ends its hold."""
    started, release = threading.Event(), threading.Event()

    def model(x):
        if x[0] < 0:
            started.set()
            release.wait(30)
        return x

    with Router(executor=CPUExecutor(threads=1, queue_capacity=1)) as router:
        spec = router.register("m", model, modality="tabular")

        async def main():
            quick = router.ainfer(np.ones(2, dtype=np.float32))
            assert isinstance(quick, asyncio.Future)
            assert (await quick).tolist() == [1.0, 1.0]
            bad = router.ainfer({"not": "an input"})  # raises nothing yet
            with pytest.raises(UnsupportedInput, match="dict"):
                await bad
            blocking = router.ainfer(np.full(2, -1.0, dtype=np.float32))
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
            queued = router.ainfer(np.ones(2, dtype=np.float32))
            with pytest.raises(Overloaded):
                await router.ainfer(np.ones(2, dtype=np.float32))  # no timeout: no waiting for room
            waiting = asyncio.ensure_future(router.ainfer(np.full(2, 3.0, dtype=np.float32), timeout=30))
            await asyncio.sleep(0.01)
            assert router.models.in_flight(spec) == 3  # running, queued and the one waiting for room
            assert queued.cancel()
            await asyncio.sleep(0)
            release.set()
            assert (await blocking).tolist() == [-1.0, -1.0]
            assert (await waiting).tolist() == [3.0, 3.0]
            result, decision = await router.ainfer(np.ones(2, dtype=np.float32), return_decision=True)
            assert decision.model == "m" and result.tolist() == [1.0, 1.0]

        asyncio.run(main())
        with pytest.raises(RuntimeError, match="no running event loop"):
            router.ainfer(np.ones(2, dtype=np.float32))  # nothing queued outside a loop
        deadline = time.monotonic() + 30
        while router.models.in_flight(spec) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert router.models.in_flight(spec) == 0
