"""Where one request's time goes: each stage of route / infer / submit / ainfer, timed
by calling its part directly, beside the baselines a user would otherwise pick.

A no-op model, a 16-float array, one submitting thread. Groups (ratios: baseline
time over the stage's time, so a stage at 0.25 costs four baselines):

- ``request path: route``: pybind11 no-op call (baseline), then the stages of
  ``router.route`` one by one. The general path (Python policies, experiments,
  user features...): ``analyze(x)``, the candidates of its modality, the policy
  decision (default ByModality, and a depth-8 Tree), the registry resolve
  (route) and lease + release (infer/submit), the feedback record, the
  Decision (its reason formatted). The native path (decision/fast_path.py,
  ``native:``): ``Scorer.route`` (analyze + tree + modality mask in one call),
  ByModality's planned choice (analyze + a table lookup), the precomputed
  version resolution, the lock-free hold + drop (infer), ``record_plain`` and
  ``Decision.make``. Then ``router.route`` whole, for each policy, on the
  native path and (``general path``) with it switched off (what every request
  did before it), and scikit-learn's ``predict`` of the same tree on one row.
- ``request path: infer``: calling the model directly (baseline) vs ``router.infer``,
  on the native and the general path.
- ``request path: submit->result``: ``ThreadPoolExecutor(2).submit(noop, x).result()``
  (baseline); a ``concurrent.futures.Future`` created, resolved and read (the
  completion alone); ``CPUExecutor.submit(spec, x).result()`` (enqueue, batch
  wait, model call, completion and wake-up of the waiting thread); and
  ``router.submit(x).result()``.
- ``request path: 64 submits then results``: the same in bursts (the wake-up of
  the waiting thread amortised), ThreadPoolExecutor(2) (baseline) vs CPUExecutor.
- ``request path: ainfer, N concurrent``: N concurrent requests on one event loop,
  timed per N: ``loop.run_in_executor(ThreadPoolExecutor(2), noop, x)`` (baseline),
  ``executor.asubmit`` + ``asyncio.wrap_future``, and ``router.ainfer``.

Run: python -m pytest benchmarks/bench_request_path.py --benchmark-only -p no:randomly
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from fastroute import FEATURE_NAMES, Decision, Router, Tree, _core
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


def make_router(policy=None) -> Router:
    router = Router(policy, executor=CPUExecutor(threads=1, max_batch=256, max_delay_us=0))
    for name in MODELS:
        router.register(name, noop, modality="tabular")
    return router


def general_path_only(router: Router) -> Router:
    """``router`` with the native path switched off: every request takes the general path."""
    router._fast_path.decide = lambda *args, **kwargs: None
    return router


@pytest.fixture(scope="module")
def routers(tree_pair):
    made = {
        "default": make_router(),
        "tree": make_router(tree_pair[1]),
        "default, general path": general_path_only(make_router()),
        "tree, general path": general_path_only(make_router(tree_pair[1])),
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


def test_native_stage_scorer_route(benchmark, routers):
    """Analyze, the depth-8 tree and the per-modality mask: one native call."""
    benchmark.group = "request path: route"
    router = routers["tree"]
    state = router.policy._state
    mask = state.masks.for_modalities(router.models.catalog.for_modality)
    benchmark(state.scorer.route, X, None, mask)


def test_native_stage_by_modality(benchmark, routers):
    """ByModality's choice, planned per catalog: analyze + a table lookup."""
    from fastroute.decision.fast_path import _ByModalityPlan

    benchmark.group = "request path: route"
    router = routers["default"]
    plan = _ByModalityPlan(router.policy, router.models.catalog)
    benchmark(plan.choose, X, None)


def test_native_stage_resolve(benchmark, routers):
    benchmark.group = "request path: route"
    benchmark(routers["default"].models.catalog.resolved.get, "m0")


def test_native_stage_hold_drop(benchmark, routers):
    benchmark.group = "request path: route"
    models = routers["default"].models

    def hold_and_drop():
        models.hold_default("m0").in_flight.drop()

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


# ---- ainfer, N concurrent on one loop -------------------------------------------------


def concurrent_requests(quick: bool) -> int:
    return 500 if quick else 10_000


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
        benchmark.pedantic(lambda: loop.run_until_complete(run()), rounds=3 if quick else 10, iterations=1)
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
