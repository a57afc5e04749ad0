"""Tree and Forest: identical decisions to scikit-learn, fitting from logs, persistence."""

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from fastroute import FEATURE_NAMES, Forest, InvalidInput, PolicyError, Tree, _core
from fastroute.decision import load

MODELS = ["a", "b", "c", "d"]


def random_data(seed, n=400, width=6, nan_share=0.0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, width)).astype(np.float32)
    features[:, 0] = rng.integers(0, 4, n)  # a discrete column: many exact ties with thresholds
    if nan_share:
        features[rng.random(features.shape) < nan_share] = np.nan
    labels = (np.nan_to_num(features[:, 1]) > 0).astype(int) + 2 * (np.nan_to_num(features[:, 2]) > 0.5)
    labels = np.where(rng.random(n) < 0.2, rng.integers(0, 4, n), labels)
    return features, labels


@pytest.mark.parametrize("seed", range(12))
def test_tree_classifier_predictions_identical_to_sklearn(seed):
    features, labels = random_data(seed, nan_share=0.1 if seed % 2 else 0.0)
    depth = [None, 2, 5, 8][seed % 4]
    estimator = DecisionTreeClassifier(max_depth=depth, random_state=seed).fit(features, labels)
    policy = Tree.from_sklearn(estimator, MODELS)
    probe, _ = random_data(seed + 100, n=2000, nan_share=0.1)
    np.testing.assert_array_equal(policy.predict(probe), estimator.predict(probe))


@pytest.mark.parametrize("walk", _core.TREE_WALKS)
@pytest.mark.parametrize("depth", [1, 4, 5, 8, 10, 13])
def test_every_tree_walk_reaches_sklearns_leaf(walk, depth):
    """Each kernel forced in turn (the fastest supported one serves by default): the leaf of
    every row is sklearn's, with missing values, extreme values and exact threshold ties, at
    every tail length around the vector widths (tests/cpp also feeds +-Inf, which sklearn refuses)."""
    if walk not in _core.supported_tree_walks():
        pytest.skip(f"this CPU cannot run the {walk} walk (supported: {_core.supported_tree_walks()})")
    features, labels = random_data(depth, n=3000, nan_share=0.1)
    estimator = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(features, labels)
    scorer = Tree.from_sklearn(estimator, MODELS)._state.scorer
    probe, _ = random_data(depth + 1, n=1000 + depth, nan_share=0.1)
    probe[::7, 3] = np.finfo(np.float32).max
    probe[::11, 4] = -np.finfo(np.float32).max
    for n in (1, 15, 16, 17, 33, len(probe)):
        np.testing.assert_array_equal(scorer.leaves(probe[:n], walk=walk), estimator.apply(probe[:n]))


def test_tree_walk_names_are_checked():
    scorer = Tree.from_sklearn(DecisionTreeClassifier(max_depth=2).fit(*random_data(0)), MODELS)._state.scorer
    assert _core.supported_tree_walks()[0] == "scalar"  # the portable fallback runs everywhere
    with pytest.raises(InvalidInput, match="unknown tree walk 'sse9'"):
        scorer.leaves(random_data(1)[0], walk="sse9")


@pytest.mark.parametrize(
    "make",
    [
        lambda s: RandomForestClassifier(n_estimators=15, max_depth=6, random_state=s),
        lambda s: ExtraTreesClassifier(n_estimators=15, random_state=s),
        lambda s: RandomForestClassifier(n_estimators=7, max_depth=3, bootstrap=False, random_state=s),
    ],
)
@pytest.mark.parametrize("seed", range(4))
def test_forest_classifier_predictions_identical_to_sklearn(make, seed):
    features, labels = random_data(seed)
    estimator = make(seed).fit(features, labels)
    policy = Forest.from_sklearn(estimator, MODELS)
    probe, _ = random_data(seed + 50, n=3000)
    np.testing.assert_array_equal(policy.predict(probe), estimator.predict(probe))
    np.testing.assert_array_equal(policy.predict_scores(probe), estimator.predict_proba(probe))


