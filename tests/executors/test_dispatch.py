"""CPUExecutor: batching, priorities, deadlines, cancellation, errors, back-pressure, close.

Driven at the executor level (a ModelSpec and an input), so no analyzer is
needed. The ``make_executor`` fixture (tests/executors/conftest.py) closes every
executor at teardown and checks that its queues are empty and its worker threads are gone.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError, wait

import numpy as np
import pytest
from helpers import (
    Blocker,
    native_thread_count,
    native_threads_started_since,
    settled_native_thread_count,
    thread_state_and_cpu_ticks,
)

from fastroute import ConfigError, DeadlineExceeded, InvalidInput, ModelError, ModelSpec, Overloaded, RouterClosed
from fastroute import _core
from fastroute.executors import CPUExecutor, cpu

WAIT_S = 30  # generous: only reached when something is broken


def spec(name, model, *, batched=False, replicas=1) -> ModelSpec:
    return ModelSpec(name, "1", model, "tabular", batched=batched, replicas=replicas)


class Recorder:
    """A model recording each call's input (or batch)."""

    def __init__(self) -> None:
        self.calls: list = []
        self.lock = threading.Lock()

    def __call__(self, x):
        with self.lock:
            self.calls.append(x)
        return x


def test_idle_workers_park_instead_of_spinning(make_executor):
    model = spec("m", lambda x: x)
    tasks_before = set(os.listdir("/proc/self/task"))
    executor = make_executor(model, threads=2, spin_us=20)
    workers = native_threads_started_since(tasks_before)
    assert len(workers) == 2
    assert executor.submit(model, 1).result(WAIT_S) == 1
    give_up = time.monotonic() + WAIT_S  # a spinning worker stays runnable ("R") until then
    while any(thread_state_and_cpu_ticks(w)[0] != "S" for w in workers) and time.monotonic() < give_up:
        time.sleep(0.01)
    parked = [thread_state_and_cpu_ticks(w) for w in workers]
    time.sleep(0.2)
    assert [thread_state_and_cpu_ticks(w) for w in workers] == parked  # still asleep, not one tick used
    assert [state for state, _ in parked] == ["S", "S"]


def test_submit_returns_each_result(make_executor):
    double = spec("double", lambda x: 2 * x)
    executor = make_executor(double, threads=2)
    futures = [executor.submit(double, i) for i in range(500)]
    assert [f.result(WAIT_S) for f in futures] == [2 * i for i in range(500)]


def test_batched_model_gets_stacked_arrays_or_lists(make_executor):
    recorder = Recorder()
    model = spec("batched", lambda xs: recorder(xs), batched=True)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, max_batch=8)
    blocker.occupy(executor)
    arrays = [executor.submit(model, np.full(3, i, dtype=np.float32)) for i in range(5)]
    blocker.release.set()
    assert [f.result(WAIT_S).tolist() for f in arrays] == [[i] * 3 for i in range(5)]
    assert isinstance(recorder.calls[0], np.ndarray) and recorder.calls[0].shape == (5, 3)
    mixed = [executor.submit(model, x) for x in ("a", np.ones(2))]
    assert [type(f.result(WAIT_S)) for f in mixed] == [str, np.ndarray]
    assert isinstance(recorder.calls[-1], list)


def test_batches_hold_at_most_max_batch(make_executor):
    recorder = Recorder()
    model = spec("batched", lambda xs: recorder(xs), batched=True)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, max_batch=8)
    blocker.occupy(executor)
    futures = [executor.submit(model, i) for i in range(20)]
    blocker.release.set()
    assert [f.result(WAIT_S) for f in futures] == list(range(20))
    assert [len(call) for call in recorder.calls] == [8, 8, 4]


def test_batch_waits_up_to_max_delay_for_more(make_executor):
    recorder = Recorder()
    model = spec("batched", lambda xs: recorder(xs), batched=True)
    executor = make_executor(model, threads=1, max_batch=64, max_delay_us=300_000)
    futures = [executor.submit(model, i) for i in range(3)]
    assert [f.result(WAIT_S) for f in futures] == [0, 1, 2]
    assert [list(call) for call in recorder.calls] == [[0, 1, 2]]


