"""Where one request's time goes: each stage of route / infer / submit / ainfer, timed
by calling its part directly, beside the baselines a user would otherwise pick.

A no-op model, a 16-float array, one submitting thread. Groups (ratios: baseline
time over the stage's time, so a stage at 0.25 costs four baselines):

- ``request path: route``: pybind11 no-op call (baseline), then the stages of
  ``router.route`` one by one. The general path (Python policies, experiments,
  user features...): ``analyze(x)``, the candidates of its modality, the policy
  decision (default ByModality, and a depth-8 Tree), the registry resolve
  (route) and lease + release (infer/submit), the feedback record, the
  Decision (its reason formatted), ``record_plain`` and ``Decision.make``. The
  native path (decision/fast_path.py, ``native:``), one C++ call per request:
  the plan's choice alone (analyze + tree + modality mask; analyze + ByModality's
  table), the precomputed version resolution, the whole call (``FastRoute.route``:
  choice, version, feedback record and Decision) and its ``hold`` (infer) with
  the hold dropped. Then ``router.route`` whole, for each policy, on the native
  path and (``general path``) with it switched off (what every request did
  before it), and scikit-learn's ``predict`` of the same tree on one row.
- ``request path: infer``: calling the model directly (baseline) vs ``router.infer``,
  on the native and the general path.
- ``request path: submit->result``: ``ThreadPoolExecutor(2).submit(noop, x).result()``
  (baseline); a ``concurrent.futures.Future`` and a ``ResultHandle`` created, settled and
  read (the completion alone); ``CPUExecutor.submit(spec, x).result()`` (enqueue, batch
  wait, model call, completion and wake-up of the waiting thread); and
  ``router.submit(x).result()``.
- ``request path: submit->result, N requests from T threads``: the issue-15 target, N
  requests in all, each thread submitting and waiting in turn: ThreadPoolExecutor(2)
  (baseline) vs ``router.submit(x).result()``, T = 1 and 4, with the executor's
  ``caller_runs`` on (the default: the waiting thread runs its queued request) and off
  (``workers only``: a worker runs it and wakes the waiting thread).
- ``request path: submit->result by spin_us``: how long a waiting ``result()`` (and an idle
  worker) spins before parking, 0 to 100 us, beside ThreadPoolExecutor(2).
- ``request path: breakdown`` (a record table): where one ``router.submit(x).result()``
  round trip goes. ``one native call``: ``router.submit`` itself (analyze, decide, version
  hold, feedback record, Decision, handle, waiting entry, push and the hold linked as the
  handle's done-callback: FastRoute.submit), timed as one "enqueue" column; ``two steps``:
  routing (FastRoute.hold) then enqueue (executor.submit plus the done-callback), as
  every request did before; then queue wait, batch wait, execute (model call and
  settling the batch's handles, hold release included), and the rest: waking the waiting
  thread and handing it the GIL (with caller runs, only what a worker still ran); the
  one native call also with ``caller_runs`` off.
- ``request path: 64 submits then results``: the same in bursts (the wake-up of
  the waiting thread amortised), ThreadPoolExecutor(2) (baseline) vs CPUExecutor.
- ``request path: ainfer, N concurrent``: N concurrent requests on one event loop,
  timed per N: ``loop.run_in_executor(ThreadPoolExecutor(2), noop, x)`` (baseline),
  ``await executor.asubmit(...)`` then awaiting the handle, and ``router.ainfer`` (on
  the native path with queue room: the handle's asyncio future, no task per request).

Run: python -m pytest benchmarks/bench_request_path.py --benchmark-only -p no:randomly
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from fastroute import FEATURE_NAMES, Decision, ModelSpec, ResultHandle, Router, Tree, _core
from fastroute.analyzer import analyze
from fastroute.executors import CPUExecutor

MODELS = ["m0", "m1", "m2", "m3"]
X = np.linspace(-1.0, 1.0, 16, dtype=np.float32)
BURST = 64


def noop(x):
    return x


def make_tree() -> tuple[DecisionTreeClassifier, Tree]:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(20_000, len(FEATURE_NAMES))).astype(np.float32)
    labels = (rows[:, 0] + rows[:, 1] * rows[:, 2] > 0).astype(int) + 2 * (rows[:, 3] > 0.3)
    estimator = DecisionTreeClassifier(max_depth=8, random_state=0).fit(rows, labels)
    return estimator, Tree.from_sklearn(estimator, MODELS)


@pytest.fixture(scope="module")
def tree_pair():
    return make_tree()


def make_router(policy=None, caller_runs: int = 1) -> Router:
    # Queues hold every request of the 100,000-concurrent asyncio runs (a ThreadPoolExecutor's are unbounded).
    executor = CPUExecutor(threads=1, max_batch=256, max_delay_us=0, queue_capacity=1 << 17, caller_runs=caller_runs)
    router = Router(policy, executor=executor)
    for name in MODELS:
        router.register(name, noop, modality="tabular")
    return router


class _Declines:
    """A native path that declines every request (``router._fast_path``)."""

    @staticmethod
    def route(*args):
        return None

    hold = hold_only = submit = ainfer = route


def general_path_only(router: Router) -> Router:
    """``router`` with the native path switched off: every request takes the general path."""
    router._fast_path = _Declines()
    return router


@pytest.fixture(scope="module")
def routers(tree_pair):
    made = {
        "default": make_router(),
        "tree": make_router(tree_pair[1]),
        "default, general path": general_path_only(make_router()),
        "tree, general path": general_path_only(make_router(tree_pair[1])),
        "default, workers only": make_router(caller_runs=0),
    }
    yield made
    for router in made.values():
        router.close()


# ---- route: each stage, then the whole --------------------------------------------


def test_pybind11_noop(benchmark):
    benchmark.group = "request path: route"
    benchmark.extra_info["baseline"] = True
    benchmark(_core.noop, X)


def test_stage_analyze(benchmark):
    benchmark.group = "request path: route"
    benchmark(analyze, X)


def test_stage_candidates(benchmark, routers):
    benchmark.group = "request path: route"
    catalog, modality = routers["default"].models.catalog, analyze(X).modality
    benchmark(catalog.for_modality, modality)


@pytest.mark.parametrize("policy", ["default", "tree"])
def test_stage_decide(benchmark, routers, policy):
    benchmark.group = "request path: route"
    router = routers[policy]
    analysis = analyze(X)
    candidates = router.models.catalog.for_modality(analysis.modality)
    benchmark(router.policy.select, analysis, candidates)


def test_stage_resolve(benchmark, routers):
    benchmark.group = "request path: route"
    benchmark(routers["default"].models.resolve, "m0")


def test_stage_lease_release(benchmark, routers):
    benchmark.group = "request path: route"
    models = routers["default"].models

    def lease_and_release():
        models.lease("m0").release()

    benchmark(lease_and_release)


def test_stage_feedback_record(benchmark, routers):
    benchmark.group = "request path: route"
    router = routers["default"]
    choice = router.policy.select(analyze(X), router.models.catalog.for_modality("tabular"))
    benchmark(router.feedback_store.record, choice, cost=0.0)


def test_stage_decision_object(benchmark, routers):
    """The Decision a request returns, its reason string formatted."""
    benchmark.group = "request path: route"
    router = routers["default"]
    analysis = analyze(X)
    choice = router.policy.select(analysis, router.models.catalog.for_modality(analysis.modality))
    spec, version_reason = router.models.resolve(choice.model)
    benchmark(Decision.of, choice, spec.version, analysis, version_reason, "id")


def test_native_stage_scorer_plan(benchmark, routers):
    """Analyze, the depth-8 tree and the per-modality mask: the plan's choice, one native call."""
    benchmark.group = "request path: route"
    router = routers["tree"]
    state = router.policy._state
    plan = _core.RoutePlan(state.scorer, state.masks.for_modalities(router.models.catalog.for_modality))
    benchmark(plan.choose, X, None)


