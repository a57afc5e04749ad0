"""Closing an executor or router from anywhere, at any time, never crashes, hangs or loses a request.

Each scenario that used to deadlock runs the blocking call on a helper thread and
asserts it returned, so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

import numpy as np
import pytest
from helpers import settled_native_thread_count, thread_state_and_cpu_ticks

from fastroute import CPUExecutor, ModelError, ModelSpec, Overloaded, Router, RouterClosed

WAIT_S = 30  # generous: only reached when something is broken


class Hang:
    """A model that holds its worker until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, x):
        if isinstance(x, str) and x == "hang":
            self.started.set()
            self.release.wait(4 * WAIT_S)  # past every wait of the test
        return x


def in_thread(target, *args, **kwargs) -> tuple[threading.Thread, list]:
    """Runs target on a daemon thread; the list receives its result or exception."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread) -> bool:
    thread.join(WAIT_S)
    return not thread.is_alive()


# -- close() from a worker: a done-callback or a model -------------------------------------


def test_close_from_a_done_callback_neither_deadlocks_nor_blocks_later_closes():
    router = Router()
    router.register("echo", lambda x: x, modality="tabular")
    future = router.submit(np.ones(2))
    closed_in_callback: list = []
    future.add_done_callback(lambda done: closed_in_callback.append(router.close()))
    assert future.result(WAIT_S).tolist() == [1.0, 1.0]
    later, outcome = in_thread(router.close)
    assert finished(later), "a later close() hung"
    assert outcome == [None]
    with pytest.raises(RouterClosed):
        router.submit(np.ones(2))


def test_close_from_inside_a_model_drains_the_queue_and_returns():
    ran: list = []
    all_submitted = threading.Event()
    router = Router(executor=CPUExecutor(threads=1, max_batch=1))

    def model(x):
        if x[0] == 0:
            all_submitted.wait(WAIT_S)  # else a fast worker closes before the last submits
            router.close()  # drain: the requests queued behind this one still run
        ran.append(float(x[0]))
        return float(x[0])

    router.register("closer", model, modality="tabular")
    futures = [router.submit(np.full(2, float(i))) for i in range(5)]
    all_submitted.set()
    assert [f.result(WAIT_S) for f in futures] == [0.0, 1.0, 2.0, 3.0, 4.0]
    later, outcome = in_thread(router.close)
    assert finished(later), "a later close() hung"
    assert outcome == [None] and ran == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_close_without_drain_from_inside_a_model_fails_the_queued_requests():
    executor = CPUExecutor(threads=1, max_batch=1)
    all_submitted = threading.Event()

    def close_once_all_are_queued(x):
        all_submitted.wait(WAIT_S)
        return executor.close(drain=False) or x

    model = ModelSpec("closer", "1", close_once_all_are_queued, "tabular")
    futures = [executor.submit(model, i) for i in range(4)]
    all_submitted.set()
    assert futures[0].result(WAIT_S) == 0
    for future in futures[1:]:
        with pytest.raises(RouterClosed, match="closed before model 'closer' ran"):
            future.result(WAIT_S)
    later, _ = in_thread(executor.close)
    assert finished(later)


def test_router_close_timeout_reports_a_hung_model_and_a_later_close_joins():
    before = settled_native_thread_count()
    hang = Hang()
    router = Router()
    router.register("hang", hang, modality="text")
    running = router.submit("hang")
    assert hang.started.wait(WAIT_S)
    with pytest.raises(RouterClosed, match="still running a model after 0.05s"):
        router.close(timeout=0.05)
    hang.release.set()
    assert running.result(WAIT_S) == "hang"
    later, outcome = in_thread(router.close)
    assert finished(later) and outcome == [None]
    assert settled_native_thread_count(before) == before


# -- waiting for queue room ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "retire"])
def test_a_draining_close_or_retire_runs_a_filling_batch_without_waiting_its_max_delay(how):
    """A batch still waiting for more requests (max_delay 60 s) runs as soon as its lane closes."""
    executor = CPUExecutor(threads=1, max_batch=8, max_delay_us=60_000_000)
    spec = ModelSpec("batched", "1", lambda xs: [2 * x for x in xs], "tabular", batched=True)
    try:
        handles = [executor.submit(spec, x) for x in (1, 2, 3)]
        closing, outcome = in_thread(executor.close) if how == "close" else in_thread(executor.retire, spec)
        assert finished(closing), f"{how} waited for the batch to fill"
        assert outcome == [None]
        assert [handle.result(0) for handle in handles] == [2, 4, 6]
    finally:
        executor.close(drain=False)


def test_close_wakes_a_submit_waiting_for_queue_room():
    hang = Hang()
    model = ModelSpec("hang", "1", hang, "text")
    executor = CPUExecutor(threads=1, queue_capacity=1)
    running = executor.submit(model, "hang")
    assert hang.started.wait(WAIT_S)
    queued = executor.submit(model, "queued")
    with pytest.raises(Overloaded):
        executor.submit(model, "no room")
    waiter, outcome = in_thread(executor.submit, model, "waits for room", timeout=WAIT_S)
    give_up = time.monotonic() + WAIT_S
    while thread_state_and_cpu_ticks(str(waiter.native_id))[0] != "S" and time.monotonic() < give_up:
        time.sleep(0.001)  # until it is parked waiting for room
    closing, _ = in_thread(executor.close, drain=False)
    assert finished(waiter), "close() did not wake the waiting submit"
    assert isinstance(outcome[0], RouterClosed)
    assert not hang.release.is_set()  # woken by close, not by room appearing
    with pytest.raises(RouterClosed):
        queued.result(WAIT_S)
    hang.release.set()
    assert running.result(WAIT_S) == "hang"
    assert finished(closing)
    executor.close()


# -- close(drain=False) and a hung model --------------------------------------------------


def test_close_without_drain_returns_while_a_model_hangs_and_fails_what_has_not_started():
    before = settled_native_thread_count()
    hang = Hang()
    model = ModelSpec("hang", "1", hang, "text")
    executor = CPUExecutor(threads=1)
    running = executor.submit(model, "hang")
    assert hang.started.wait(WAIT_S)
    queued = [executor.submit(model, f"queued {i}") for i in range(5)]
    closing, outcome = in_thread(executor.close, drain=False)
    assert finished(closing), "close(drain=False) waited for the hung model"
    assert outcome == [None]
    for future in queued:
        with pytest.raises(RouterClosed, match="closed before model 'hang' ran"):
            future.result(WAIT_S)
    assert not running.done() and not hang.release.is_set()
    hang.release.set()
    assert running.result(WAIT_S) == "hang"  # the call already running still delivers its result
    assert settled_native_thread_count(before) == before


def test_requests_waiting_in_a_batch_behind_a_hung_call_fail_on_close_without_drain():
    hang = Hang()
    model = ModelSpec("hang", "1", hang, "text")
    executor = CPUExecutor(threads=1, max_batch=8)
    gate = Hang()  # holds the only worker until all three are queued: they form one batch
    held = executor.submit(ModelSpec("gate", "1", gate, "text"), "hang")
    assert gate.started.wait(WAIT_S)
    futures = [executor.submit(model, x) for x in ("hang", "second", "third")]
    gate.release.set()
    assert held.result(WAIT_S) == "hang"
    assert hang.started.wait(WAIT_S)
    closing, _ = in_thread(executor.close, drain=False)
    assert finished(closing)
    for future in futures[1:]:
        with pytest.raises(RouterClosed):
            future.result(WAIT_S)
    hang.release.set()
    assert futures[0].result(WAIT_S) == "hang"


# -- unclosed routers ---------------------------------------------------------------------


def test_an_unclosed_router_frees_its_workers_without_the_cyclic_gc():
    before = settled_native_thread_count()
    gc.collect()
    gc.disable()
    try:
        refs = []
        for _ in range(300):
            router = Router()
            router.register("echo", lambda x: x, modality="tabular")
            assert router.submit(np.ones(2)).result(WAIT_S).tolist() == [1.0, 1.0]
            refs.append(weakref.ref(router))
            del router
        assert all(ref() is None for ref in refs), "a reference cycle keeps unclosed routers alive"
        assert settled_native_thread_count(before) == before
    finally:
        gc.enable()


# -- exactly once --------------------------------------------------------------------------


def test_every_request_ends_exactly_once_across_deadlines_cancels_and_close_without_drain():
    executor = CPUExecutor(threads=2, max_batch=4, queue_capacity=64)
    model = ModelSpec("sometimes", "1", lambda x: time.sleep(0.0002) or x if x % 5 else _fail(x), "tabular")
    outcomes: dict[int, int] = {}
    lock = threading.Lock()
    accepted = []

    def count(future) -> None:
        with lock:
            outcomes[id(future)] = outcomes.get(id(future), 0) + 1

    for i in range(600):
        deadline = 0.002 if i % 3 == 0 else None
        try:
            future = executor.submit(model, i, deadline=deadline, timeout=0.01)
        except (Overloaded, RouterClosed):
            continue
        future.add_done_callback(count)
        accepted.append(future)
        if i % 7 == 0:
            future.cancel()
        if i == 400:
            closing, _ = in_thread(executor.close, drain=False)
    assert finished(closing)
    for future in accepted:
        assert future.cancelled() or future.exception(WAIT_S) is None or isinstance(
            future.exception(), (ModelError, RouterClosed, TimeoutError)
        )
    executor.close()  # joins the workers: no outcome can arrive after this
    assert sorted(set(outcomes.values())) == [1] and len(outcomes) == len(accepted)


def _fail(x):
    raise ValueError(f"bad {x}")