@pytest.mark.parametrize(
    "make",
    [
        lambda s: DecisionTreeRegressor(max_depth=6, random_state=s),
        lambda s: RandomForestRegressor(n_estimators=10, max_depth=5, random_state=s),
        lambda s: ExtraTreesRegressor(n_estimators=10, max_depth=7, random_state=s),
    ],
)
def test_regressors_pick_best_predicted_model(make):
    features, _ = random_data(3)
    quality = np.random.default_rng(3).normal(size=(len(features), 3)) + features[:, 1:4]
    estimator = make(3).fit(features, quality)
    kind = Forest if hasattr(estimator, "estimators_") else Tree
    policy = kind.from_sklearn(estimator, ["x", "y", "z"])
    probe, _ = random_data(7, n=2000)
    np.testing.assert_array_equal(policy.predict(probe), estimator.predict(probe).argmax(axis=1))
    as_loss = kind.from_sklearn(estimator, ["x", "y", "z"], loss=True)
    np.testing.assert_array_equal(as_loss.predict(probe), estimator.predict(probe).argmin(axis=1))


def test_classifier_with_model_name_classes_and_subset():
    features, labels = random_data(5)
    names = np.array(["b", "d"])[labels % 2]
    estimator = DecisionTreeClassifier(max_depth=4, random_state=0).fit(features, names)
    policy = Tree.from_sklearn(estimator, MODELS)
    probe, _ = random_data(6, n=500)
    assert policy.decide_batch(probe).names() == estimator.predict(probe).tolist()
    with pytest.raises(PolicyError, match=r"classes \['b', 'd'\] are not among"):
        Tree.from_sklearn(estimator, ["a", "c"])


def test_large_batches_use_threads_with_identical_results():
    features, labels = random_data(9)
    policy = Forest.from_sklearn(RandomForestClassifier(5, random_state=0).fit(features, labels), MODELS)
    probe, _ = random_data(10, n=200_000)
    single = policy.decide_batch(probe, threads=1)
    threaded = policy.decide_batch(probe, threads=4)
    np.testing.assert_array_equal(single.index, threaded.index)
    np.testing.assert_array_equal(single.score, threaded.score)


def test_fit_learns_the_best_model_per_region():
    rng = np.random.default_rng(0)
    features = np.full((3000, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    features[:, FEATURE_NAMES.index("height")] = rng.integers(8, 2048, 3000)
    big = features[:, FEATURE_NAMES.index("height")] > 512
    quality = np.column_stack([np.where(big, 0.5, 0.9), np.where(big, 0.95, 0.85)]) + rng.normal(0, 0.01, (3000, 2))
    for method in ("regression", "classification"):
        policy = Tree(max_depth=3, method=method).fit(features, quality, models=["small", "big"])
        assert policy.feature_names == FEATURE_NAMES
        np.testing.assert_array_equal(policy.predict(features), big.astype(int))
        assert "height" in policy.explain(features[0])


def test_fit_with_costs_prefers_the_cheap_model_when_quality_is_close():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1000, 3)).astype(np.float32)
    quality = np.column_stack([np.full(1000, 0.80), np.full(1000, 0.82)]) + rng.normal(0, 0.001, (1000, 2))
    models = ["cheap", "pricey"]
    assert Tree(max_depth=2).fit(features, quality, models=models).predict(features).mean() > 0.95
    costly = Tree(max_depth=2).fit(features, quality, models=models, cost=[0.0, 1.0], cost_weight=0.1)
    assert costly.predict(features).mean() < 0.05


def test_fit_handles_unobserved_outcomes_and_losses():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(600, 2)).astype(np.float32)
    runtime = np.column_stack([np.where(features[:, 0] > 0, 1.0, 100.0), np.full(600, 10.0)])
    runtime[rng.random(runtime.shape) < 0.1] = np.nan  # not every model ran on every input
    policy = Forest(n_trees=10, max_depth=4).fit(features, runtime, models=["fast_sometimes", "steady"], loss=True)
    probe = rng.normal(size=(2000, 2)).astype(np.float32)
    assert (policy.predict(probe) == (probe[:, 0] <= 0)).mean() > 0.97


