"""Ray executor benchmarks, each beside its baseline (pytest-benchmark groups).

- ``ray: GIL-bound throughput``: N requests, all submitted at once, to a
  pure-Python model that holds the GIL (a busy loop per row): the in-process
  CPUExecutor (baseline; its threads share one GIL) vs RayExecutor with 1, 2
  and 4 actors (one process each) vs a Ray Serve deployment (2 replicas) called
  through its handle with ``@serve.batch``. Same batch size everywhere.
- ``ray: per-request overhead``: N no-op requests in flight at once; time per
  request of Ray's own actor call (``actor.run.remote(x)`` per request, then
  ``ray.get``: the baseline) vs RayExecutor (micro-batched in the router, one
  actor call per batch) vs the Ray Serve handle with ``@serve.batch``.
  ``record`` also reports the one-at-a-time latency (submit, wait, repeat) of
  the actor call and of RayExecutor, where batching cannot help.

Ray starts once per module (``ray.init(num_cpus=4)``: 4 actors on this 2-core
machine share 2 cores). ``--quick`` runs small sizes and leaves Ray Serve out
(it takes tens of seconds to start).

Run: python -m pytest benchmarks/bench_ray.py --benchmark-only
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastroute import ModelSpec
from fastroute.executors import CPUExecutor

ray = pytest.importorskip("ray", reason="needs the 'ray' extra")
from fastroute.executors.ray_actors import RayExecutor  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers import local_ray as ray_instance  # noqa: E402  (the tests' local Ray instance)

MAX_BATCH = 16
WORK_ROUNDS = 20_000  # pure-Python loop iterations per row: about a millisecond on this machine


def busy_rows(batch: Any) -> list[float]:
    """The GIL-bound model: a pure-Python loop per row."""
    outputs = []
    for row in batch:
        total = 0
        for i in range(WORK_ROUNDS):
            total += i ^ 3
        outputs.append(float(row[0]) + total % 7)
    return outputs


def noop_rows(batch: Any) -> list[float]:
    return [0.0] * len(batch)


class RowActor:
    """Ray's own actor call, one request per call (the overhead baseline)."""

    def run(self, x: Any) -> float:
        return 0.0


@pytest.fixture(scope="module")
def local_ray():
    with ray_instance(num_cpus=4, modules=HERE) as instance:  # actors import this module's models
        yield instance


@pytest.fixture(scope="module")
def serve_handles(local_ray, quick):
    """name -> a Ray Serve handle (2 replicas, @serve.batch), or None in --quick / without ray[serve]."""
    if quick:
        yield None
        return
    try:
        with warnings.catch_warnings():  # Ray Serve's own pydantic models warn on import
            warnings.simplefilter("ignore", DeprecationWarning)
            from ray import serve
    except ImportError:
        yield None
        return

    def deployment(function):
        @serve.deployment(num_replicas=2, max_ongoing_requests=4 * MAX_BATCH)
        class Batched:
            @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.0002)
            async def __call__(self, xs: list) -> list:
                return function(xs)

        return Batched

    serve.start(http_options={"location": "NoServer"})
    yield {
        "busy": serve.run(deployment(busy_rows).bind(), name="busy", route_prefix=None),
        "noop": serve.run(deployment(noop_rows).bind(), name="noop", route_prefix=None),
    }
    serve.shutdown()


def inputs(n: int) -> list[np.ndarray]:
    return [np.full(4, float(i)) for i in range(n)]


def through_executor(executor: Any, spec: ModelSpec, xs: list) -> None:
    futures = [executor.submit(spec, x) for x in xs]
    for future in futures:
        future.result()


def through_serve(handle: Any, xs: list) -> None:
    responses = [handle.remote(x) for x in xs]
    for response in responses:
        response.result()


def _requests(quick: bool, full: int) -> int:
    return max(full // 10, 2 * MAX_BATCH) if quick else full


def _throughput(benchmark: Any, record: Any, row: str, n: int, run: Any, rounds: int) -> None:
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1)
    per_s = n / benchmark.stats["median"]
    benchmark.extra_info["requests_per_s"] = per_s
    record("ray: GIL-bound throughput", row, requests_per_s=round(per_s, 1))


