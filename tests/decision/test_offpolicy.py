"""Off-policy evaluation against ground truth on real logs.

ASlib and RouteLLM record every model's outcome on every input, so the true
value of any policy is computable. A bandit (logging with the propensities it
reports) sees only the outcome of the model it chose; the estimators must
recover the true value of other policies from that partial log.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastroute import InvalidInput, LinThompson, ThompsonSampling, Tree
from fastroute.decision.feedback import LoggedDecision
from fastroute.decision.offpolicy import doubly_robust, fit_reward_model, from_logged, ips, snips
from fastroute.tools.datasets import load_aslib, load_gsm8k


def bandit_log(policy, features, rewards, seed):
    """Replay a stream in a random order: the policy decides, sees only its choice's reward."""
    order = np.random.default_rng(seed).permutation(len(rewards))
    actions = np.empty(len(order), dtype=np.int64)
    propensities = np.empty(len(order))
    for position, row in enumerate(order):
        vector = None if features is None else features[row]
        arm, propensity = policy.decide(vector)
        policy.update(vector, arm, rewards[row, arm])
        actions[position], propensities[position] = arm, propensity
    return order, actions, propensities, rewards[order, actions]


def test_estimators_recover_true_policy_values_on_qbf(shared_data) -> None:
    pytest.importorskip("sklearn", reason="needs scikit-learn for the tree and the reward model")
    scenario = load_aslib(shared_data / "aslib" / "QBF-2011")
    rewards = 1.0 - scenario.outcomes / (10.0 * scenario.cutoff)  # PAR10 -> [0, 1], higher is better
    k = len(scenario.models)
    logger = LinThompson(scenario.models, feature_names=scenario.feature_names, explore=0.3, seed=1)
    order, actions, propensities, observed = bandit_log(logger, scenario.features, rewards, seed=2)
    features = scenario.features[order]
    truth_rows = rewards[order]

    train = scenario.folds[order] <= 5
    tree = Tree(max_depth=6).fit(features[train], truth_rows[train], models=scenario.models)
    targets = {
        "tree": tree.predict(features).astype(np.int64),
        "single best": np.full(len(order), int(np.argmax(truth_rows.mean(axis=0)))),
        "uniform": np.full((len(order), k), 1.0 / k),
    }
    predicted = fit_reward_model(features, actions, observed, k, seed=3)
    for name, target in targets.items():
        probabilities = target if target.ndim == 2 else np.eye(k)[target]
        truth = float((probabilities * truth_rows).sum(axis=1).mean())
        estimates = {
            "ips": ips(actions, propensities, observed, target),
            "snips": snips(actions, propensities, observed, target),
            "dr": doubly_robust(actions, propensities, observed, target, predicted),
        }
        for estimator, estimate in estimates.items():
            assert truth in estimate, f"{name} / {estimator}: truth {truth:.4f} not in {estimate}"
        assert estimates["dr"].high - estimates["dr"].low < estimates["ips"].high - estimates["ips"].low
    # The reported propensities matter: pretending the log was uniform misses the truth.
    tree_truth = float(truth_rows[np.arange(len(order)), targets["tree"]].mean())
    assert tree_truth not in ips(actions, np.full(len(order), 1.0 / k), observed, targets["tree"])


def test_ips_matches_truth_for_the_strong_model_on_gsm8k(shared_data) -> None:
    responses = load_gsm8k(shared_data / "routellm-gsm8k" / "gsm8k_responses.csv")
    logger = ThompsonSampling(responses.models, explore=0.4, seed=5)
    order, actions, propensities, observed = bandit_log(logger, None, responses.outcomes, seed=6)
    for model in range(2):
        truth = float(responses.outcomes[:, model].mean())
        target = np.full(len(order), model)
        assert truth in ips(actions, propensities, observed, target)
        assert truth in snips(actions, propensities, observed, target)


def test_logged_decisions_convert_and_bad_logs_are_refused() -> None:
    records = [
        LoggedDecision("t-0", "a", 0.5, 1.0, np.array([1.0], np.float32)),
        LoggedDecision("t-1", "b", 0.25, 0.0, np.array([2.0], np.float32)),
    ]
    features, actions, propensities, rewards = from_logged(records, ["a", "b"])
    assert features.shape == (2, 1) and actions.tolist() == [0, 1] and propensities.tolist() == [0.5, 0.25]
    assert ips(actions, propensities, rewards, np.array([0, 0])).value == pytest.approx(1.0)  # (1/0.5 * 1 + 0) / 2
    with pytest.raises(InvalidInput, match="not among"):
        from_logged(records, ["a"])
    with pytest.raises(InvalidInput, match="propensities must be in"):
        ips(actions, np.array([0.5, 0.0]), rewards, np.array([0, 0]))
    with pytest.raises(InvalidInput, match="rewards must be finite"):
        snips(actions, propensities, np.array([1.0, np.nan]), np.array([0, 0]))
    with pytest.raises(InvalidInput, match="summing to 1"):
        ips(actions, propensities, rewards, np.array([[0.5, 0.1], [0.5, 0.5]]))
    with pytest.raises(InvalidInput, match="predicted must be finite"):
        doubly_robust(actions, propensities, rewards, np.array([0, 1]), np.zeros((2, 3)))
