"""Dispatch benchmarks, each beside its baseline (pytest-benchmark groups).

- ``noop submit->result``: N requests to a no-op model, submitted from one
  Python thread then awaited: CPUExecutor vs ThreadPoolExecutor.submit vs a
  queue.Queue worker loop resolving Futures.
- ``micro-batching``: a model costing 50 us per call + 1 us per row (busy
  wait, GIL held, as pure-Python models do), 8 submitting threads: throughput
  with batching (max_batch=64) vs one request per call (max_batch=1), all
  requests submitted at once; and, in a closed loop (each thread waits for
  its result before the next submit), p50/p99 latency from submit to result,
  stored in extra_info and printed beside the bound max_delay + one call + 20%; and in an
  open loop at half the capacity measured with the same per-request work (8 threads
  submitting on a fixed schedule), p50/p99 from submit to settled, recorded beside the
  same bound with the paced run's stage means (queue wait, batch wait, execute).
- ``queue 1P1C`` / ``queue 2P2C``: the C++ queue alone (benchmarks/cpp/bench_queue.cpp,
  8-byte items) vs moodycamel::ConcurrentQueue and a mutex+deque, built here
  with the system compiler; skipped if the compiler or libconcurrentqueue-dev
  is missing.

Run: python -m pytest benchmarks/bench_dispatch.py --benchmark-only -p no:randomly
"""

from __future__ import annotations

import math
import queue
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastroute import ModelSpec
from fastroute.executors import CPUExecutor

ROOT = Path(__file__).resolve().parents[1]
NOOP_REQUESTS = 20_000
BATCH_REQUESTS = 16_000
SUBMITTERS = 8
MAX_DELAY_US = 500
MAX_BATCH = 64
QUEUE_ITEMS = 4_000_000


def noop(x):
    return x


def run_noop_fastroute(executor: CPUExecutor, spec: ModelSpec) -> None:
    futures = [executor.submit(spec, i) for i in range(NOOP_REQUESTS)]
    for future in futures:
        future.result()


def test_noop_fastroute(benchmark, quick):
    benchmark.group = "noop submit->result"
    spec = ModelSpec("noop", "1", noop, "tabular")
    with CPUExecutor(threads=1, max_batch=256, max_delay_us=0, queue_capacity=1 << 15) as executor:
        benchmark.pedantic(run_noop_fastroute, args=(executor, spec), rounds=1 if quick else 5, warmup_rounds=0 if quick else 1)
    benchmark.extra_info["requests_per_s"] = NOOP_REQUESTS / benchmark.stats["mean"]


def test_noop_threadpool(benchmark, quick):
    benchmark.group = "noop submit->result"
    benchmark.extra_info["baseline"] = True

    def run(pool):
        futures = [pool.submit(noop, i) for i in range(NOOP_REQUESTS)]
        for future in futures:
            future.result()

    with ThreadPoolExecutor(max_workers=1) as pool:
        benchmark.pedantic(run, args=(pool,), rounds=1 if quick else 5, warmup_rounds=0 if quick else 1)
    benchmark.extra_info["requests_per_s"] = NOOP_REQUESTS / benchmark.stats["mean"]


def test_noop_queue_worker_loop(benchmark, quick):
    benchmark.group = "noop submit->result"
    requests: queue.Queue = queue.Queue()

    def worker():
        while (item := requests.get()) is not None:
            future, x = item
            if future.set_running_or_notify_cancel():
                future.set_result(noop(x))

    thread = threading.Thread(target=worker)
    thread.start()

    def run():
        futures = []
        for i in range(NOOP_REQUESTS):
            future: Future = Future()
            requests.put((future, i))
            futures.append(future)
        for future in futures:
            future.result()

    try:
        benchmark.pedantic(run, rounds=1 if quick else 5, warmup_rounds=0 if quick else 1)
    finally:
        requests.put(None)
        thread.join()
    benchmark.extra_info["requests_per_s"] = NOOP_REQUESTS / benchmark.stats["mean"]


def costly_model(xs):
    """50 us per call + 1 us per row, spent holding the GIL like Python model code."""
    end = time.perf_counter() + (50 + len(xs)) * 1e-6
    while time.perf_counter() < end:
        pass
    return xs


