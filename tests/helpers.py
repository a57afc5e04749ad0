"""Shared test helpers and fakes (imported by tests/conftest.py and by tests).

- route_everything_as: the router sees every input as one modality (plain ints as inputs).
- GeneralPathOnly: a router's native path that declines every request.
- FakeClock, Versioned, ClientLoad: fakes and load generators for the model library.
- native_thread_count & co: counting the executors' native worker threads.
- Blocker: a model holding the worker that runs it until released.
- local_ray: a local Ray instance whose workers import the caller's modules (tests and benchmarks).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import fastroute.decision.fast_path
import fastroute.router
from fastroute.library.spec import ModelSpec


def route_everything_as(monkeypatch: pytest.MonkeyPatch, modality: str = "tabular") -> None:
    """Make the router see every input as ``modality`` so tests can use plain ints."""
    row = np.full(len(fastroute.FEATURE_NAMES), np.nan, dtype=np.float32)
    row[fastroute.FEATURE_NAMES.index("modality")] = fastroute.MODALITIES.index(modality)

    def analyze_batch(xs):
        rows = np.tile(row, (len(xs), 1))
        return fastroute.BatchAnalysis(rows, rows[:, 0].astype(np.uint8))

    monkeypatch.setattr(fastroute.router, "analyze", lambda x, hint=None: fastroute.Analysis(row))
    # Routers made from now on: their native path calls this stand-in instead of the C++ analyzer.
    monkeypatch.setattr(fastroute.decision.fast_path, "analyze", lambda x, hint=None: fastroute.Analysis(row))
    monkeypatch.setattr(fastroute.router, "analyze_batch", analyze_batch)


class GeneralPathOnly:
    """Stands in for a router's native path (``router._fast_path``): declines every request,
    so each takes the general path."""

    @staticmethod
    def route(*args: Any) -> None:
        return None

    hold = hold_only = submit = ainfer = route


class FakeClock:
    """A manual clock; models advance it to fake their latency."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Versioned:
    """A model version that proves it was warmed before traffic and never used after retiring."""

    WARMUP = "warm-up sample"

    def __init__(self, version: str) -> None:
        self.version = version
        self.warmed = False
        self.retired = False
        self.violations: list[str] = []
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, x: Any) -> tuple[str, Any]:
        if x == self.WARMUP:
            self.warmed = True
            return (self.version, x)
        with self._lock:
            self.calls += 1
            if not self.warmed:
                self.violations.append(f"v{self.version} served {x!r} before warm-up")
            if self.retired:
                self.violations.append(f"v{self.version} served {x!r} after retiring")
        return (self.version, x)


class ClientLoad:
    """``threads`` client threads, each sending ``per_thread`` requests.

    ``request(worker, i)`` returns the request's outcome label; an exception
    counts as its class name. Entering the block starts the clients together,
    leaving it joins them; ``outcomes`` then counts every request exactly once.
    """

    def __init__(self, threads: int, per_thread: int, request: Callable[[int, int], str]) -> None:
        self.total = threads * per_thread
        self.outcomes: Counter[str] = Counter()
        self._request = request
        self._per_thread = per_thread
        self._lock = threading.Lock()
        self._started = threading.Barrier(threads + 1)
        self._clients = [threading.Thread(target=self._client, args=(w,)) for w in range(threads)]

    def _client(self, worker: int) -> None:
        self._started.wait()
        for i in range(self._per_thread):
            try:
                outcome = self._request(worker, i)
            except Exception as error:  # counted, then asserted on by the test
                outcome = type(error).__name__
            with self._lock:
                self.outcomes[outcome] += 1

    def running(self) -> bool:
        return any(client.is_alive() for client in self._clients)

    def __enter__(self) -> ClientLoad:
        for client in self._clients:
            client.start()
        self._started.wait()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for client in self._clients:
            client.join()


# ---- the executors' native threads ----------------------------------------


def native_thread_count() -> int:
    """OS threads that are not Python threads: the executors' workers."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def settled_native_thread_count(expected: int | None = None, timeout: float = 5.0) -> int:
    """native_thread_count() once Python threads of earlier tests, which leave
    threading's registry before they leave the OS, are gone: the count equals
    ``expected``, or (without one) has not changed for 50 ms."""
    give_up = time.monotonic() + timeout
    count = native_thread_count()
    while time.monotonic() < give_up and count != expected:
        time.sleep(0.05)
        latest = native_thread_count()
        if expected is None and latest == count:
            break
        count = latest
    return count


def native_threads_started_since(tasks_before: set[str]) -> list[str]:
    """Ids of the OS threads, not Python threads, that are not in ``tasks_before``
    (a listing of /proc/self/task): e.g. the workers of an executor made since."""
    python_threads = {str(thread.native_id) for thread in threading.enumerate()}
    return sorted(set(os.listdir("/proc/self/task")) - tasks_before - python_threads)


def thread_state_and_cpu_ticks(thread_id: str) -> tuple[str, int]:
    """One thread's scheduler state (R running, S sleeping...) and the CPU time
    it has used (user + system, in clock ticks), from /proc/self/task/ID/stat."""
    with open(f"/proc/self/task/{thread_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[11]) + int(fields[12])


class Blocker:
    """A model that holds its worker until released: makes queue states deterministic."""

    WAIT_S = 30  # generous: only reached when something is broken

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.spec = ModelSpec("blocker", "1", self, "tabular")

    def __call__(self, x: Any) -> Any:
        self.started.set()
        self.release.wait(self.WAIT_S)
        return x

    def occupy(self, executor: Any) -> Any:
        """Submit one request and return its handle once the model holds a worker."""
        handle = executor.submit(self.spec, "block")
        assert self.started.wait(self.WAIT_S)
        return handle


@contextmanager
def local_ray(num_cpus: int, modules: Path) -> Iterator[Any]:
    """A local Ray instance (no dashboard, worker logs kept off the driver) whose worker
    processes can import the modules in ``modules`` (the models a test or benchmark hands
    its actors by import path); shut down on exit. Yields the ``ray`` module."""
    import ray  # the 'ray' extra: only callers that have it get here

    pythonpath = os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    try:
        yield ray
    finally:
        ray.shutdown()
