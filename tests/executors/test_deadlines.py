"""A request's deadline fails it at the deadline, wherever it waits for its model.

Every test keeps the model hung until the deadline has failed the request, so
the only thing that can fail it is the deadline itself (no timing threshold).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastroute import CPUExecutor, DeadlineExceeded, ModelSpec, Router

WAIT_S = 30  # generous: only reached when something is broken


class Hang:
    """A model that holds its worker on the input "hang" until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.ran: list = []

    def __call__(self, x):
        if isinstance(x, str) and x == "hang":
            self.started.set()
            self.release.wait(4 * WAIT_S)  # past every wait of the test
        self.ran.append(x)
        return x


@pytest.fixture
def hung():
    hang = Hang()
    executor = CPUExecutor(threads=1, max_batch=8, max_delay_us=200_000)
    yield hang, ModelSpec("hang", "1", hang, "text"), executor
    hang.release.set()
    executor.close()


def test_a_request_queued_behind_a_hung_model_fails_at_its_deadline(hung):
    hang, model, executor = hung
    running = executor.submit(model, "hang")
    assert hang.started.wait(WAIT_S)
    late = executor.submit(model, "queued", deadline=0.05)
    with pytest.raises(DeadlineExceeded, match="'hang' passed its deadline"):
        late.result(WAIT_S)
    assert not hang.release.is_set() and not running.done()
    hang.release.set()
    assert running.result(WAIT_S) == "hang"
    assert "queued" not in hang.ran  # failed requests never run


def queued_while_the_worker_is_held(executor: CPUExecutor, submit_all) -> list:
    """``submit_all()``'s futures, submitted while the single worker is held on another
    model: all queued when the worker next takes a batch, so they form one batch."""
    gate = Hang()
    held = executor.submit(ModelSpec("gate", "1", gate, "text"), "hang")
    assert gate.started.wait(WAIT_S)
    futures = submit_all()
    gate.release.set()
    assert held.result(WAIT_S) == "hang"
    return futures


def test_a_request_in_a_batch_behind_a_hung_call_fails_at_its_deadline(hung):
    hang, model, executor = hung
    futures = queued_while_the_worker_is_held(
        executor, lambda: [executor.submit(model, "hang"), executor.submit(model, "second", deadline=0.05)]
    )
    assert hang.started.wait(WAIT_S)
    with pytest.raises(DeadlineExceeded):
        futures[1].result(WAIT_S)
    assert not hang.release.is_set()
    hang.release.set()
    assert futures[0].result(WAIT_S) == "hang"
    assert "second" not in hang.ran


def test_a_cancelled_request_stays_cancelled_at_its_deadline(hung):
    hang, model, executor = hung
    executor.submit(model, "hang")
    assert hang.started.wait(WAIT_S)
    cancelled = executor.submit(model, "cancelled", deadline=0.02)
    watched = executor.submit(model, "watched", deadline=0.05)  # fails after the first deadline
    assert cancelled.cancel()
    with pytest.raises(DeadlineExceeded):
        watched.result(WAIT_S)
    assert cancelled.cancelled()


def test_requests_that_start_in_time_are_not_failed_by_their_deadline(hung):
    hang, model, executor = hung
    futures = [executor.submit(model, i, deadline=WAIT_S) for i in range(20)]
    assert [f.result(WAIT_S) for f in futures] == list(range(20))


def test_router_submit_deadline_fails_behind_a_hung_model_and_releases_the_lease():
    hang = Hang()
    router = Router(executor=CPUExecutor(threads=1))
    spec = router.register("hang", hang, modality="text")
    router.submit("hang")
    assert hang.started.wait(WAIT_S)
    late = router.submit("queued", deadline=0.05)
    with pytest.raises(DeadlineExceeded):
        late.result(WAIT_S)
    assert router.models.in_flight(spec) == 1  # only the hung request still holds its version
    hang.release.set()
    router.close()
    assert router.models.in_flight(spec) == 0
    assert np.array_equal(hang.ran, ["hang"])
