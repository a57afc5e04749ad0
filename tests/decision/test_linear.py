"""Linear: hashed n-gram text routing fitted with scikit-learn, scored in C++."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from fastroute import HashedNgrams, Linear, NoRoute, Router, strong_weak_curve
from fastroute.decision import load
from fastroute.errors import InvalidInput, PolicyError

sklearn_linear = pytest.importorskip("sklearn.linear_model", reason="needs the 'learn' extra")
from sklearn.feature_extraction.text import HashingVectorizer  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

MATHS = ["solve the equation {} x + 3 = 7", "what is the integral of x^{} dx", "compute {} times 17 minus 4",
         "prove that the sum of {} odd numbers is even"]
HISTORY = ["who ruled france in {}", "when did the empire of {} fall", "describe the treaty signed in {}",
           "which king won the battle of {}"]
MODELS = ["cheap", "maths", "history"]


def prompts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Maths prompts: the maths model is right; history ones: the history model; the cheap one half right."""
    rng = np.random.default_rng(seed)
    texts, outcomes = [], []
    for i in range(n):
        topic = i % 2
        template = (MATHS if topic == 0 else HISTORY)[rng.integers(4)]
        texts.append(template.format(int(rng.integers(1000))))
        outcomes.append([0.5, topic == 0, topic == 1])
    return texts, np.array(outcomes, dtype=np.float64)


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray]:
    return prompts(400)


@pytest.mark.parametrize("method", ["regression", "classification"])
def test_fit_routes_each_topic_to_its_model(data, method: str) -> None:
    texts, outcomes = data
    policy = Linear(HashedNgrams("word", (1, 2), 2**12), method=method).fit(texts, outcomes, models=MODELS)
    test_texts, test_outcomes = prompts(200, seed=1)
    chosen = policy.predict(test_texts)
    assert (test_outcomes[np.arange(200), chosen] == 1).mean() > 0.95
    assert policy.route("solve the equation 5 x + 3 = 9").model == "maths"
    assert policy.route("who ruled england in 1066").model == "history"


def test_scores_equal_sklearn_ridge_on_hashing_vectorizer_features(data) -> None:
    texts, outcomes = data
    policy = Linear(HashedNgrams("char_wb", (2, 4), 2**14), alpha=3.0).fit(texts, outcomes, models=MODELS)
    features = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=2**14).transform(texts)
    expected = sklearn_linear.Ridge(alpha=3.0).fit(features, outcomes).predict(features)
    np.testing.assert_allclose(policy.scores(texts), expected, rtol=1e-3, atol=1e-4)
    best, scores = policy._checked().route_text(policy.text._hasher, texts[0])
    np.testing.assert_allclose(scores, policy.scores(texts[:1])[0], rtol=1e-6)


def test_from_sklearn_pipeline_makes_the_pipelines_choices(data) -> None:
    texts, outcomes = data
    labels = np.argmax(outcomes[:, 1:], axis=1) + 1
    pipeline = make_pipeline(HashingVectorizer(n_features=2**12, ngram_range=(1, 2)),
                             sklearn_linear.LogisticRegression(max_iter=500)).fit(texts, labels)
    policy = Linear.from_sklearn(pipeline, MODELS)
    assert policy.text == HashedNgrams("word", (1, 2), 2**12)
    test_texts, _ = prompts(100, seed=2)
    np.testing.assert_array_equal(policy.predict(test_texts), pipeline.predict(test_texts))
    with pytest.raises(PolicyError, match="columns"):
        Linear.from_sklearn(pipeline[-1], MODELS, text=HashedNgrams(n_features=2**10))


def test_missing_outcomes_are_skipped_and_dense_columns_read(data) -> None:
    texts, outcomes = data
    outcomes = outcomes.copy()
    outcomes[::3, 0] = np.nan  # the cheap model was not run on a third of the prompts
    length = np.array([[len(t)] for t in texts], dtype=np.float32)
    length[::5] = np.nan
    policy = Linear(HashedNgrams(n_features=2**12), dense=["length"]).fit(texts, outcomes, models=MODELS, dense=length)
    assert policy.feature_names[-1] != "length" or "length" in policy.feature_names
    chosen = policy.predict(texts, dense=length)
    assert (outcomes[np.arange(len(texts)), chosen] == 1).mean() > 0.95
    with pytest.raises(InvalidInput, match="shape"):
        policy.predict(texts, dense=None)