def test_native_stage_by_modality_plan(benchmark, routers):
    """ByModality's choice, planned per catalog: analyze + a table lookup, one native call."""
    benchmark.group = "request path: route"
    plan = _core.RoutePlan.by_modality([0] + [_core.NO_MODEL] * 6, 1)
    benchmark(plan.choose, X, None)


@pytest.mark.parametrize("policy", ["default", "tree"])
def test_native_stage_fast_route(benchmark, routers, policy):
    """The whole native call of router.route: analyze, choose, resolve, record, Decision."""
    benchmark.group = "request path: route"
    router = routers[policy]
    benchmark(router._fast_path.route, router.policy, router.feedback_store, X, None, None)


def test_native_stage_resolve(benchmark, routers):
    benchmark.group = "request path: route"
    benchmark(routers["default"].models.catalog.resolved.get, "m0")


def test_native_stage_hold_drop(benchmark, routers):
    """router.infer's native call (route and the version held), then the hold dropped."""
    benchmark.group = "request path: route"
    router = routers["default"]
    fast, policy, store = router._fast_path, router.policy, router.feedback_store

    def hold_and_drop():
        fast.hold(policy, store, X, None, None)[1].in_flight.drop()

    benchmark(hold_and_drop)


def test_native_stage_record_plain(benchmark, routers):
    benchmark.group = "request path: route"
    benchmark(routers["default"].feedback_store.record_plain, "m0", 0.0)


