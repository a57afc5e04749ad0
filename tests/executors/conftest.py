"""Fixtures of the executor tests."""

from __future__ import annotations

import pytest
from helpers import settled_native_thread_count

from fastroute.executors import CPUExecutor
from fastroute.library.spec import ModelSpec


@pytest.fixture
def make_executor():
    """``make(*specs, kind=CPUExecutor, **settings)``: an executor closed (drained) at
    teardown, which then checks that the queues of ``specs`` are empty and that no
    worker thread is left."""
    threads_before = settled_native_thread_count()
    made: list[tuple[CPUExecutor, list[ModelSpec]]] = []

    def make(*specs: ModelSpec, kind: type[CPUExecutor] = CPUExecutor, **settings: int) -> CPUExecutor:
        executor = kind(**settings)
        made.append((executor, list(specs)))
        return executor

    yield make
    for executor, specs in made:
        executor.close(drain=True)
        for spec in specs:
            stats = executor.stats(spec)
            assert (stats.queued, stats.in_flight) == (0, 0), f"{spec.name} left {stats}"
    assert settled_native_thread_count(threads_before) == threads_before, "worker threads left after close"