def test_a_model_called_per_request_does_not_wait_for_a_batch_to_fill(make_executor):
    # A minute's max_delay: a lone request that waited for its batch to fill would outlast WAIT_S.
    single = spec("single", lambda x: x)
    executor = make_executor(single, threads=1, max_batch=64, max_delay_us=60_000_000)
    assert [executor.submit(single, i).result(WAIT_S) for i in range(3)] == [0, 1, 2]


def test_high_priority_runs_first_and_each_class_is_fifo(make_executor):
    recorder = Recorder()
    model = spec("recorder", recorder)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, max_batch=4)
    blocker.occupy(executor)
    normal = [executor.submit(model, f"n{i}") for i in range(6)]
    high = [executor.submit(model, f"h{i}", priority="high") for i in range(6)]
    blocker.release.set()
    wait(normal + high, timeout=WAIT_S)
    assert recorder.calls == [f"h{i}" for i in range(6)] + [f"n{i}" for i in range(6)]


def test_fifo_per_submitting_thread_on_one_replica(make_executor):
    recorder = Recorder()
    model = spec("recorder", recorder)
    executor = make_executor(model, threads=2, max_batch=16)

    def submit_many(tag):
        return [executor.submit(model, (tag, i), timeout=WAIT_S) for i in range(2000)]

    results: list = []
    threads = [threading.Thread(target=lambda t=t: results.extend(submit_many(t))) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait(results, timeout=WAIT_S)
    for tag in range(4):
        assert [i for t, i in recorder.calls if t == tag] == list(range(2000))


def test_deadline_passed_before_running_fails_without_running(make_executor):
    recorder = Recorder()
    model = spec("recorder", recorder)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    blocker.occupy(executor)
    late = executor.submit(model, "late", deadline=0.01)
    in_time = executor.submit(model, "in time", deadline=WAIT_S)
    time.sleep(0.05)
    blocker.release.set()
    with pytest.raises(DeadlineExceeded, match="'recorder'"):
        late.result(WAIT_S)
    assert in_time.result(WAIT_S) == "in time"
    assert recorder.calls == ["in time"]


def sleep_past(monotonic_time: float) -> None:
    while time.monotonic() <= monotonic_time:
        time.sleep(0.01)


def test_each_unbatched_request_is_checked_against_its_deadline_right_before_its_call(make_executor):
    recorder = Recorder()
    late_deadline = [math.inf]

    def model(x):
        recorder(x)
        if x == "slow":
            sleep_past(late_deadline[0])
        return x

    slow_model = spec("slow", model)
    blocker = Blocker()
    executor = make_executor(slow_model, blocker.spec, threads=1)
    blocker.occupy(executor)
    slow = executor.submit(slow_model, "slow")
    late = executor.submit(slow_model, "late", deadline=0.2)  # taken in one batch with "slow"
    late_deadline[0] = time.monotonic() + 0.2
    blocker.release.set()
    assert slow.result(WAIT_S) == "slow"
    with pytest.raises(DeadlineExceeded, match="'slow' passed its deadline"):
        late.result(WAIT_S)
    assert recorder.calls == ["slow"]


def test_a_batched_model_gets_only_the_rows_still_in_time(make_executor):
    recorder = Recorder()
    model = spec("batched", lambda xs: recorder(list(xs)), batched=True)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    blocker.occupy(executor)
    expired = executor.submit(model, "expired", deadline=1e-9)
    late = executor.submit(model, "late", deadline=0.05)
    kept = executor.submit(model, "kept")
    for future in (expired, late):  # at their deadline, while the blocker still holds the worker
        with pytest.raises(DeadlineExceeded, match="'batched' passed its deadline"):
            future.result(WAIT_S)
    blocker.release.set()
    assert kept.result(WAIT_S) == "kept"
    assert recorder.calls == [["kept"]]


@pytest.mark.parametrize("deadline", [9.3e9, 1e10, 1e300, float("inf")])
def test_far_deadlines_mean_no_deadline(make_executor, deadline):
    model = spec("m", lambda x: x)
    executor = make_executor(model, threads=1)
    assert executor.submit(model, "far", deadline=deadline).result(WAIT_S) == "far"


def test_deadlines_share_the_dispatchers_clock():
    before = time.monotonic_ns()
    native = _core.monotonic_ns()
    after = time.monotonic_ns()
    assert before <= native <= after


def test_cancel_before_execution_skips_the_model(make_executor):
    recorder = Recorder()
    model = spec("recorder", recorder)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    blocker.occupy(executor)
    cancelled = executor.submit(model, "cancelled")
    kept = executor.submit(model, "kept")
    assert cancelled.cancel()
    blocker.release.set()
    assert kept.result(WAIT_S) == "kept"
    with pytest.raises(CancelledError):
        cancelled.result(WAIT_S)
    assert recorder.calls == ["kept"]


def test_model_exception_fails_only_its_request_and_worker_survives(make_executor):
    def fragile(x):
        if x == 3:
            raise ValueError("three is bad")
        return x

    model = spec("fragile", fragile)
    executor = make_executor(model, threads=1)
    futures = [executor.submit(model, i) for i in range(6)]
    for i, future in enumerate(futures):
        if i == 3:
            with pytest.raises(ModelError, match="'fragile' failed: ValueError: three is bad") as info:
                future.result(WAIT_S)
            assert info.value.model == "fragile"
            assert isinstance(info.value.__cause__, ValueError)
        else:
            assert future.result(WAIT_S) == i
    assert executor.submit(model, 7).result(WAIT_S) == 7


def test_batched_model_error_or_wrong_length_fails_only_its_batch(make_executor):
    def model_fn(xs):
        if "boom" in list(xs):
            raise RuntimeError("boom in batch")
        return list(xs)[:-1] if "short" in list(xs) else list(xs)

    model = spec("batchy", model_fn, batched=True)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, max_batch=2)
    blocker.occupy(executor)
    futures = [executor.submit(model, x) for x in ("a", "boom", "b", "c", "short", "d")]
    blocker.release.set()
    wait(futures, timeout=WAIT_S)
    with pytest.raises(ModelError, match="RuntimeError: boom in batch"):
        futures[0].result()
    with pytest.raises(ModelError, match="returned 1 results for a batch of 2"):
        futures[4].result()
    assert futures[1].exception().__cause__.args == ("boom in batch",)
    assert [futures[i].result() for i in (2, 3)] == ["b", "c"]
    with pytest.raises(ModelError, match="'batchy' failed: returned 1 results for a batch of 2"):
        futures[5].result()  # "short" and "d" share a batch


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