def test_native_stage_decision_make(benchmark):
    benchmark.group = "request path: route"
    analysis = analyze(X)
    reason = ("registered for modality 'tabular'", "latest version '1'")
    benchmark(Decision.make, "m0", "1", analysis.modality, reason, None, "id-1", 1.0, analysis)


@pytest.mark.parametrize("policy", ["default", "tree", "default, general path", "tree, general path"])
def test_route_whole(benchmark, routers, policy):
    benchmark.group = "request path: route"
    router = routers[policy]
    assert router.route(X).model in MODELS
    benchmark(router.route, X)


def test_sklearn_tree_one_row(benchmark, tree_pair):
    benchmark.group = "request path: route"
    estimator, _ = tree_pair
    row = analyze(X).features.reshape(1, -1)
    benchmark(estimator.predict, row)


# ---- infer --------------------------------------------------------------------------


def test_model_direct(benchmark):
    benchmark.group = "request path: infer"
    benchmark.extra_info["baseline"] = True
    benchmark(noop, X)


@pytest.mark.parametrize("policy", ["default", "tree", "default, general path", "tree, general path"])
def test_infer(benchmark, routers, policy):
    benchmark.group = "request path: infer"
    router = routers[policy]
    assert router.infer(X) is X
    benchmark(router.infer, X)


# ---- submit -> result ---------------------------------------------------------------


def test_threadpool_submit_result(benchmark):
    benchmark.group = "request path: submit->result"
    benchmark.extra_info["baseline"] = True
    with ThreadPoolExecutor(2) as pool:
        benchmark(lambda: pool.submit(noop, X).result())


def test_stage_future_complete(benchmark):
    """Creating, resolving and reading a concurrent.futures.Future: the completion alone."""
    benchmark.group = "request path: submit->result"

    def complete():
        future: Future = Future()
        future.set_result(X)
        return future.result()

    benchmark(complete)


def test_stage_handle_complete(benchmark):
    """The same with the C++ ResultHandle every submit returns."""
    benchmark.group = "request path: submit->result"

    def complete():
        handle = ResultHandle()
        handle.set_running_or_notify_cancel()
        handle.set_result(X)
        return handle.result()

    benchmark(complete)


def test_stage_executor_submit_result(benchmark, routers):
    """Enqueue + batch wait + model call + completion + wake-up of this thread."""
    benchmark.group = "request path: submit->result"
    router = routers["default"]
    spec = router.models.resolve("m0")[0]
    executor = router.executor
    benchmark(lambda: executor.submit(spec, X).result())


