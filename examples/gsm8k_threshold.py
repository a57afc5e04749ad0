"""A strong/weak LLM router on GSM8K: a calibrated Threshold vs random routing.

RouteLLM's logs say whether Mixtral-8x7B (weak) and GPT-4 (strong) solved
each GSM8K prompt. A logistic regression on cheap prompt features predicts
the risk that the weak model fails; a Threshold on that risk, calibrated on
the training folds for a target share of strong-model calls, routes the
held-out prompts. Random routing at the same share is the baseline.

Run from the repository root:  python examples/gsm8k_threshold.py
"""

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from fastroute import Threshold
from fastroute.tools.datasets import PROMPT_FEATURES, load_gsm8k, prompt_features
from fastroute.decision.evaluate import score_choices

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "routellm-gsm8k" / "gsm8k_responses.csv"


def cross_fitted_choices(prompts, outcomes, models, share, folds=5, seed=0):
    """Model index per prompt, each chosen by a Threshold fitted and calibrated without its fold."""
    features = prompt_features(prompts)
    weak_fails = (outcomes[:, 0] < 1).astype(int)
    fold_of = np.random.default_rng(seed).permutation(np.arange(len(features)) % folds)
    chosen = np.empty(len(features), dtype=np.int64)
    for fold in range(folds):
        train, test = fold_of != fold, fold_of == fold
        risk = LogisticRegression(max_iter=1000).fit(features[train], weak_fails[train])
        policy = Threshold("risk", models, feature_names=PROMPT_FEATURES + ("risk",))
        policy.calibrate(risk.predict_proba(features[train])[:, 1], share=share)
        rows = np.column_stack([features[test], risk.predict_proba(features[test])[:, 1]])
        chosen[test] = policy.predict(rows)
    return chosen


def random_routing_quality(outcomes, share):
    """Expected accuracy when a share of prompts, picked at random, goes to the strong model."""
    return (1 - share) * outcomes[:, 0].mean() + share * outcomes[:, 1].mean()


def main() -> None:
    data = load_gsm8k(DATA)
    weak, strong = data.outcomes.mean(axis=0)
    print(f"weak {weak:.3f}  strong {strong:.3f}  per-prompt best {data.outcomes.max(axis=1).mean():.3f}")
    print(f"{'target share':>12} {'strong calls':>12} {'threshold':>9} {'random':>7} {'gain':>6}")
    for share in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        chosen = cross_fitted_choices(data.prompts, data.outcomes, data.models, share)
        routed = score_choices(chosen, data.outcomes, data.models).mean_quality
        baseline = random_routing_quality(data.outcomes, chosen.mean())
        print(f"{share:12.1f} {chosen.mean():12.3f} {routed:9.3f} {baseline:7.3f} {routed - baseline:+6.3f}")


if __name__ == "__main__":
    main()