def run_submitters(executor: CPUExecutor, spec: ModelSpec, closed_loop: bool, latencies: list[float]) -> None:
    """8 threads submit BATCH_REQUESTS in all: all at once (open loop), or each
    waiting for its previous result (closed loop, 8 requests in flight; each
    latency, submit to result, is appended to ``latencies``)."""
    per_thread = BATCH_REQUESTS // SUBMITTERS // (8 if closed_loop else 1)

    def submit_all():
        futures = []
        for i in range(per_thread):
            started = time.perf_counter()
            future = executor.submit(spec, i, timeout=60)
            if closed_loop:
                future.result()
                latencies.append(time.perf_counter() - started)
            futures.append(future)
        for future in futures:
            future.result()

    threads = [threading.Thread(target=submit_all) for _ in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("max_batch", [MAX_BATCH, 1], ids=["batching", "no-batching"])
def test_micro_batching_throughput(benchmark, max_batch, quick):
    benchmark.group = "micro-batching 50us+1us/row, 8 submitters, open loop"
    benchmark.extra_info["baseline"] = max_batch == 1
    spec = ModelSpec("costly", "1", costly_model, "tabular", batched=True)
    with CPUExecutor(threads=2, max_batch=max_batch, max_delay_us=MAX_DELAY_US) as executor:
        benchmark.pedantic(run_submitters, args=(executor, spec, False, []), rounds=1 if quick else 3)
    benchmark.extra_info["requests_per_s"] = BATCH_REQUESTS / benchmark.stats["mean"]


def test_micro_batching_latency(benchmark, quick):
    """Closed loop (8 in flight, below capacity): p99 vs max_delay + one model call + 20%."""
    benchmark.group = "micro-batching latency, 8 submitters, closed loop"
    spec = ModelSpec("costly", "1", costly_model, "tabular", batched=True)
    latencies: list[float] = []
    with CPUExecutor(threads=2, max_batch=MAX_BATCH, max_delay_us=MAX_DELAY_US) as executor:
        benchmark.pedantic(run_submitters, args=(executor, spec, True, latencies), rounds=1 if quick else 3)
    p50, p99 = np.percentile(np.array(latencies) * 1e6, [50, 99])
    bound_us = (MAX_DELAY_US + 50 + SUBMITTERS) * 1.2  # one call on at most 8 rows
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, p99_bound_us=bound_us)
    print(f"\nclosed loop: p50 {p50:.0f} us, p99 {p99:.0f} us (bound {bound_us:.0f} us)")


def test_micro_batching_open_loop_p99(benchmark, quick, record):
    """Open loop at half the executor's capacity: p99 from submit to result vs max_delay + one call + 20%.

    The capacity is measured first with the same per-request work as the paced run (submit,
    a done-callback timing each request) but every request submitted at once; then 8 threads
    submit on a fixed schedule at half that rate, whatever the results (open loop), and each
    request's latency runs from its submit to the moment a worker settles it. One call is
    50 us + 1 us per row at the mean batch size of the paced run. Beside p50/p99: the paced
    run's mean queue wait, batch wait and execute (GIL wait included) per batch, from the
    dispatcher's stage histograms, the rate served, and the share of the run the lane spent
    executing (its real load: the submitters share the GIL with the model, so half the
    capacity measured without pauses may load the lane more than half).
    """
    benchmark.group = "micro-batching latency, 8 submitters, open loop at 50% load"
    spec = ModelSpec("costly", "1", costly_model, "tabular", batched=True)
    requests = 2_000 if quick else BATCH_REQUESTS
    latencies: list[float] = []
    with CPUExecutor(threads=2, max_batch=MAX_BATCH, max_delay_us=MAX_DELAY_US, queue_capacity=1 << 15) as executor:
        capacity = BATCH_REQUESTS / _paced_submitters(executor, spec, math.inf, BATCH_REQUESTS, [])
        rate = capacity / 2
        before = executor.stages(spec)
        served_s = benchmark.pedantic(_paced_submitters, args=(executor, spec, rate, requests, latencies),
                                       rounds=1, iterations=1)
        after = executor.stages(spec)
        paced = _stage_means(before, after)
        busy_s = (after["execute"][1] - before["execute"][1]) / 1e9
    p50, p99 = np.percentile(np.array(latencies) * 1e6, [50, 99])
    bound_us = (MAX_DELAY_US + 50 + paced["batch_size"]) * 1.2
    figures = dict(capacity_per_s=round(capacity), offered_per_s=round(rate), served_per_s=round(requests / served_s),
                   p50_us=round(p50), p99_us=round(p99), bound_us=round(bound_us),
                   mean_batch=round(paced["batch_size"], 1), queue_wait_us=round(paced["queue_wait"] / 1e3),
                   batch_wait_us=round(paced["batch_wait"] / 1e3), execute_us=round(paced["execute"] / 1e3),
                   lane_busy=round(busy_s / served_s, 2),
                   within_bound=bool(p99 <= bound_us))
    benchmark.extra_info.update(figures)
    record("micro-batching: open loop at 50% of capacity (latency submit -> settled)", "max_batch=64, max_delay 500 us",
           **figures)


