"""Run the model-library example: ``python examples/run_library.py [config.yaml]``.

Builds a router from ``library.yaml``, sends a stream of reviews (text) and
feature rows (tabular) through it, then prints which versions served, the
canary's steps with their reasons, and what the shadow measured.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the config's import paths ("library_models:...") live here

import fastroute  # noqa: E402

REVIEWS = [
    "great product, fast delivery",
    "not good at all",
    "terrible support and slow",
    "not bad, I love it",
    "it is fine",
    "never helpful, broken on arrival",
]


def main(config: Path) -> None:
    router = fastroute.Router.from_config(config)
    rng = np.random.default_rng(0)
    served: Counter[tuple[str, str]] = Counter()
    for i in range(3000):
        user = f"user-{i % 500}"
        x = REVIEWS[i % len(REVIEWS)] if i % 2 else rng.normal(size=4).astype(np.float32)
        decision = router.route(x, key=user)
        router.infer(x, key=user)
        served[(decision.model, decision.version)] += 1

    print("requests served per model version:")
    for (model, version), count in sorted(served.items()):
        print(f"  {model} v{version}: {count}")
    canary = router.models.experiment("sentiment")
    print(f"sentiment canary: {canary.state}, candidate share {canary.share:g}")
    for event in canary.history:
        print(f"  {event.action:>8} -> share {event.share:<5g} {event.reason}")
    shadow = router.models.shadow("risk")
    shadow.wait_idle(timeout=10)
    differences = [r.comparison for r in shadow.records() if r.status == "ok"]
    print(f"risk shadow (v{shadow.version}): {shadow.counts()}, "
          f"mean |served - shadow| = {np.mean(differences):.4f}")
    print("last decision:", router.route("not bad", key="user-1"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "library.yaml")