@pytest.mark.parametrize("side", ["threadpool", "executor"])
def test_burst(benchmark, routers, quick, side):
    """Per round, BURST submits then their results: the wake-up of a waiting thread amortised."""
    benchmark.group = f"request path: {BURST} submits then results"
    router = routers["default"]
    spec = router.models.resolve("m0")[0]
    pool = ThreadPoolExecutor(2)
    if side == "threadpool":
        benchmark.extra_info["baseline"] = True
        submit = lambda: pool.submit(noop, X)  # noqa: E731
    else:
        submit = lambda: router.executor.submit(spec, X)  # noqa: E731

    def run():
        for future in [submit() for _ in range(BURST)]:
            future.result()

    with pool:
        benchmark.pedantic(run, rounds=20 if quick else 500, iterations=1, warmup_rounds=1)
    _per_request(benchmark, BURST)


def test_router_submit_result(benchmark, routers):
    benchmark.group = "request path: submit->result"
    router = routers["default"]
    assert router.submit(X).result() is X
    benchmark(lambda: router.submit(X).result())


# ---- many round trips, from 1 and 4 threads -------------------------------------------


def round_trips(quick: bool) -> int:
    return 2_000 if quick else 100_000


def _each_thread_waits_in_turn(submit, total: int, threads: int) -> None:
    """``total`` round trips, split over ``threads`` threads each doing submit().result() in turn."""

    def one_thread():
        for _ in range(total // threads):
            submit().result()

    workers = [threading.Thread(target=one_thread) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("side", ["threadpool", "router", "router, workers only"])
def test_round_trips(benchmark, routers, quick, threads, side):
    total = round_trips(quick)
    benchmark.group = f"request path: submit->result, {total} requests from {threads} thread(s)"
    pool = ThreadPoolExecutor(2)
    if side == "threadpool":
        benchmark.extra_info["baseline"] = True
        submit = lambda: pool.submit(noop, X)  # noqa: E731
    else:
        router = routers["default" if side == "router" else "default, workers only"]
        submit = lambda: router.submit(X)  # noqa: E731
    with pool:
        benchmark.pedantic(_each_thread_waits_in_turn, args=(submit, total, threads), rounds=1 if quick else 3)
    _per_request(benchmark, total)


@pytest.mark.parametrize("spin_us", [0, 5, 20, 100, "threadpool"])
def test_spin_lengths(benchmark, spin_us):
    benchmark.group = "request path: submit->result by spin_us"
    if spin_us == "threadpool":
        benchmark.extra_info["baseline"] = True
        with ThreadPoolExecutor(2) as pool:
            benchmark(lambda: pool.submit(noop, X).result())
        return
    spec = ModelSpec("m0", "1", noop, "tabular")
    with CPUExecutor(threads=1, max_batch=256, max_delay_us=0, spin_us=spin_us) as executor:
        benchmark(lambda: executor.submit(spec, X).result())


BREAKDOWN_ROWS = {
    "one call": "one native call (route, hold, enqueue), caller runs",
    "two steps": "two steps (route + hold, then executor.submit), caller runs",
    "workers only": "one native call, workers only (caller_runs=0)",
}


@pytest.mark.parametrize("path", list(BREAKDOWN_ROWS))
def test_breakdown(benchmark, quick, record, path):
    """One router.submit(x).result() round trip, stage by stage (see the module docstring)."""
    benchmark.group = "request path: breakdown"
    n = 1_000 if quick else 20_000
    router = make_router(caller_runs=0 if path == "workers only" else 1)
    executor = router.executor
    router.submit(X).result()  # a model's first request starts its lanes (the general path): not timed
    timings = {"total": 0.0, "route": 0.0, "enqueue": 0.0}

    def two_steps():
        for _ in range(n):
            started = time.perf_counter()
            _, spec, end, args = router._decide_held(X, None, None, None, (executor, "normal", None))
            routed = time.perf_counter()
            handle = executor.submit(spec, X)
            queued = time.perf_counter()
            handle.add_done_callback(end, *args)
            handle.result()
            ended = time.perf_counter()
            timings["route"] += routed - started
            timings["enqueue"] += queued - routed
            timings["total"] += ended - started

    def one_call():
        for _ in range(n):
            started = time.perf_counter()
            handle = router.submit(X)
            queued = time.perf_counter()
            handle.result()
            ended = time.perf_counter()
            timings["enqueue"] += queued - started  # route, hold and enqueue together
            timings["total"] += ended - started

    try:
        before = _summed_stages(executor, router)
        benchmark.pedantic(two_steps if path == "two steps" else one_call, rounds=1, iterations=1)
        stages = _stages_since(before, _summed_stages(executor, router))
    finally:
        router.close()
    per_request_us = {name: seconds / n * 1e6 for name, seconds in timings.items()}
    waits = {stage: stages[stage][1] / n / 1e3 for stage in ("queue_wait", "batch_wait", "execute")}
    rest = per_request_us["total"] - per_request_us["route"] - per_request_us["enqueue"] - sum(waits.values())
    record(
        "request path: breakdown (us per router.submit(x).result(), one thread)",
        BREAKDOWN_ROWS[path],
        route=round(per_request_us["route"], 2) if path == "two steps" else "(in enqueue)",
        enqueue=round(per_request_us["enqueue"], 2),
        route_and_enqueue=round(per_request_us["route"] + per_request_us["enqueue"], 2),
        queue_wait=round(waits["queue_wait"], 2),
        batch_wait=round(waits["batch_wait"], 2),
        execute_and_complete=round(waits["execute"], 2),
        wake_up_and_gil=round(rest, 2),
        total=round(per_request_us["total"], 2),
        requests_per_batch=round(n / max(sum(stages["batch_size"][0]), 1), 2),
    )


def _stages_since(before: dict, after: dict) -> dict:
    """The stage histograms' counts and sums recorded between two snapshots."""
    return {
        stage: ([a - b for a, b in zip(counts, before.get(stage, ([0] * len(counts), 0))[0])],
                total - before.get(stage, (None, 0))[1])
        for stage, (counts, total) in after.items()
    }


def _summed_stages(executor: CPUExecutor, router: Router) -> dict:
    """The stage histograms of every model of ``router`` (the policy spreads requests over them)."""
    summed: dict = {}
    for spec in router.models.list():
        for stage, (counts, total) in executor.stages(spec).items():
            so_far, so_far_total = summed.get(stage, ([0] * len(counts), 0))
            summed[stage] = ([a + b for a, b in zip(so_far, counts)], so_far_total + total)
    return summed


# ---- ainfer, N concurrent on one loop -------------------------------------------------


def concurrent_requests(quick: bool) -> int:
    return 2_000 if quick else 100_000


def _per_request(benchmark, n: int) -> None:
    """pytest-benchmark times whole rounds of n requests: keep its ratios, also note per-request us."""
    benchmark.extra_info["requests_per_round"] = n
    benchmark.extra_info["us_per_request_median"] = benchmark.stats["median"] / n * 1e6


def _time_concurrent(benchmark, quick: bool, request) -> None:
    """Times rounds of N concurrent ``await request(loop)`` on one fresh event loop."""
    n = concurrent_requests(quick)
    benchmark.group = "request path: ainfer, N concurrent"
    loop = asyncio.new_event_loop()

    async def run():
        results = await asyncio.gather(*(request(loop) for _ in range(n)))
        assert all(result is X for result in results)

    try:
        benchmark.pedantic(lambda: loop.run_until_complete(run()), rounds=3, iterations=1)
    finally:
        loop.close()
    _per_request(benchmark, n)


def test_run_in_executor(benchmark, quick):
    benchmark.extra_info["baseline"] = True
    with ThreadPoolExecutor(2) as pool:
        _time_concurrent(benchmark, quick, lambda loop: loop.run_in_executor(pool, noop, X))


def test_executor_asubmit(benchmark, routers, quick):
    router = routers["default"]
    spec = router.models.resolve("m0")[0]
    executor = router.executor

    async def one(loop):
        return await (await executor.asubmit(spec, X))

    _time_concurrent(benchmark, quick, one)


def test_router_ainfer(benchmark, routers, quick):
    router = routers["default"]
    _time_concurrent(benchmark, quick, lambda loop: router.ainfer(X))
