"""Decision engine: fastroute's compiled scorer vs scikit-learn predict on the same fitted model.

Each measurement sits beside its baseline in one benchmark group. Every call
scores fresh rows (a different row or slice each time), so neither side gets
to let the branch predictor memorise one small batch.

Run: python -m pytest benchmarks/bench_decision.py --benchmark-only -p no:randomly
"""

import itertools

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from fastroute import FEATURE_NAMES, Forest, Tree, _core

N_FEATURES = len(FEATURE_NAMES)  # the schema's width, so the same trees serve a Router
MODELS = ["m0", "m1", "m2", "m3"]


def make_rows(n, seed):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.02] = np.nan  # some missing features, as in real logs
    return rows


def make_labels(rows, seed):
    clean = np.nan_to_num(rows)
    labels = (clean[:, 0] + clean[:, 1] * clean[:, 2] > 0).astype(int) + 2 * (clean[:, 3] > 0.3)
    noise = np.random.default_rng(seed).random(len(rows)) < 0.1
    return np.where(noise, np.random.default_rng(seed + 1).integers(0, 4, len(rows)), labels)


@pytest.fixture(scope="module")
def tree_pair():
    rows = make_rows(50_000, 0)
    estimator = DecisionTreeClassifier(max_depth=8, random_state=0).fit(rows, make_labels(rows, 0))
    return estimator, Tree.from_sklearn(estimator, MODELS)


@pytest.fixture(scope="module")
def forest_pair():
    rows = make_rows(20_000, 1)
    estimator = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    estimator.fit(rows, make_labels(rows, 1))
    return estimator, Forest.from_sklearn(estimator, MODELS)


@pytest.fixture(scope="module")
def million_rows(quick):
    """Two different 1,000,000-row matrices (20,000 under --quick), used alternately."""
    n = 20_000 if quick else 1_000_000
    return [make_rows(n, 10), make_rows(n, 11)]


def slices(batch, pool=200_000):
    """An endless cycle of different (batch, F) slices of a fresh-row pool."""
    rows = make_rows(max(pool, batch), 2)
    starts = range(0, len(rows) - batch + 1, batch)
    return itertools.cycle([np.ascontiguousarray(rows[s : s + batch]) for s in starts])


@pytest.mark.parametrize("batch", [1, 64, 4096])
@pytest.mark.parametrize("side", ["fastroute", "sklearn"])
def test_tree_predict(benchmark, tree_pair, batch, side):
    estimator, policy = tree_pair
    benchmark.group = f"depth-8 tree, batch {batch}"
    benchmark.extra_info["baseline"] = side == "sklearn"
    predict = policy.predict if side == "fastroute" else estimator.predict
    pool = slices(batch)
    sample = next(pool)
    np.testing.assert_array_equal(policy.predict(sample), estimator.predict(sample))
    benchmark(lambda: predict(next(pool)))


@pytest.mark.parametrize("side", ["fastroute", "sklearn"])
def test_tree_predict_million(benchmark, tree_pair, million_rows, side, quick):
    estimator, policy = tree_pair
    benchmark.group = "depth-8 tree, batch 1,000,000 (single thread)"
    benchmark.extra_info["baseline"] = side == "sklearn"
    predict = (lambda rows: policy.predict(rows, threads=1)) if side == "fastroute" else estimator.predict
    pool = itertools.cycle(million_rows)
    benchmark.pedantic(lambda: predict(next(pool)), rounds=1 if quick else 6, iterations=1, warmup_rounds=0 if quick else 1)


@pytest.mark.parametrize("walk", _core.TREE_WALKS)
def test_tree_walk_kernels_million(benchmark, tree_pair, million_rows, walk, quick):
    """The leaf of every row through each walk kernel, forced (the scalar walk is the baseline;
    predict uses the fastest this CPU supports): what the vector walks gain on this CPU."""
    if walk not in _core.supported_tree_walks():
        pytest.skip(f"this CPU cannot run the {walk} walk")
    _, policy = tree_pair
    scorer = policy._state.scorer
    benchmark.group = "depth-8 tree walk kernels, 1,000,000 rows (single thread)"
    benchmark.extra_info["baseline"] = walk == "scalar"
    np.testing.assert_array_equal(scorer.leaves(million_rows[0][:4096], walk=walk),
                                  scorer.leaves(million_rows[0][:4096], walk="scalar"))
    pool = itertools.cycle(million_rows)
    benchmark.pedantic(lambda: scorer.leaves(next(pool), walk=walk), rounds=1 if quick else 6, iterations=1,
                       warmup_rounds=0 if quick else 1)