@pytest.mark.parametrize("batched", [False, True])
def test_model_exception_whose_message_raises_still_fails_its_requests(make_executor, batched):
    def broken(x):
        raise Unprintable()

    model = spec("broken", broken, batched=batched)
    executor = make_executor(model, threads=1)
    futures = [executor.submit(model, i) for i in range(3)]
    for future in futures:
        with pytest.raises(ModelError, match=r"'broken' failed: Unprintable \(its message could not be formatted\)"):
            future.result(WAIT_S)
        assert isinstance(future.exception().__cause__, Unprintable)


def test_a_batch_that_breaks_off_fails_its_unfinished_requests(make_executor, monkeypatch):
    def resolve_first_then_break(model_spec, live):
        live[0][0].set_result("first")
        raise RuntimeError("runner bug")

    model = spec("batchy", lambda xs: list(xs), batched=True)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    blocker.occupy(executor)
    monkeypatch.setattr(cpu, "_run_batched", resolve_first_then_break)
    futures = [executor.submit(model, i) for i in range(3)]
    expired = executor.submit(model, "late", deadline=1e-9)
    cancelled = executor.submit(model, "cancelled")
    assert cancelled.cancel()
    blocker.release.set()
    assert futures[0].result(WAIT_S) == "first"
    for future in futures[1:]:
        with pytest.raises(ModelError, match="'batchy' failed: its batch broke off: RuntimeError: runner bug"):
            future.result(WAIT_S)
    with pytest.raises(DeadlineExceeded):
        expired.result(WAIT_S)
    assert cancelled.cancelled()


