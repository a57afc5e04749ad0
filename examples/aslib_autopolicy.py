"""AutoPolicy on real ASlib scenarios: the learner chosen per outer fold, and the gap it closes.

The outer loop is each scenario's own ten folds (cv.arff); in each, AutoPolicy
chooses among its default learners by inner cross-validation on the nine
training folds only, refits the winner on them and routes the held-out fold.

Run from the repository root:  python examples/aslib_autopolicy.py [n_trees]
"""

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from fastroute import AutoPolicy
from fastroute.decision.auto import default_learners
from fastroute.decision.evaluate import score_choices
from fastroute.tools.datasets import load_aslib

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aslib"
PUBLISHED_GAP_CLOSED = {"QBF-2011": 0.883, "MAXSAT12-PMS": 0.877}


def main(n_trees: int = 30) -> None:
    for scenario, published in PUBLISHED_GAP_CLOSED.items():
        data = load_aslib(DATA / scenario)
        start = time.perf_counter()
        chosen = np.empty(len(data.instances), dtype=np.int64)
        picks = []
        for fold in np.unique(data.folds):
            test = data.folds == fold
            auto = AutoPolicy(default_learners(n_trees), inner_folds=3).fit(
                data.features[~test], data.outcomes[~test], models=data.models, loss=True,
                feature_names=data.feature_names)
            chosen[test] = auto.predict(data.features[test])
            picks.append(auto.chosen)
            print(f"{scenario} fold {fold}: {auto.chosen}")
        result = score_choices(chosen, data.outcomes, data.models, loss=True)
        print(f"{scenario}: AutoPolicy gap closed {result.gap_closed:.3f} (published selector {published:.3f}), "
              f"PAR10 {result.mean_quality:.1f} (SBS {result.single_best_quality:.1f}, "
              f"VBS {result.oracle_quality:.1f}), {time.perf_counter() - start:.0f} s")
        print("  chosen per fold: " + ", ".join(f"{name} x{count}" for name, count in Counter(picks).items()))
        print(auto.report)  # the last fold's report


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
