"""ResultHandle: the Future contract in C++, asyncio, concurrent.futures interop.

The handle alone (its producer methods driven by hand or from other threads),
then through a CPUExecutor: asyncio results delivered once per batch per event
loop, a cancelled awaiting task cancelling its queued request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from concurrent.futures import CancelledError, Future, InvalidStateError, as_completed, wait

import pytest

from fastroute import ModelSpec, ResultHandle
from fastroute.executors import CPUExecutor

WAIT_S = 30  # generous: only reached when something is broken


def settle_later(handle: ResultHandle, value=None, error: BaseException | None = None, delay_s: float = 0.02) -> None:
    def settle():
        handle.set_running_or_notify_cancel()
        if error is not None:
            handle.set_exception(error)
        else:
            handle.set_result(value)

    threading.Timer(delay_s, settle).start()


def test_a_result_set_from_another_thread_wakes_the_waiter_parked_or_spinning():
    for spin_ns in (0, 10_000_000):  # parks at once / would spin 10 ms
        handle = ResultHandle(spin_ns)
        assert not handle.done() and not handle.running() and not handle.cancelled()
        settle_later(handle, "value")
        assert handle.result(WAIT_S) == "value"
        assert handle.done() and handle.exception() is None


def test_an_exception_is_raised_by_result_and_returned_by_exception():
    handle = ResultHandle()
    settle_later(handle, error=KeyError("missing"))
    with pytest.raises(KeyError, match="missing"):
        handle.result(WAIT_S)
    assert isinstance(handle.exception(), KeyError)


def test_a_wait_times_out_and_the_handle_stays_pending():
    handle = ResultHandle()
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        handle.exception(timeout=0)
    assert not handle.done()


def test_cancel_only_before_the_start():
    pending = ResultHandle()
    assert pending.cancel() and pending.cancel() and pending.cancelled() and pending.done()
    assert pending.set_running_or_notify_cancel() is False  # the worker then skips it
    with pytest.raises(CancelledError):
        pending.result()
    with pytest.raises(CancelledError):
        pending.exception()
    with pytest.raises(InvalidStateError, match="already settled"):
        pending.set_result(1)

    started = ResultHandle()
    assert started.set_running_or_notify_cancel() is True
    assert started.running() and not started.cancel()
    with pytest.raises(RuntimeError, match="unexpected state"):
        started.set_running_or_notify_cancel()
    started.set_result(1)
    with pytest.raises(InvalidStateError, match="already settled"):
        started.set_exception(ValueError())
    assert started.result() == 1 and not started.cancel()


def test_callbacks_run_once_each_with_the_handle_and_a_failing_one_is_logged(caplog):
    handle = ResultHandle()
    seen = []
    handle.add_done_callback(seen.append)
    handle.add_done_callback(lambda done: 1 / 0)
    handle.add_done_callback(lambda done: seen.append(done.result()))
    with caplog.at_level(logging.ERROR, logger="fastroute"):
        handle.set_result("x")
    assert seen == [handle, "x"]
    assert "exception calling callback" in caplog.text and "ZeroDivisionError" in caplog.text
    handle.add_done_callback(seen.append)  # already done: runs at once
    assert seen == [handle, "x", handle]


def test_a_callback_takes_arguments_before_the_handle():
    handle = ResultHandle()
    seen = []
    handle.add_done_callback(lambda lease, x, done: seen.append((lease, x, done.result())), "lease", 3)
    handle.set_result("r")
    handle.add_done_callback(lambda *args: seen.append(args), 1)  # done: at once
    assert seen == [("lease", 3, "r"), (1, handle)]


def test_a_waiting_result_releases_the_gil():
    handle = ResultHandle(0)
    counted = []

    def python_work_then_settle():
        counted.append(sum(range(100_000)))  # needs the GIL while the main thread waits
        handle.set_result(len(counted))

    threading.Thread(target=python_work_then_settle).start()
    assert handle.result(WAIT_S) == 1


def test_decision_is_a_plain_attribute():
    handle = ResultHandle()
    assert handle.decision is None
    handle.decision = "routed"
    assert handle.decision == "routed"


def test_concurrent_futures_wait_and_as_completed_take_handles():
    handles = [ResultHandle() for _ in range(4)]
    done, pending = wait(handles, timeout=0.01)
    assert not done and len(pending) == 4
    settle_later(handles[2], "third")
    done, _ = wait(handles, timeout=WAIT_S, return_when="FIRST_COMPLETED")
    assert done == {handles[2]}
    handles[0].cancel()
    settle_later(handles[1], error=ValueError("bad"), delay_s=0.01)
    settle_later(handles[3], "fourth", delay_s=0.03)
    assert set(as_completed(handles, timeout=WAIT_S)) == set(handles)
    done, pending = wait(handles, timeout=WAIT_S, return_when="FIRST_EXCEPTION")
    assert not pending and handles[0].cancelled()


def test_as_future_mirrors_the_handle_and_cancels_it():
    handle = ResultHandle()
    bridge = handle.as_future()
    assert isinstance(bridge, Future) and handle.as_future() is bridge
    settle_later(handle, "value")
    assert bridge.result(WAIT_S) == "value"

    failed = ResultHandle()
    failed.set_exception(ValueError("bad"))
    assert isinstance(failed.as_future().exception(), ValueError)  # made after the end: settled at once

    pending = ResultHandle()
    assert pending.as_future().cancel()
    assert pending.cancelled()  # the request is dropped too
    assert wait([pending.as_future()], timeout=0).done  # counted as done (notified)

    started = ResultHandle()
    started.set_running_or_notify_cancel()
    assert not started.as_future().cancel()  # too late, like the handle


def test_await_on_a_loop_and_wrap_future_of_the_bridge():
    async def main():
        handle = ResultHandle()
        settle_later(handle, "awaited")
        first = await handle
        wrapped = ResultHandle()
        settle_later(wrapped, "wrapped")
        second = await asyncio.wrap_future(wrapped.as_future())
        done = ResultHandle()
        done.set_exception(KeyError("early"))
        with pytest.raises(KeyError):
            await done
        return first, second

    assert asyncio.run(main()) == ("awaited", "wrapped")


def test_two_coroutines_may_await_one_handle():
    async def main():
        handle = ResultHandle()
        settle_later(handle, 7)
        return await asyncio.gather(handle, handle)

    assert asyncio.run(main()) == [7, 7]


def test_reference_cycles_through_handles_are_collected():
    def callback_cycle() -> weakref.ref:
        handle = ResultHandle()
        handle.add_done_callback(lambda done: handle)  # handle -> callback -> handle
        return weakref.ref(handle)

    def traceback_cycle() -> weakref.ref:
        failed = ResultHandle()
        try:
            raise ValueError("kept")
        except ValueError as error:
            failed.set_exception(error)  # failed -> error -> traceback -> this frame -> failed
        return weakref.ref(failed)

    refs = [callback_cycle(), traceback_cycle()]
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


# ---- through an executor ---------------------------------------------------------


class Gate:
    """A model that holds its worker until opened (makes batches deterministic)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, x):
        self.entered.set()
        self.opened.wait(WAIT_S)
        return x


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts the callbacks other threads hand to the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.handed = 0

    def call_soon_threadsafe(self, callback, *args, context=None):
        self.handed += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