def test_a_refused_push_keeps_no_reference_to_its_payload(make_executor):
    class Payload:
        pass

    executor = make_executor(threads=1)
    payload = Payload()
    ref = weakref.ref(payload)
    with pytest.raises(InvalidInput, match="unknown lane 5"):
        executor._core.push(5, payload, False, _core.NO_DEADLINE, 0.0)
    del payload
    gc.collect()
    assert ref() is None


def test_hanging_model_does_not_block_other_models(make_executor):
    hang = threading.Event()
    hanging = spec("hanging", lambda x: hang.wait(WAIT_S))
    healthy = spec("healthy", lambda x: x + 1)
    executor = make_executor(hanging, healthy, threads=2)
    stuck = executor.submit(hanging, 0)
    try:
        assert [executor.submit(healthy, i).result(WAIT_S) for i in range(200)] == list(range(1, 201))
        assert not stuck.done()
    finally:
        hang.set()
    assert stuck.result(WAIT_S) is True


def test_full_queue_raises_overloaded_or_waits_for_room(make_executor):
    model = spec("small", lambda x: x)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, queue_capacity=4)
    blocker.occupy(executor)
    accepted = [executor.submit(model, i) for i in range(4)]
    with pytest.raises(Overloaded, match="'small' is full"):
        executor.submit(model, 4)
    with pytest.raises(Overloaded, match="waited 0.02s"):
        executor.submit(model, 4, timeout=0.02)
    threading.Timer(0.05, blocker.release.set).start()
    waited = executor.submit(model, 4, timeout=WAIT_S)
    assert [f.result(WAIT_S) for f in accepted + [waited]] == [0, 1, 2, 3, 4]


def test_asubmit_waits_for_room_without_blocking_the_event_loop(make_executor):
    model = spec("small", lambda x: x)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, queue_capacity=1)
    blocker.occupy(executor)
    queued = executor.submit(model, "queued")

    async def main():
        waiting = asyncio.create_task(executor.asubmit(model, "waited", timeout=WAIT_S))
        await asyncio.sleep(0)  # its first try finds the queue full
        assert not waiting.done()
        blocker.release.set()  # runs only because the try did not block the loop
        return await (await waiting)

    assert asyncio.run(main()) == "waited"
    assert queued.result(WAIT_S) == "queued"


def test_asubmit_gives_up_like_submit(make_executor):
    model = spec("small", lambda x: x)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1, queue_capacity=1)
    blocker.occupy(executor)
    queued = executor.submit(model, "queued")
    with pytest.raises(Overloaded, match=r"'small' is full \(1 normal requests\)$"):
        asyncio.run(executor.asubmit(model, "x", timeout=None))
    with pytest.raises(Overloaded, match="waited 0.02s"):
        asyncio.run(executor.asubmit(model, "x", timeout=0.02))
    with pytest.raises(InvalidInput, match="timeout .* -1"):
        asyncio.run(executor.asubmit(model, "x", timeout=-1))
    blocker.release.set()
    assert queued.result(WAIT_S) == "queued"


def test_stats_count_queued_and_in_flight(make_executor):
    model = spec("counted", lambda x: x)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    assert executor.stats(model) == type(executor.stats(model))(0, 0, 0)
    blocker.occupy(executor)
    futures = [executor.submit(model, i) for i in range(5)]
    assert (executor.stats(model).queued, executor.stats(blocker.spec).in_flight) == (5, 1)
    blocker.release.set()
    wait(futures, timeout=WAIT_S)


