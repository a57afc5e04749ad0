"""Awaiting a request: the asyncio future a ResultHandle sets, and its cancellation.

The awaited future carries no done-callback: a cancel of it (its task cancelled,
asyncio.wait_for timing out, gather cancelled) is read when the request is started or
when the handle's state is read, and the request is then dropped before it runs. Also
the race that hung ``await (await executor.asubmit(...))`` (commit 4eec18a): a worker
settling a handle while its awaited future is being made.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import numpy as np
import pytest

from fastroute import ModelSpec, Resilience, ResultHandle, Router
from fastroute.executors import CPUExecutor

WAIT_S = 30  # only reached when something is broken
HANG_S = 2.0  # how long an await that should already be done may take before it counts as hung
X = np.ones(2, dtype=np.float32)


class SettlingLoop(asyncio.SelectorEventLoop):
    """Settles the handle in ``armed`` from inside the Python methods of the loop that making
    an asyncio future runs (``create_future``, and ``get_debug`` that ``Future.__init__``
    calls): deterministically what a worker does when the interpreter hands it the GIL there."""

    armed: ResultHandle | None = None

    def _settle_armed(self) -> None:
        handle, self.armed = self.armed, None
        if handle is not None:
            handle.set_running_or_notify_cancel()
            handle.set_result("settled meanwhile")

    def create_future(self):
        self._settle_armed()
        return super().create_future()

    def get_debug(self):
        self._settle_armed()
        return super().get_debug()


def test_a_handle_settled_while_its_future_is_made_is_still_delivered():
    """The hang of 4eec18a: its awaited future was made after the handle's state was read,
    so a handle settled meanwhile registered a future that no one would ever set."""
    loop = SettlingLoop()

    async def main():
        handle = ResultHandle()
        loop.armed = handle
        return await asyncio.wait_for(handle.asyncio_future(), HANG_S)

    try:
        assert loop.run_until_complete(main()) == "settled meanwhile"
    finally:
        loop.close()


def test_every_task_awaiting_an_asubmit_handle_finishes():
    """The benchmark that hung (test_executor_asubmit), smaller: each task awaits the handle
    it got from asubmit while a worker settles batches; none may be left waiting."""
    n = 20_000
    spec = ModelSpec("echo", "1", lambda x: x, "tabular")
    executor = CPUExecutor(threads=1, max_batch=256, max_delay_us=0, queue_capacity=1 << 15)

    async def one(i):
        return await (await executor.asubmit(spec, i))

    async def main():
        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        done, pending = await asyncio.wait(tasks, timeout=WAIT_S)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} of {n} awaits never finished"
        assert sorted(task.result() for task in done) == list(range(n))

    try:
        asyncio.run(main())
    finally:
        executor.close()


def test_the_awaited_future_has_no_callback_and_no_cycle_with_its_handle():
    """Two GC-tracked objects for an awaited handle (the handle, its future), no reference
    cycle: both are freed by reference counting alone."""

    async def main():
        handle = ResultHandle()
        future = handle.asyncio_future()
        assert not future._callbacks  # no per-request cancel watch (bound method + Context)
        handle_ref, future_ref = weakref.ref(handle), weakref.ref(future)
        del handle, future
        return handle_ref, future_ref

    gc.disable()
    try:
        refs = asyncio.run(main())
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_a_cancelled_future_cancels_its_handle_when_its_state_is_read():
    async def main():
        handle = ResultHandle()
        future = handle.asyncio_future()
        assert future.cancel()
        assert handle.cancelled() and handle.done()
        assert not handle.set_running_or_notify_cancel()  # a worker would not run it
        again = handle.asyncio_future()  # a later await sees the cancel
        assert again.cancelled()

        started = ResultHandle()
        future = started.asyncio_future()
        assert started.set_running_or_notify_cancel()
        assert future.cancel()  # too late for the request: it runs, its result is discarded
        assert not started.cancelled()
        started.set_result("kept")
        await asyncio.sleep(0)
        assert started.result(0) == "kept" and future.cancelled()

    asyncio.run(main())


class Gate:
    """A model that holds its worker on a negative input until opened, and records the rest."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.ran: list[float] = []

    def __call__(self, x):
        if x[0] < 0:
            self.entered.set()
            self.opened.wait(WAIT_S)
        else:
            self.ran.append(float(x[0]))
        return x


@pytest.fixture
def gated_router():
    gate = Gate()
    router = Router(executor=CPUExecutor(threads=1, max_batch=64, max_delay_us=0))
    spec = router.register("m", gate, modality="tabular")
    yield router, spec, gate
    gate.opened.set()
    router.close()


def _until_no_hold(router: Router, spec) -> int:
    for _ in range(WAIT_S * 1000):
        if router.models.in_flight(spec) == 0:
            break
        threading.Event().wait(0.001)
    return router.models.in_flight(spec)


def test_wait_for_timing_out_drops_a_queued_request_and_its_hold(gated_router):
    router, spec, gate = gated_router

    async def main():
        blocking = router.ainfer(np.full(2, -1.0, dtype=np.float32))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, WAIT_S)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.ainfer(np.full(2, 1.0, dtype=np.float32)), 0.01)
        kept = asyncio.ensure_future(router.ainfer(np.full(2, 2.0, dtype=np.float32)))
        gate.opened.set()
        return (await blocking).tolist(), (await kept).tolist()

    assert asyncio.run(main()) == ([-1.0, -1.0], [2.0, 2.0])
    assert gate.ran == [2.0]  # the timed-out request never ran
    assert _until_no_hold(router, spec) == 0


def test_cancelling_a_gather_drops_its_queued_requests(gated_router):
    router, spec, gate = gated_router

    async def main():
        blocking = router.ainfer(np.full(2, -1.0, dtype=np.float32))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, WAIT_S)
        gathered = asyncio.gather(*(router.ainfer(np.full(2, float(i), dtype=np.float32)) for i in range(1, 6)))
        await asyncio.sleep(0)
        gathered.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gathered
        gate.opened.set()
        await blocking

    asyncio.run(main())
    assert _until_no_hold(router, spec) == 0
    assert gate.ran == []


def test_a_task_cancelled_after_its_request_started_gets_cancelled_and_the_request_one_result(gated_router):
    router, spec, gate = gated_router

    async def main():
        handle = router.submit(np.full(2, -1.0, dtype=np.float32))
        task = asyncio.ensure_future(_await(handle))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.opened.set()
        return handle

    handle = asyncio.run(main())
    assert handle.result(WAIT_S).tolist() == [-1.0, -1.0] and not handle.cancelled()
    assert _until_no_hold(router, spec) == 0


def test_a_resilient_ainfer_cancelled_drops_its_queued_attempt():
    """With resilience ainfer awaits an outer handle in a coroutine: a cancel reaches the
    queued attempt at once, not when the attempt would have run."""
    gate = Gate()
    router = Router(executor=CPUExecutor(threads=1, max_batch=1), resilience=Resilience(breaker=None))
    spec = router.register("m", gate, modality="tabular")

    async def main():
        blocking = asyncio.ensure_future(router.ainfer(np.full(2, -1.0, dtype=np.float32)))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, WAIT_S)
        cancelled = asyncio.ensure_future(router.ainfer(np.full(2, 1.0, dtype=np.float32)))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert router.models.in_flight(spec) == 1  # the attempt's hold ended with its cancel
        gate.opened.set()
        await blocking

    try:
        asyncio.run(main())
        assert gate.ran == []
        assert _until_no_hold(router, spec) == 0
    finally:
        gate.opened.set()
        router.close()


async def _await(handle):
    return await handle
