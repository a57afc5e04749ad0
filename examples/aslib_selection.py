"""Algorithm selection on real ASlib scenarios: how much of the gap a fastroute Forest closes.

For each scenario, a Forest is fitted on nine of the scenario's own ten folds
(cv.arff) and routes the tenth; PAR10 over all instances is compared with the
single best solver (SBS) and the per-instance best (VBS), and with the
published random-forest selector of the ASlib study.

Run from the repository root:  python examples/aslib_selection.py [n_trees]
"""

import sys
import time
from pathlib import Path

from fastroute import Forest, cross_validate
from fastroute.tools.datasets import load_aslib

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aslib"
PUBLISHED_GAP_CLOSED = {"QBF-2011": 0.883, "MAXSAT12-PMS": 0.877}


def main(n_trees: int = 100) -> None:
    print(f"{'scenario':14} {'method':15} {'SBS':>9} {'VBS':>9} {'fastroute':>9} {'gap closed':>10} {'published':>9}")
    for scenario, published in PUBLISHED_GAP_CLOSED.items():
        data = load_aslib(DATA / scenario)
        for method in ("regression", "classification"):
            start = time.perf_counter()
            result = cross_validate(
                Forest(n_trees=n_trees, method=method, n_jobs=-1), data.features, data.outcomes,
                models=data.models, folds=data.folds, loss=True, feature_names=data.feature_names,
            )
            print(
                f"{scenario:14} {method:15} {result.single_best_quality:9.1f} {result.oracle_quality:9.1f} "
                f"{result.mean_quality:9.1f} {result.gap_closed:10.3f} {published:9.3f}"
                f"   ({time.perf_counter() - start:.0f} s)"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
