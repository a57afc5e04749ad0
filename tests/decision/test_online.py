"""Online policies behind a real Router: they learn from feedback on every path,
warm-start from logs and trees, merge, save and load, and refuse bad rewards."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import fastroute
from fastroute import (
    FEATURE_NAMES,
    EpsilonGreedy,
    InvalidInput,
    LinThompson,
    LinUCB,
    NoRoute,
    PolicyError,
    Router,
    ThompsonSampling,
    Tree,
    UCB1,
)
from fastroute.decision import load

MODELS = ("small", "big")
DIFFICULTY = FEATURE_NAMES + ("difficulty",)


def make_router(policy, *, error_model: bool = False, **store) -> Router:
    router = Router(policy, feedback=fastroute.FeedbackStore(**store) if store else None)
    router.register("small", lambda x: "small", modality="tabular", cost=1.0)
    if error_model:
        router.register("big", _fails, modality="tabular", cost=4.0)
    else:
        router.register("big", lambda x: "big", modality="tabular", cost=4.0)
    router.add_features(["difficulty"], lambda x: [float(x[0])])
    return router


def _fails(x):
    raise RuntimeError("model crashed")


def learned_count(policy) -> float:
    return float(policy._checked().bandit.export_stats(False)[:, 0].sum())


def request(difficulty: float) -> np.ndarray:
    return np.array([difficulty, 1.0, 2.0, 3.0], dtype=np.float32)


def small_wins_easy(model: str, difficulty: float) -> float:
    """The small model answers easy inputs (difficulty < 0.5), only the big one hard ones."""
    return 1.0 if (model == "big") == (difficulty >= 0.5) else 0.0


CONTEXT_FREE = [
    lambda: ThompsonSampling(MODELS, seed=1),
    lambda: ThompsonSampling(MODELS, rewards="gaussian", seed=1),
    lambda: UCB1(MODELS, alpha=0.5),
    lambda: EpsilonGreedy(MODELS, epsilon=0.1, seed=1),
]


@pytest.mark.parametrize("make_policy", CONTEXT_FREE, ids=["beta", "gaussian", "ucb1", "epsilon-greedy"])
def test_context_free_policies_learn_the_better_model_from_feedback(make_policy) -> None:
    policy = make_policy()
    router = make_router(policy)
    rng = np.random.default_rng(0)
    chosen = []
    for _ in range(1500):
        result, decision = router.infer(request(0.0), return_decision=True)
        rate = 0.8 if result == "big" else 0.4
        assert router.feedback(decision.id, reward=float(rng.random() < rate)) == "joined"
        chosen.append(result)
    assert chosen[-500:].count("big") >= 400
    assert learned_count(policy) == 1500


@pytest.mark.parametrize("kind", [LinUCB, LinThompson])
def test_linear_policies_learn_which_model_each_input_needs(kind) -> None:
    policy = kind(MODELS, feature_names=DIFFICULTY, explore=0.05, seed=3)
    router = make_router(policy)
    rng = np.random.default_rng(1)
    right = []
    for _ in range(1500):
        difficulty = float(rng.random())
        decision = router.route(request(difficulty))
        assert 0.0 < decision.propensity <= 1.0
        router.feedback(decision.id, reward=small_wins_easy(decision.model, difficulty))
        right.append(small_wins_easy(decision.model, difficulty))
    assert np.mean(right[-500:]) >= 0.85


def test_every_router_path_gives_an_id_that_feedback_joins() -> None:
    policy = LinUCB(MODELS, feature_names=DIFFICULTY, explore=0.2, seed=2)
    router = make_router(policy)
    ids = [router.route(request(0.1)).id]
    ids.append(router.infer(request(0.2), return_decision=True)[1].id)
    results, routed = router.infer_batch([request(0.3), request(0.9)], return_decisions=True)
    assert len(results) == 2 and len(routed.ids) == 2 and routed.propensity.shape == (2,)
    ids += list(routed.ids)
    future = router.submit(request(0.4))
    future.result(timeout=10)
    ids.append(future.decision.id)

    async def through_asyncio():
        return await router.ainfer(request(0.6), return_decision=True)

    ids.append(asyncio.run(through_asyncio())[1].id)
    assert len(set(ids)) == 6
    assert [router.feedback(i, reward=1.0) for i in ids] == ["joined"] * 6
    assert learned_count(policy) == 6
    router.close()


def test_feedback_counts_unknown_foreign_duplicate_and_expired_ids() -> None:
    clock = [0.0]
    router = make_router(UCB1(MODELS), ttl=60.0, capacity=3, clock=lambda: clock[0], token="mine")
    other = make_router(UCB1(MODELS))
    first = router.route(request(0.0)).id
    assert router.feedback(first, reward=1.0) == "joined"
    assert router.feedback(first, reward=1.0) == "duplicate"
    assert router.feedback(other.route(request(0.0)).id, reward=1.0) == "foreign"
    assert router.feedback("mine-999", reward=1.0) == "unknown"
    assert router.feedback(12, reward=1.0) == "unknown"
    late = router.route(request(0.0)).id
    clock[0] = 61.0
    assert router.feedback(late, reward=1.0) == "expired"
    crowded = [router.route(request(0.0)).id for _ in range(4)]  # capacity 3: the first is pushed out
    assert router.feedback(crowded[0], reward=1.0) == "expired"
    assert router.feedback(crowded[-1], reward=1.0) == "joined"
    stats = router.feedback_stats()
    assert stats["joined"] == 2 and stats["duplicate"] == 1 and stats["foreign"] == 1
    assert stats["unknown"] == 2 and stats["expired"] == 2 and stats["dropped"] == 2 and stats["open"] == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "high", 1.5, -0.1])
def test_bad_rewards_raise_and_never_reach_the_statistics(bad) -> None:
    policy = ThompsonSampling(MODELS)  # Beta: rewards in [0, 1]
    router = make_router(policy)
    decision = router.route(request(0.0))
    before = policy._checked().bandit.export_stats(False).copy()
    with pytest.raises(InvalidInput, match="reward"):
        router.feedback(decision.id, reward=bad)
    assert np.array_equal(policy._checked().bandit.export_stats(False), before)
    assert router.feedback(decision.id, reward=1.0) == "joined"  # the decision stayed open for a retry
    assert router.feedback_stats()["invalid"] == 1


def test_feedback_needs_a_reward_or_quality_and_known_fields() -> None:
    router = make_router(LinUCB(MODELS, feature_names=DIFFICULTY))
    decision = router.route(request(0.0))
    with pytest.raises(InvalidInput, match="reward= or quality="):
        router.feedback(decision.id)
    with pytest.raises(InvalidInput, match="unknown outcome fields"):
        router.feedback(decision.id, reward=1.0, mood=3)
    with pytest.raises(InvalidInput, match=f"the policy reads {len(DIFFICULTY)}"):
        router.policy.update(np.zeros(5, np.float32), "small", 1.0)


def test_cost_aware_reward_uses_quality_minus_weighted_cost() -> None:
    policy = UCB1(MODELS, cost_weight=0.1)
    router = make_router(policy)
    decision = router.route(request(0.0))
    router.feedback(decision.id, quality=1.0)  # cost: the model's registered cost
    other = router.route(request(0.0))
    router.feedback(other.id, quality=1.0, cost=2.0)
    logged = router.feedback_store.logged()
    expected = 1.0 - 0.1 * {"small": 1.0, "big": 4.0}[decision.model]
    assert logged[0].reward == pytest.approx(expected)
    assert logged[1].reward == pytest.approx(0.8)


def test_executor_errors_and_latency_become_outcomes_without_user_code() -> None:
    policy = EpsilonGreedy(["big"], epsilon=0.0, error_reward=0.0, latency_weight=1.0)
    router = make_router(policy, error_model=True)
    with pytest.raises(fastroute.ModelError):
        router.infer(request(0.0))
    assert router.feedback_stats()["errors_learned"] == 1
    assert learned_count(policy) == 1
    assert router.feedback_store.logged()[0].reward == 0.0
    healthy = UCB1(["small"], latency_weight=1.0)
    router = make_router(healthy)
    _, decision = router.infer(request(0.0), return_decision=True)
    router.feedback(decision.id, quality=1.0)
    reward = router.feedback_store.logged()[0].reward
    assert 0.0 < 1.0 - reward < 1.0  # the executor's measured latency was subtracted


def test_candidates_restrict_the_choice_and_none_left_is_no_route() -> None:
    policy = LinThompson(("small", "big", "ghost"), feature_names=DIFFICULTY, explore=0.5)
    row = _Row(np.zeros(len(DIFFICULTY), np.float32))
    assert {policy.select(row, ["small", "big"]).model for _ in range(50)} == {"small", "big"}
    assert {policy.select(row).model for _ in range(100)} == {"small", "big", "ghost"}
    with pytest.raises(NoRoute, match="none of the policy's models"):
        LinUCB(["ghost"], feature_names=DIFFICULTY).select(row, ["small"])


class _Row:
    modality = "tabular"

    def __init__(self, features):
        self.features = features


def test_fit_warm_starts_from_logs_and_fit_prior_from_a_tree() -> None:
    rng = np.random.default_rng(4)
    features = rng.random((400, 1)).astype(np.float32)
    outcomes = np.stack([features[:, 0] < 0.5, features[:, 0] >= 0.5], axis=1).astype(float)
    warm = LinUCB(alpha=0.0).fit(features, outcomes, models=MODELS, feature_names=["difficulty"])
    tree = Tree(max_depth=2).fit(features, outcomes, models=MODELS, feature_names=["difficulty"])
    prior = LinUCB(MODELS, feature_names=["difficulty"], alpha=0.0).fit_prior(tree, features)
    probe = rng.random((200, 1)).astype(np.float32)
    expected = (probe[:, 0] >= 0.5).astype(int)
    for policy in (warm, prior):
        chosen = np.array([policy.decide(row)[0] for row in probe])
        assert (chosen == expected).mean() >= 0.9
    with pytest.raises(InvalidInput, match="unknown model"):
        LinUCB(["other", "names"], feature_names=["difficulty"]).fit_prior(tree, features)


def test_two_replicas_on_halves_of_a_stream_merge_to_the_decisions_of_one() -> None:
    rng = np.random.default_rng(5)
    whole, left, right = (LinUCB(MODELS, feature_names=["difficulty", "noise"], alpha=0.5) for _ in range(3))
    for step in range(1000):
        row = rng.random(2).astype(np.float32)
        model = MODELS[step % 2]
        reward = small_wins_easy(model, float(row[0])) + 0.1 * rng.standard_normal()
        whole.update(row, model, reward)
        (left if step < 500 else right).update(row, model, reward)
    left.merge(right)
    probe = rng.random((300, 2)).astype(np.float32)
    assert [left.decide(row)[0] for row in probe] == [whole.decide(row)[0] for row in probe]
    with pytest.raises(PolicyError, match="merge needs"):
        left.merge(LinUCB(("big", "small"), feature_names=["difficulty", "noise"]))


def test_save_and_load_keep_what_was_learned(tmp_path) -> None:
    policy = LinUCB(MODELS, feature_names=["difficulty"], alpha=0.3, decay=0.99, cost_weight=0.2)
    rng = np.random.default_rng(6)
    for _ in range(300):
        row = rng.random(1).astype(np.float32)
        policy.update(row, MODELS[int(rng.integers(2))], float(rng.random()))
    policy.save(tmp_path / "bandit.npz")
    loaded = load(tmp_path / "bandit.npz")
    assert type(loaded) is LinUCB and loaded.decay == 0.99 and loaded.cost_weight == 0.2
    probe = rng.random((100, 1)).astype(np.float32)
    for row in probe:
        assert np.allclose(loaded.estimate(row)[0], policy.estimate(row)[0])
    beta = ThompsonSampling(MODELS, seed=4)
    beta.update(None, "big", 1.0)
    beta.save(tmp_path / "beta.npz")
    assert load(tmp_path / "beta.npz").rewards == "beta"
    (tmp_path / "broken.npz").write_bytes((tmp_path / "bandit.npz").read_bytes()[:200])
    with pytest.raises(PolicyError, match="not a readable policy file"):
        load(tmp_path / "broken.npz")


def test_an_online_policy_comes_from_a_config_file(tmp_path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(
        "models:\n"
        "  small: {modality: tabular, versions: {'1': {model: 'builtins:abs'}}}\n"
        "  big: {modality: tabular, versions: {'1': {model: 'builtins:abs'}}}\n"
        "policy: {use: ThompsonSampling, args: {models: [small, big], rewards: gaussian, decay: 0.99, seed: 1}}\n"
    )
    router = Router.from_config(path)
    assert isinstance(router.policy, ThompsonSampling)
    decision = router.route(np.ones(3))
    assert router.feedback(decision.id, reward=2.5) == "joined"


def test_settings_are_checked_once_with_clear_errors() -> None:
    with pytest.raises(PolicyError, match="explore must be in"):
        LinUCB(MODELS, explore=2.0)
    with pytest.raises(PolicyError, match="decay= or window="):
        UCB1(MODELS, decay=0.9, window=10)
    with pytest.raises(PolicyError, match="unique model names"):
        UCB1(["a", "a"])
    with pytest.raises(PolicyError, match="has no models"):
        UCB1().decide()
    assert UCB1(MODELS, window=100).decay == pytest.approx(0.99)


def test_concurrent_requests_and_feedback_lose_no_update() -> None:
    policy = LinThompson(MODELS, feature_names=DIFFICULTY, explore=0.1)
    router = make_router(policy)
    errors = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(200):
                difficulty = float(rng.random())
                decision = router.route(request(difficulty))
                assert router.feedback(decision.id, reward=small_wins_easy(decision.model, difficulty)) == "joined"
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert learned_count(policy) == 800
    assert router.feedback_stats()["joined"] == 800