@pytest.fixture
def executor():
    executor = CPUExecutor(threads=1, max_batch=64, max_delay_us=0)
    yield executor
    executor.close()


def test_awaited_results_arrive_in_one_hand_off_per_batch_and_loop(executor):
    gate = Gate()
    gated = ModelSpec("gate", "1", gate, "tabular")
    echo = ModelSpec("echo", "1", lambda x: x * 2, "tabular")
    held = executor.submit(gated, 0)
    assert gate.entered.wait(WAIT_S)  # the only worker is busy: the next 50 queue up
    loop = CountingLoop()

    async def main():
        handles = [await executor.asubmit(echo, i) for i in range(50)]
        loop.call_later(0.01, gate.opened.set)
        return await asyncio.gather(*handles)

    try:
        assert loop.run_until_complete(main()) == [2 * i for i in range(50)]
    finally:
        loop.close()
    assert held.result(WAIT_S) == 0
    assert loop.handed == 1  # 50 requests, one batch: one call_soon_threadsafe


def test_cancelling_the_awaiting_task_cancels_the_queued_request(executor):
    gate = Gate()
    gated = ModelSpec("gate", "1", gate, "tabular")
    calls = []
    echo = ModelSpec("echo", "1", calls.append, "tabular")
    executor.submit(gated, 0)
    assert gate.entered.wait(WAIT_S)

    async def main():
        handle = await executor.asubmit(echo, 1)
        task = asyncio.ensure_future(_await(handle))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return handle

    handle = asyncio.run(main())
    assert handle.cancelled()
    gate.opened.set()
    executor.close()
    assert calls == []  # never ran


async def _await(handle):
    return await handle