def test_retire_drains_then_refuses_and_restarts_fresh(make_executor):
    model = spec("old", lambda x: x)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=2)
    blocker.occupy(executor)
    futures = [executor.submit(model, i) for i in range(50)]
    executor.retire(model, drain=True)
    assert all(f.done() and not f.exception() for f in futures)
    assert executor.stats(model).replicas == 0
    assert executor.submit(model, 1).result(WAIT_S) == 1  # fresh queues
    blocker.release.set()


def test_specs_sharing_a_name_and_version_keep_their_own_queues(make_executor):
    old, new = spec("m", lambda x: ("old", x)), spec("m", lambda x: ("new", x))
    executor = make_executor(old, new, threads=1)
    assert executor.submit(old, 1).result(WAIT_S) == ("old", 1)
    assert executor.submit(new, 2).result(WAIT_S) == ("new", 2)
    executor.retire(old)
    assert executor.stats(old).replicas == 0 and executor.stats(new).replicas == 1
    assert executor.submit(new, 3).result(WAIT_S) == ("new", 3)


def test_retired_queues_are_reused_so_swaps_never_run_out(make_executor):
    executor = make_executor(threads=1, max_lanes=2)
    for generation in range(50):
        model = spec("m", lambda x, generation=generation: (generation, x))
        assert executor.submit(model, "x").result(WAIT_S) == (generation, "x")
        executor.retire(model, drain=generation % 2 == 0)


def test_running_out_of_queues_is_overloaded_until_one_is_retired(make_executor):
    single, pair = spec("single", lambda x: x), spec("pair", lambda x: -x, replicas=2)
    executor = make_executor(single, pair, threads=1, max_lanes=2)
    assert executor.submit(single, 1).result(WAIT_S) == 1
    with pytest.raises(Overloaded, match=r"'pair' version '1' \(2 replicas\): all 2 queues \(max_lanes\) are in use"):
        executor.submit(pair, 1)
    executor.retire(single)
    assert executor.submit(pair, 2).result(WAIT_S) == -2  # the lane taken before it ran out was given back


def test_a_retired_model_is_not_kept_alive(make_executor):
    class Model:
        def __call__(self, x):
            return x

    model = Model()
    ref = weakref.ref(model)
    retired = spec("m", model)
    executor = make_executor(threads=1)
    assert executor.submit(retired, 1).result(WAIT_S) == 1
    executor.retire(retired)
    del model, retired
    gc.collect()
    assert ref() is None


def test_retire_without_drain_fails_queued_requests(make_executor):
    model = spec("old", lambda x: x)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    blocker.occupy(executor)
    futures = [executor.submit(model, i) for i in range(5)]
    (lane,) = executor._lanes[id(model)][1]
    retiring = threading.Thread(target=executor.retire, args=(model,), kwargs={"drain": False})
    retiring.start()
    while not executor._core.stats(lane)[2]:  # closed, hence aborting: nothing of it may run now
        time.sleep(0.001)
    blocker.release.set()
    retiring.join(WAIT_S)
    for future in futures:
        with pytest.raises(RouterClosed, match="'old'"):
            future.result(WAIT_S)


def test_close_drain_runs_everything_and_joins_threads():
    before = settled_native_thread_count()
    model = spec("slowish", lambda x: time.sleep(0.001) or x)
    executor = CPUExecutor(threads=2)
    assert native_thread_count() == before + 2
    futures = [executor.submit(model, i) for i in range(100)]
    executor.close(drain=True)
    assert [f.result(0) for f in futures] == list(range(100))
    assert settled_native_thread_count(before) == before
    with pytest.raises(RouterClosed):
        executor.submit(model, 1)
    executor.close()  # idempotent


def test_close_without_drain_fails_pending_requests():
    blocker = Blocker()
    model = spec("pending", lambda x: x)
    executor = CPUExecutor(threads=1)
    running = blocker.occupy(executor)
    futures = [executor.submit(model, i) for i in range(10)]
    closing = threading.Thread(target=executor.close, kwargs={"drain": False})
    closing.start()
    while not executor._core.closed:  # set after the queues are marked aborting
        time.sleep(0.001)
    blocker.release.set()
    closing.join(WAIT_S)
    assert running.result(WAIT_S) == "block"  # close(drain=False) does not wait for it: it ends on its own
    for future in futures:
        with pytest.raises(RouterClosed, match="closed before model 'pending' ran"):
            future.result(0)