def test_calibrate_to_a_share_and_to_a_budget(data) -> None:
    texts, outcomes = data
    policy = Linear(HashedNgrams(n_features=2**12)).fit(texts, outcomes, models=MODELS)
    costs = [1.0, 5.0, 10.0]
    for share in (0.0, 0.2, 0.5):
        policy.calibrate(texts, share=share, costs=costs)
        routed = (policy.predict(texts) == 2).mean()
        assert share - 0.05 <= routed <= share  # never above; below by the prompts tied at the cut
    policy.calibrate(texts, budget=3.0, costs=costs)
    assert np.asarray(costs)[policy.predict(texts)].mean() <= 3.0
    with pytest.raises(PolicyError, match="exactly one"):
        policy.calibrate(texts)


def test_save_and_load_without_pickle(tmp_path, data) -> None:
    texts, outcomes = data
    policy = Linear(HashedNgrams("char_wb", (1, 3), 2**12), method="classification").fit(
        texts, outcomes, models=MODELS)
    policy.calibrate(texts, share=0.3, costs=[1, 2, 3])
    path = tmp_path / "linear.npz"
    policy.save(path)
    loaded = load(path)
    assert isinstance(loaded, Linear) and loaded.models == policy.models and loaded.text == policy.text
    np.testing.assert_array_equal(loaded.scores(texts), policy.scores(texts))
    np.testing.assert_array_equal(copy.deepcopy(policy).scores(texts), policy.scores(texts))
    arrays = dict(np.load(path))
    arrays["sparse_weights"] = arrays["sparse_weights"][:-1]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(PolicyError, match="sparse_weights"):
        load(tmp_path / "short.npz")


def test_router_routes_text_with_a_linear_policy(data) -> None:
    texts, outcomes = data
    policy = Linear(HashedNgrams(n_features=2**12)).fit(texts, outcomes, models=MODELS)
    router = Router(policy=policy)
    for name in MODELS:
        router.register(name, lambda x: x, modality="text")
    assert router.route("compute 12 times 17 minus 4").model == "maths"
    assert router.route("which king won the battle of hastings").model == "history"
    with pytest.raises(InvalidInput, match="text prompts"):
        router.route(np.zeros((4, 4), dtype=np.float32))


def test_linear_chooses_only_among_the_candidates(data) -> None:
    """A maths prompt goes to the best-scored registered model when the maths model is not registered."""
    texts, outcomes = data
    policy = Linear(HashedNgrams(n_features=2**12)).fit(texts, outcomes, models=MODELS)
    router = Router(policy=policy)
    try:
        for name in ("cheap", "history"):
            router.register(name, lambda x: x, modality="text")
        assert policy.route("compute 12 times 17 minus 4").model == "maths"  # no candidates: every model
        decision = router.route("compute 12 times 17 minus 4")
        scores = policy.scores(["compute 12 times 17 minus 4"])[0]
        assert decision.model == ("cheap" if scores[0] >= scores[2] else "history")
        assert "of the 2 candidates" in decision.reason
        assert router.route("which king won the battle of hastings").model == "history"
    finally:
        router.close()
    other = Router(policy=policy)
    try:
        other.register("elsewhere", lambda x: x, modality="text")
        with pytest.raises(NoRoute):
            other.route("compute 12 times 17 minus 4")
    finally:
        other.close()


def test_unfitted_and_bad_settings_raise() -> None:
    with pytest.raises(PolicyError, match="not fitted"):
        Linear().route("hello")
    with pytest.raises(PolicyError, match="method"):
        Linear(method="svm")


def test_strong_weak_curve_of_an_oracle_and_of_a_constant() -> None:
    outcomes = np.array([[1, 1], [0, 1], [0, 1], [1, 0], [0, 0]], dtype=np.float64)
    oracle = strong_weak_curve(outcomes[:, 1] - outcomes[:, 0], outcomes)
    assert oracle.weak_quality == pytest.approx(0.4) and oracle.strong_quality == pytest.approx(0.6)
    # The gap is 0.2 and each win gains 1/5: the two wins first, then the tie, the no-op, the loss.
    np.testing.assert_allclose(oracle.pgr, [0, 1, 2, 2, 2, 1])
    assert oracle.apgr == pytest.approx((0.5 + 1.5 + 2 + 2 + 1.5) / 5)
    assert oracle.cpt(0.5) == pytest.approx(0.2) and oracle.cpt(1.0) == pytest.approx(0.2)
    constant = strong_weak_curve(np.zeros(5), outcomes)  # ties keep input order
    np.testing.assert_allclose(constant.pgr, [0, 0, 1, 2, 1, 1])
    with pytest.raises(InvalidInput, match="must beat"):
        strong_weak_curve(np.zeros(2), np.array([[1.0, 0.0], [1.0, 1.0]]))