def _stage_means(before: dict, after: dict) -> dict[str, float]:
    """Each stage's mean (ns; batch_size: requests) over what was recorded between two
    ``CPUExecutor.stages`` snapshots."""
    means = {}
    for stage, (counts, total) in after.items():
        earlier_counts, earlier_total = before.get(stage, ([0] * len(counts), 0))
        recorded = sum(counts) - sum(earlier_counts)
        means[stage] = (total - earlier_total) / recorded if recorded else 0.0
    return means


def _paced_submitters(executor: CPUExecutor, spec: ModelSpec, rate: float, requests: int, latencies: list) -> float:
    """SUBMITTERS threads submit ``requests`` in all at ``rate`` per second together (math.inf:
    all at once), each on a fixed schedule (sleeping between submits, never waiting for results);
    each request's latency (submit -> settled by a worker) is appended to ``latencies``.
    Returns the seconds from the start to the last result."""
    interval = SUBMITTERS / rate
    per_thread = requests // SUBMITTERS
    handles: list = []

    def settled(started: float, handle) -> None:
        latencies.append(time.perf_counter() - started)

    def submit_on_schedule(offset: float):
        due = time.perf_counter() + offset
        for i in range(per_thread):
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            submitted = time.perf_counter()
            handle = executor.submit(spec, i, timeout=60)
            handle.add_done_callback(settled, submitted)
            handles.append(handle)
            due += interval

    started = time.perf_counter()
    threads = [threading.Thread(target=submit_on_schedule, args=(k * interval / SUBMITTERS,)) for k in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for handle in handles:
        handle.result()
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def queue_bench_binary(tmp_path_factory) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None or not Path("/usr/include/concurrentqueue/concurrentqueue.h").exists():
        pytest.skip("needs a C++ compiler and libconcurrentqueue-dev (/usr/include/concurrentqueue)")
    binary = tmp_path_factory.mktemp("bench") / "bench_queue"
    subprocess.run(
        [compiler, "-O2", "-std=c++20", "-pthread", f"-I{ROOT / 'csrc'}", str(ROOT / "benchmarks/cpp/bench_queue.cpp"),
         "-o", str(binary)],
        check=True,
    )
    return binary


@pytest.mark.parametrize("threads", [(1, 1), (2, 2)], ids=["1P1C", "2P2C"])
@pytest.mark.parametrize("impl", ["fastroute", "moodycamel", "mutex"])
def test_queue_cpp(benchmark, queue_bench_binary, impl, threads, quick):
    benchmark.group = f"queue {threads[0]}P{threads[1]}C, 8-byte items"
    benchmark.extra_info["baseline"] = impl == "moodycamel"
    rates: list[float] = []

    def run():
        out = subprocess.run(
            [str(queue_bench_binary), impl, str(threads[0]), str(threads[1]), str(QUEUE_ITEMS // (100 if quick else 1))],
            check=True, capture_output=True, text=True,
        )
        rates.append(float(out.stdout))

    benchmark.pedantic(run, rounds=1 if quick else 5)
    benchmark.extra_info["items_per_s_median"] = float(np.median(rates))