def test_replicas_power_of_two_choices_avoids_a_stuck_replica(make_executor):
    stuck = threading.Event()
    first_call = threading.Event()
    calls = []

    def model_fn(x):
        calls.append(x)
        if not first_call.is_set():
            first_call.set()
            stuck.wait(WAIT_S)
        return x

    model = spec("replicated", model_fn, replicas=2)
    executor = make_executor(model, threads=3, rng=random.Random(7))
    slow = executor.submit(model, "slow")
    assert first_call.wait(WAIT_S)
    (stuck_lane,) = [lane for lane in executor._lanes[id(model)][1] if executor._core.stats(lane)[1] == 1]
    try:
        queued_behind_slow = []  # its worker is inside the model: queued there means waiting, exactly
        for i in range(50):
            future = executor.submit(model, i)
            if executor._core.stats(stuck_lane)[0] > len(queued_behind_slow):
                queued_behind_slow.append(i)
            else:
                assert future.result(WAIT_S) == i
        # Only a tie (the healthy replica finishing a request) can send one
        # request to the stuck replica; once queued there, it loses every draw.
        assert len(queued_behind_slow) <= 1
        assert calls == ["slow"] + [i for i in range(50) if i not in queued_behind_slow]
        assert executor.stats(model).replicas == 2
    finally:
        stuck.set()
    assert slow.result(WAIT_S) == "slow"


def test_stage_histograms_count_every_request_over_replicas(make_executor):
    batches = []
    model = spec("replicated", lambda batch: batches.append(len(batch)) or list(batch), batched=True, replicas=2)
    unused = spec("unused", lambda x: x)
    executor = make_executor(model, unused, threads=2, max_batch=4)
    assert executor.stages(unused) == {}  # never took a request
    futures = [executor.submit(model, i) for i in range(40)]
    assert [f.result(WAIT_S) for f in futures] == list(range(40))
    executor.close(drain=True)  # every batch's execute is recorded once the workers are joined
    stages = executor.stages(model)
    bounds = dict(_core.LANE_STAGE_BOUNDS)
    assert set(stages) == set(bounds) == {"queue_wait", "batch_wait", "execute", "batch_size"}
    for stage, (counts, _) in stages.items():
        assert len(counts) == len(bounds[stage]) + 1
    assert sum(stages["queue_wait"][0]) == 40  # every request, summed over both replicas
    assert stages["batch_size"][1] == 40 and sum(stages["batch_size"][0]) == len(batches)
    assert sum(stages["execute"][0]) == sum(stages["batch_wait"][0]) == len(batches)
    assert sum(stages["batch_size"][0][3:]) == 0  # max_batch 4: no batch above the le=4 bucket


