"""Text routing measured on the real logs: the figures the tests and benchmarks report.

- :func:`routerdc_quality`: RouterDC 7-LLM, a :class:`~fastroute.Linear`
  policy trained on the five train sets, the average test score over the five
  benchmarks beside the single best model and the per-prompt oracle.
- :func:`gsm8k_quality`: RouteLLM GSM8K, 5-fold cross-validation per seed,
  APGR, CPT(50%) and CPT(80%) of the strong model's predicted advantage
  (:func:`~fastroute.strong_weak_curve`), averaged over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analyzer import HashedNgrams
from ..decision.evaluate import strong_weak_curve
from ..decision.linear import Linear
from .datasets import load_gsm8k, load_routerdc

__all__ = ["gsm8k_quality", "routerdc_quality"]


def routerdc_quality(folder: str | Path, text: HashedNgrams, *, alpha: float = 10.0,
                     balanced: bool = True) -> dict[str, float]:
    """Points (0-100) of average test score: ``average``, ``single_best``, ``gain``, ``oracle``.

    ``balanced`` weighs each benchmark's training prompts so that every
    benchmark counts the same, as the measure does.
    """
    train, test = load_routerdc(folder, "train"), load_routerdc(folder, "test")
    weight = None
    if balanced:
        counts = np.bincount(train.benchmark)
        weight = (len(train.benchmark) / len(counts)) / counts[train.benchmark]
    policy = Linear(text, alpha=alpha).fit(train.prompts, train.outcomes, models=train.models, sample_weight=weight)
    routed = test.mean_by_benchmark(policy.predict(test.prompts)).mean()
    per_model = [test.mean_by_benchmark(np.full(len(test.prompts), m)).mean() for m in range(len(test.models))]
    oracle = np.mean([test.outcomes[test.benchmark == b].max(axis=1).mean() for b in range(len(test.benchmarks))])
    best = max(per_model)
    return {"average": 100 * routed, "single_best": 100 * best, "gain": 100 * (routed - best), "oracle": 100 * oracle}


def gsm8k_quality(path: str | Path, text: HashedNgrams, *, alpha: float = 10.0, seeds: int = 5) -> dict[str, float]:
    """``APGR``, ``CPT50``, ``CPT80`` (call shares) of 5-fold cross-validation, averaged over ``seeds``."""
    data = load_gsm8k(path)
    prompts = np.array(data.prompts, dtype=object)
    curves = []
    for seed in range(seeds):
        fold = np.random.default_rng(seed).permutation(np.arange(len(prompts)) % 5)
        advantage = np.empty(len(prompts))
        for f in range(5):
            held = fold == f
            policy = Linear(text, alpha=alpha).fit(list(prompts[~held]), data.outcomes[~held], models=data.models)
            scores = policy.scores(list(prompts[held]))
            advantage[held] = scores[:, 1] - scores[:, 0]
        curves.append(strong_weak_curve(advantage, data.outcomes))
    return {"APGR": float(np.mean([c.apgr for c in curves])), "CPT50": float(np.mean([c.cpt(0.5) for c in curves])),
            "CPT80": float(np.mean([c.cpt(0.8) for c in curves]))}
