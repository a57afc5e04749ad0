"""Route between a pool of scikit-learn classifiers, learned from their per-sample correctness.

Self-contained (datasets that ship with scikit-learn): several classifiers are
trained on one half of a dataset; on the other half we log, per sample, which
of them classified it correctly. A fastroute Forest learns from those logs
which classifier to trust for which input, optionally paying for expensive
models (cost_weight), and is judged by 5-fold cross-validation.

An honest negative example: on these small, clean datasets the single best
classifier (logistic regression) is hard to beat; the learned router matches
its accuracy within about one point (gap closed near or below 0), and with
cost_weight it trades a little accuracy for cheaper models.

Run from the repository root:  python examples/sklearn_pool.py
"""

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from fastroute import Forest, cross_validate

POOL = {
    "naive_bayes": (GaussianNB, 1.0),
    "tree": (lambda: DecisionTreeClassifier(max_depth=6, random_state=0), 1.0),
    "logistic": (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), 2.0),
    "knn": (lambda: make_pipeline(StandardScaler(), KNeighborsClassifier(5)), 10.0),
}


def correctness_logs(features, labels, seed=0):
    """Train the pool on one half; return the other half's features and per-model correctness."""
    train_x, log_x, train_y, log_y = train_test_split(features, labels, test_size=0.5, random_state=seed, stratify=labels)
    outcomes = np.column_stack([make().fit(train_x, train_y).predict(log_x) == log_y for make, _ in POOL.values()])
    return log_x.astype(np.float32), outcomes.astype(np.float64)


def main() -> None:
    costs = np.array([cost for _, cost in POOL.values()])
    print(f"models: {list(POOL)}  costs: {costs.tolist()}")
    for name, loader in (("digits", load_digits), ("wine", load_wine), ("breast_cancer", load_breast_cancer)):
        data = loader()
        features, outcomes = correctness_logs(data.data, data.target)
        for method, cost_weight in (("regression", 0.0), ("classification", 0.0), ("regression", 0.01)):
            result = cross_validate(
                Forest(n_trees=50, method=method), features, outcomes, models=list(POOL), folds=5,
                cost=costs, cost_weight=cost_weight,
            )
            print(
                f"{name:14} {method:14} cost_weight {cost_weight:<5} accuracy {result.mean_quality:.3f} "
                f"(single best {result.single_best} {result.single_best_quality:.3f}, "
                f"per-sample best {outcomes.max(axis=1).mean():.3f})  mean cost {result.mean_cost:.2f}  "
                f"gap closed {result.gap_closed:.2f}"
            )


if __name__ == "__main__":
    main()