def test_no_reference_to_inputs_outlives_their_requests(make_executor):
    class Payload:
        pass

    model = spec("identity", lambda x: None)
    blocker = Blocker()
    executor = make_executor(model, blocker.spec, threads=1)
    blocker.occupy(executor)
    inputs = [Payload() for _ in range(30)]
    refs = [weakref.ref(x) for x in inputs]
    futures = [executor.submit(model, x, deadline=0.01 if i % 3 == 0 else None) for i, x in enumerate(inputs)]
    futures[1].cancel()
    time.sleep(0.02)
    blocker.release.set()
    wait(futures, timeout=WAIT_S)
    del inputs, futures
    gc.collect()
    assert [r() for r in refs] == [None] * 30  # run, expired and cancelled alike


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"threads": 0}, "threads"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_delay_us": -1}, "max_delay_us"),
        ({"queue_capacity": "big"}, "queue_capacity"),
        ({"threads": True}, "threads"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        CPUExecutor(**kwargs)


def test_bad_submit_arguments_are_invalid_input(make_executor):
    model = spec("m", lambda x: x)
    executor = make_executor(model, threads=1)
    with pytest.raises(InvalidInput, match="'urgent'"):
        executor.submit(model, 1, priority="urgent")
    with pytest.raises(InvalidInput, match="deadline .* -1"):
        executor.submit(model, 1, deadline=-1)
    with pytest.raises(InvalidInput, match="timeout .* 'soon'"):
        executor.submit(model, 1, timeout="soon")


@pytest.mark.parametrize(
    "requests", [pytest.param(10_000, id="10k"), pytest.param(100_000, id="100k-soak", marks=pytest.mark.slow)]
)
def test_stress_every_request_ends_exactly_once(make_executor, requests):
    """8 submitting threads; models raise, sleep, return wrong lengths; outcomes are counted exactly.

    Runs ``requests`` requests in all (10,000 in the unit suite, 100,000 in
    the ``slow`` soak), at most FASTROUTE_STRESS_REQUESTS when that is set.
    """
    total = min(requests, int(os.environ.get("FASTROUTE_STRESS_REQUESTS", requests)))
    per_thread = total // 8

    def single(x):  # fails on multiples of 7, sleeps now and then
        if x % 7 == 0:
            raise ValueError(x)
        if x % 1000 == 1:
            time.sleep(0.0002)
        return x * 2

    def batched(xs):  # whole batch fails on multiples of 11, short on multiples of 13
        xs = list(xs)
        if any(x % 11 == 0 for x in xs):
            raise KeyError("eleven")
        return [x * 2 for x in xs][: -1 if any(x % 13 == 0 for x in xs) else None]

    models = [spec("single", single), spec("batched", batched, batched=True, replicas=2)]
    executor = make_executor(*models, threads=2, max_batch=32, max_delay_us=100, queue_capacity=1024)
    outcomes: list[list] = [[] for _ in range(8)]
    callbacks = [0]
    callback_lock = threading.Lock()

    def count_callback(_):
        with callback_lock:
            callbacks[0] += 1

    def producer(index):
        rng = random.Random(index)
        for i in range(per_thread):
            x = index * per_thread + i
            try:
                future = executor.submit(models[x % 2], x, timeout=WAIT_S)
            except Overloaded:
                outcomes[index].append((x, "overloaded", None))
                continue
            if rng.random() < 0.01:
                future.cancel()
            future.add_done_callback(count_callback)
            outcomes[index].append((x, "accepted", future))

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [(x, f) for rows in outcomes for x, kind, f in rows if kind == "accepted"]
    done, not_done = wait([f for _, f in accepted], timeout=120)
    assert not not_done
    tally = {"ok": 0, "model_error": 0, "cancelled": 0}
    for x, future in accepted:
        if future.cancelled():
            tally["cancelled"] += 1
        elif future.exception() is not None:
            assert isinstance(future.exception(), ModelError)
            assert x % 2 == 0 and x % 7 == 0 or x % 2 == 1
            tally["model_error"] += 1
        else:
            assert future.result() == 2 * x
            tally["ok"] += 1
    assert sum(tally.values()) == len(accepted) == 8 * per_thread
    assert callbacks[0] == len(accepted)
    assert tally["ok"] > 0 and tally["model_error"] > 0 and tally["cancelled"] > 0


@pytest.mark.parametrize("hang", [False, True])
def test_interpreter_exit_with_open_executor_does_not_hang(hang):
    script = f"""
import threading
from fastroute import ModelSpec
from fastroute.executors import CPUExecutor, cpu
never = threading.Event()
slow = ModelSpec("slow", "1", lambda x: never.wait(60) if {hang} else x, "tabular")
cpu._EXIT_JOIN_TIMEOUT_S = 0.05  # a hung worker is detached after it (2 s by default)
executor = CPUExecutor(threads=1)
futures = [executor.submit(slow, i) for i in range(1000)]
print("submitted", flush=True)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "submitted" in result.stdout