@pytest.mark.parametrize("side", ["fastroute", "sklearn"])
def test_forest_predict_million(benchmark, forest_pair, million_rows, side, quick):
    estimator, policy = forest_pair
    benchmark.group = "forest of 100 depth-8 trees, batch 1,000,000 (single thread)"
    benchmark.extra_info["baseline"] = side == "sklearn"
    check = million_rows[0][:20_000]
    np.testing.assert_array_equal(policy.predict(check), estimator.predict(check))
    predict = (lambda rows: policy.predict(rows, threads=1)) if side == "fastroute" else estimator.predict
    pool = itertools.cycle(million_rows)
    benchmark.pedantic(lambda: predict(next(pool)), rounds=1 if quick else 2, iterations=1)


def test_tree_predict_million_threaded(benchmark, tree_pair, million_rows, quick):
    """The same tree with the batch scorer's threads (all cores); compare with the single-thread group."""
    _, policy = tree_pair
    benchmark.group = "depth-8 tree, batch 1,000,000 (all cores)"
    pool = itertools.cycle(million_rows)
    benchmark.pedantic(
        lambda: policy.predict(next(pool), threads=0), rounds=1 if quick else 6, iterations=1, warmup_rounds=0 if quick else 1
    )


@pytest.mark.parametrize("side", ["fastroute.noop", "fastroute.route", "sklearn"])
def test_route_one_input(benchmark, tree_pair, side):
    """End to end: analyze + score a small array, vs one-row sklearn predict and a no-op binding call."""
    from fastroute import Router

    estimator, policy = tree_pair
    benchmark.group = "route one small array end to end"
    benchmark.extra_info["baseline"] = side == "sklearn"
    router = Router()
    for name in MODELS:
        router.register(name, lambda x: x, modality="tabular")
    router.policy = Tree.from_sklearn(estimator, MODELS, feature_names=_schema_names())
    small_arrays = itertools.cycle(list(np.nan_to_num(make_rows(10_000, 3)[:, :16])))
    sklearn_rows = slices(1)
    calls = {
        "fastroute.noop": lambda: _core.noop(next(small_arrays)),
        "fastroute.route": lambda: router.route(next(small_arrays)),
        "sklearn": lambda: estimator.predict(next(sklearn_rows)),
    }
    benchmark(calls[side])


def _schema_names():
    from fastroute import FEATURE_NAMES

    assert len(FEATURE_NAMES) == N_FEATURES
    return FEATURE_NAMES


@pytest.mark.parametrize("side", ["every model can take it", "masked by modality"])
def test_route_one_input_masked(benchmark, tree_pair, side):
    """The cost of choosing only among the models able to take the input (issue 9): a tree
    over four models routing a tabular array, when all four are tabular models (no mask)
    vs when two serve images and the scorer masks them."""
    from fastroute import Router

    estimator, _ = tree_pair
    benchmark.group = "route one small array: policy masked by modality"
    benchmark.extra_info["baseline"] = side == "every model can take it"
    router = Router()
    for number, name in enumerate(MODELS):
        image = side == "masked by modality" and number % 2 == 1
        router.register(name, lambda x: x, modality="image" if image else "tabular")
    router.policy = Tree.from_sklearn(estimator, MODELS, feature_names=_schema_names())
    small_arrays = itertools.cycle(list(np.nan_to_num(make_rows(10_000, 3)[:, :16])))
    assert {router.route(next(small_arrays)).model for _ in range(200)} <= (
        {"m0", "m2"} if side == "masked by modality" else set(MODELS))
    benchmark(lambda: router.route(next(small_arrays)))


@pytest.mark.parametrize("side", ["unmasked", "masked by modality"])
def test_tree_decide_million_masked(benchmark, tree_pair, million_rows, quick, side):
    """The batch path: 1,000,000 rows through decide_batch, with and without a per-modality mask."""
    from fastroute import FEATURE_NAMES

    policy = Tree.from_sklearn(tree_pair[0], MODELS, feature_names=FEATURE_NAMES)
    benchmark.group = "depth-8 tree, decide_batch 1,000,000 rows (single thread): masked by modality"
    benchmark.extra_info["baseline"] = side == "unmasked"
    rows = [np.array(m[: 10_000 if quick else None]) for m in million_rows]
    for matrix in rows:
        matrix[:, 0] = np.arange(len(matrix)) % 2  # modality codes 0 and 1: tabular, image
    allowed = {"tabular": ("m0", "m1", "m2"), "image": ("m1", "m3")}
    candidates_of = (lambda modality: _Names(allowed.get(modality, ()))) if side != "unmasked" else None
    pool = itertools.cycle(rows)
    benchmark.pedantic(lambda: policy.decide_batch(next(pool), threads=1, candidates_of=candidates_of),
                       rounds=6, iterations=1, warmup_rounds=1)


class _Names:
    def __init__(self, names):
        self.names = tuple(names)