@pytest.mark.parametrize("actors", [1, 2, 4])
def test_throughput_ray_actors(benchmark, record, quick, local_ray, actors):
    benchmark.group = "ray: GIL-bound throughput"
    n = _requests(quick, 400)
    spec = ModelSpec("busy", "1", busy_rows, "tabular", batched=True, device="ray", replicas=actors)
    with RayExecutor(threads=actors, max_batch=MAX_BATCH, max_delay_us=200) as executor:
        executor.start(spec)
        _throughput(benchmark, record, f"RayExecutor, {actors} actor(s)", n,
                    lambda: through_executor(executor, spec, inputs(n)), 1 if quick else 3)


def test_throughput_in_process(benchmark, record, quick):
    benchmark.group = "ray: GIL-bound throughput"
    benchmark.extra_info["baseline"] = True
    n = _requests(quick, 400)
    spec = ModelSpec("busy", "1", busy_rows, "tabular", batched=True, replicas=2)
    with CPUExecutor(threads=2, max_batch=MAX_BATCH, max_delay_us=200) as executor:
        _throughput(benchmark, record, "CPUExecutor (in process, 2 threads)", n,
                    lambda: through_executor(executor, spec, inputs(n)), 1 if quick else 3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_throughput_ray_serve(benchmark, record, quick, serve_handles):
    benchmark.group = "ray: GIL-bound throughput"
    _skip_without_serve(serve_handles, record, benchmark.group, "Ray Serve handle, @serve.batch, 2 replicas")
    n = _requests(quick, 400)
    _throughput(benchmark, record, "Ray Serve handle, @serve.batch, 2 replicas", n,
                lambda: through_serve(serve_handles["busy"], inputs(n)), 3)


def _per_request(benchmark: Any, record: Any, row: str, n: int, run: Any, quick: bool) -> None:
    benchmark.pedantic(run, rounds=1 if quick else 5, warmup_rounds=1)
    us = benchmark.stats["median"] / n * 1e6
    benchmark.extra_info["us_per_request"] = us
    record("ray: per-request overhead", row, us_per_request_in_flight=round(us, 1))


def test_overhead_ray_actor_call(benchmark, record, quick, local_ray):
    benchmark.group = "ray: per-request overhead"
    benchmark.extra_info["baseline"] = True
    n = _requests(quick, 2000)
    actor = ray.remote(RowActor).remote()
    ray.get(actor.run.remote(0))
    xs = inputs(n)
    _per_request(benchmark, record, "Ray actor call per request", n,
                 lambda: ray.get([actor.run.remote(x) for x in xs]), quick)
    record("ray: per-request overhead", "Ray actor call per request",
           us_one_at_a_time=round(_one_at_a_time(lambda x: ray.get(actor.run.remote(x)), xs[:200]), 1))
    ray.kill(actor)


def test_overhead_ray_executor(benchmark, record, quick, local_ray):
    benchmark.group = "ray: per-request overhead"
    n = _requests(quick, 2000)
    spec = ModelSpec("noop", "1", noop_rows, "tabular", batched=True, device="ray")
    with RayExecutor(threads=1, max_batch=256, max_delay_us=200) as executor:
        executor.start(spec)
        xs = inputs(n)
        _per_request(benchmark, record, "RayExecutor (batched)", n, lambda: through_executor(executor, spec, xs), quick)
        record("ray: per-request overhead", "RayExecutor (batched)",
               us_one_at_a_time=round(_one_at_a_time(lambda x: executor.submit(spec, x).result(), xs[:200]), 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_overhead_ray_serve(benchmark, record, quick, serve_handles):
    benchmark.group = "ray: per-request overhead"
    _skip_without_serve(serve_handles, record, benchmark.group, "Ray Serve handle, @serve.batch")
    n = _requests(quick, 2000)
    xs = inputs(n)
    _per_request(benchmark, record, "Ray Serve handle, @serve.batch", n,
                 lambda: through_serve(serve_handles["noop"], xs), quick)


def _skip_without_serve(serve_handles: Any, record: Any, group: str, row: str) -> None:
    if serve_handles is None:
        record(group, row, skipped="--quick or no ray[serve]")
        pytest.skip("Ray Serve is left out in --quick (it takes tens of seconds to start) or not installed")


def _one_at_a_time(call: Any, xs: list) -> float:
    """Median microseconds of one request submitted and awaited alone."""
    times = []
    for x in xs:
        started = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e6)