@pytest.mark.parametrize(
    ("features", "outcomes", "message"),
    [
        (np.zeros((4, 2)), np.array([[1.0, np.nan]] * 4), "column 1 is all NaN"),
        (np.zeros((4, 2)), np.array([[1.0, np.inf]] * 4), "outcomes contain Inf at row 0"),
        (np.zeros((4, 2)), np.ones((4, 3)), r"shape \(n, 2\)"),
        (np.zeros((5, 2)), np.ones((4, 2)), "5 rows but outcomes have 4"),
        (np.array([[0.0, np.inf]] * 4), np.ones((4, 2)), "features contain Inf"),
        (np.zeros(4), np.ones((4, 2)), "2-D"),
    ],
)
def test_fit_bad_input(features, outcomes, message):
    with pytest.raises(InvalidInput, match=message):
        Tree().fit(features, outcomes, models=["a", "b"])


def test_save_load_roundtrip_and_corruption(tmp_path):
    features, labels = random_data(4, nan_share=0.05)
    policy = Forest.from_sklearn(RandomForestClassifier(8, max_depth=5, random_state=0).fit(features, labels), MODELS)
    path = tmp_path / "forest.npz"
    policy.save(path)
    loaded = load(path)
    np.testing.assert_array_equal(loaded.predict_scores(features), policy.predict_scores(features))
    assert loaded.models == policy.models and loaded.feature_names == policy.feature_names

    arrays = dict(np.load(path))
    arrays["left"] = arrays["left"].copy()
    arrays["left"][0] = 0  # a cycle: the root is its own child
    np.savez(tmp_path / "cycle.npz", **arrays)
    with pytest.raises(PolicyError, match="node 0 .*has child 0"):
        load(tmp_path / "cycle.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(PolicyError, match="not a readable policy file"):
        load(tmp_path / "junk.npz")


def _corrupt_tree_begin(arrays):
    arrays["tree_begin"][1] = 5_000_000  # first and last entries still look right
    return r"tree_begin\[1\] = 5000000 must exceed tree_begin\[0\] = 0 and be at most the node count"


def _shared_child(arrays):
    # The root's right child also becomes the right child of the root's left child.
    assert arrays["left"][1] >= 0, "the root's left child must split for this corruption"
    arrays["right"][1] = arrays["right"][0]
    return f"node 1 .*has child {arrays['right'][0]}, which already has a parent"


@pytest.mark.parametrize("corrupt", [_corrupt_tree_begin, _shared_child])
def test_corrupt_tree_structure_is_rejected_on_load(tmp_path, corrupt):
    features, labels = random_data(5)
    policy = Forest.from_sklearn(RandomForestClassifier(3, max_depth=4, random_state=0).fit(features, labels), MODELS)
    policy.save(tmp_path / "forest.npz")
    arrays = {name: array.copy() for name, array in np.load(tmp_path / "forest.npz").items()}
    message = corrupt(arrays)
    np.savez(tmp_path / "corrupt.npz", **arrays)
    with pytest.raises(PolicyError, match=message):
        load(tmp_path / "corrupt.npz")


def test_a_route_plan_analyses_and_scores_in_one_call():
    """RoutePlan(scorer, mask).choose(x) (the router's native step) is analyze(x) then score() of its features."""
    from fastroute import analyze

    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, len(FEATURE_NAMES))).astype(np.float32)
    features[:, 0] = 0  # tabular
    labels = (features[:, FEATURE_NAMES.index("mean")] > 0).astype(int)
    scorer = Tree.from_sklearn(DecisionTreeClassifier(max_depth=3).fit(features, labels), MODELS)._state.scorer
    plan = _core.RoutePlan(scorer)
    for x in (rng.normal(size=16).astype(np.float32), np.arange(12.0).reshape(3, 4), "some text", b"\x89PNG\r\n"):
        model, score, _, reason = scorer.score(analyze(x).features)
        np.testing.assert_array_equal(plan.choose(x), (model, score, reason))
    only_model_1 = _core.RoutePlan(scorer, _core.ModelMask(np.array([[0, 1, 0, 0]], dtype=np.uint8)))
    assert only_model_1.choose(np.ones(4))[0] == 1
    tabular_only = _core.RoutePlan(scorer, _core.ModelMask(np.array([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=np.uint8)))
    assert tabular_only.choose(np.ones((8, 8)), "image")[0] == _core.NO_MODEL  # modality 1: no model
    with pytest.raises(InvalidInput, match="the model mask covers 2 models"):
        _core.RoutePlan(scorer, _core.ModelMask(np.ones((1, 2), dtype=np.uint8)))
    with pytest.raises(InvalidInput, match="hint"):
        plan.choose(np.ones(4), "video")
