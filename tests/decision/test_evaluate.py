"""evaluate / cross_validate: the algorithm-selection measures, on toy logs and real ones."""

import sys
from pathlib import Path

import numpy as np
import pytest
from fastroute import Forest, InvalidInput, PolicyError, Tree, cross_validate, evaluate
from fastroute.tools.datasets import load_aslib, load_gsm8k
from fastroute.decision.evaluate import score_choices

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["a", "b", "c"]


def test_score_choices_measures_by_hand():
    quality = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.2, 0.2, 0.9], [0.4, 0.0, 0.0]])
    # column means: a 0.4, b 0.3, c 0.475 -> single best c; oracle mean (1+1+0.9+0.4)/4 = 0.825
    result = score_choices([0, 1, 0, 0], quality, MODELS, cost=[1.0, 2.0, 4.0])
    assert result.single_best == "c"
    assert result.accuracy == pytest.approx(0.75)
    assert result.mean_quality == pytest.approx((1 + 1 + 0.2 + 0.4) / 4)
    assert result.mean_cost == pytest.approx((1 + 2 + 1 + 1) / 4)
    assert result.regret == pytest.approx(0.825 - 0.65)
    assert result.gap_closed == pytest.approx((0.65 - 0.475) / (0.825 - 0.475))
    assert score_choices(quality.argmax(axis=1), quality, MODELS).gap_closed == pytest.approx(1.0)
    assert score_choices([2, 2, 2, 2], quality, MODELS).gap_closed == pytest.approx(0.0)


def test_losses_are_reported_in_loss_units():
    runtime = np.array([[1.0, 5.0], [9.0, 2.0]])
    result = score_choices([0, 0], runtime, ["x", "y"], loss=True)
    assert result.mean_quality == pytest.approx(5.0)
    assert result.oracle_quality == pytest.approx(1.5)
    assert result.single_best_quality == pytest.approx(3.5)
    assert result.gap_closed == pytest.approx((3.5 - 5.0) / (3.5 - 1.5))  # worse than always y


def test_evaluate_and_cross_validate_a_learnable_problem():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(900, 4)).astype(np.float32)
    best = (features[:, 0] > 0).astype(int) + (features[:, 1] > 1)
    quality = rng.normal(0, 0.05, (900, 3)) + np.eye(3)[best]
    policy = Tree(max_depth=4).fit(features, quality, models=MODELS)
    assert evaluate(policy, features, quality).accuracy > 0.95
    result = cross_validate(Tree(max_depth=4), features, quality, models=MODELS, folds=5)
    assert result.n == 900
    assert result.gap_closed > 0.9


def test_evaluate_bad_input():
    features = np.zeros((4, 2), dtype=np.float32)
    policy = Tree(max_depth=1).fit(features, np.array([[1.0, 0.0]] * 4), models=["x", "y"])
    with pytest.raises(InvalidInput, match="chose 'x' for input 0, whose outcome is missing"):
        evaluate(policy, features, np.array([[np.nan, 0.0], [1.0, 0.0]] * 2))
    with pytest.raises(InvalidInput, match="column 1 is all NaN"):
        evaluate(policy, features, np.array([[1.0, np.nan]] * 4))
    with pytest.raises(PolicyError, match="folds must be between 2"):
        cross_validate(Tree(), features, np.ones((4, 2)), models=["x", "y"], folds=1)


@pytest.mark.parametrize(("scenario", "instances", "solvers"), [("QBF-2011", 1368, 5), ("MAXSAT12-PMS", 876, 6)])
def test_aslib_loader_reproduces_the_published_baselines(shared_data, scenario, instances, solvers):
    data = load_aslib(shared_data / "aslib" / scenario)
    assert data.features.shape[0] == instances and len(data.models) == solvers
    assert sorted(set(data.folds.tolist())) == list(range(1, 11))
    published = {"QBF-2011": (15330.171, 8337.099), "MAXSAT12-PMS": (4893.141, 3127.236)}[scenario]
    result = score_choices(np.zeros(instances, int), data.outcomes, data.models, loss=True)
    assert result.single_best_quality == pytest.approx(published[0], abs=1e-3)
    assert result.oracle_quality == pytest.approx(published[1], abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "method", "published"),
    [("QBF-2011", "regression", 0.883), ("MAXSAT12-PMS", "classification", 0.877)],
)
def test_small_forest_closes_the_gap_with_the_scenarios_own_folds(shared_data, scenario, method, published):
    """20 trees, one job (examples/aslib_selection.py runs 100 trees and both methods)."""
    data = load_aslib(shared_data / "aslib" / scenario)
    result = cross_validate(
        Forest(n_trees=20, method=method, n_jobs=1), data.features, data.outcomes, models=data.models,
        folds=data.folds, loss=True, feature_names=data.feature_names,
    )
    assert result.n == len(data.instances)
    # The published random-forest selector's share, less a small margin for fewer trees.
    assert result.gap_closed > published - 0.03


@pytest.mark.slow
def test_calibrated_threshold_beats_random_routing_on_gsm8k(shared_data):
    """The example's router (examples/gsm8k_threshold.py), at 40% strong-model calls."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from gsm8k_threshold import cross_fitted_choices, random_routing_quality
    finally:
        sys.path.pop(0)
    data = load_gsm8k(shared_data / "routellm-gsm8k" / "gsm8k_responses.csv")
    chosen = cross_fitted_choices(data.prompts, data.outcomes, data.models, share=0.4)
    assert 0.35 < chosen.mean() < 0.45
    routed = score_choices(chosen, data.outcomes, data.models).mean_quality
    assert routed > random_routing_quality(data.outcomes, chosen.mean()) + 0.01


def test_an_evaluation_reads_well():
    """Its repr rounds each figure to four significant digits (it printed 17 before)."""
    quality = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.2, 0.2, 0.9], [0.4, 0.0, 0.0]])
    text = repr(score_choices([0, 1, 0, 0], quality, MODELS, cost=[1.0, 2.0, 4.0]))
    assert text == (
        "Evaluation(n=4, accuracy=0.75, mean_quality=0.65, mean_cost=1.25, regret=0.175, single_best='c', "
        "single_best_quality=0.475, oracle_quality=0.825, gap_closed=0.5)"
    )
