"""Judge a routing policy on logged outcomes: the standard algorithm-selection measures."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..errors import InvalidInput, PolicyError
from .trees import training_features, routing_objective

__all__ = ["Evaluation", "StrongWeakCurve", "cross_validate", "evaluate", "score_choices", "strong_weak_curve"]


@dataclass(frozen=True)
class Evaluation:
    """How a policy did on logged inputs (qualities in the caller's units; for
    ``loss=True`` the mean is a loss again, lower is better).

    ``gap_closed`` = (policy - single best) / (oracle - single best) on the
    objective: 1 matches the per-input best model, 0 the single best model.
    """

    n: int
    accuracy: float  # share of inputs sent to one of their per-input best models
    mean_quality: float
    mean_cost: float
    regret: float  # mean objective lost against the per-input best
    single_best: str  # the model with the best mean objective
    single_best_quality: float
    oracle_quality: float  # NaN with cost_weight: the per-input best then depends on cost too
    gap_closed: float  # on the objective, quality - cost_weight * cost

    def __repr__(self) -> str:
        """Every field, figures to four significant digits: readable in a log or a notebook."""
        parts = [
            f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value!r}"
            for name, value in ((f.name, getattr(self, f.name)) for f in fields(self))
        ]
        return f"Evaluation({', '.join(parts)})"


def score_choices(
    chosen: Any, outcomes: Any, models: Sequence[str], *, cost: Any = None, cost_weight: float = 0.0,
    loss: bool = False
) -> Evaluation:
    """Evaluate given model indices (n,) against outcomes (n, k)."""
    objective = routing_objective(outcomes, len(models), cost=cost, cost_weight=cost_weight, loss=loss)
    quality = -np.asarray(outcomes, dtype=np.float64) if loss else np.asarray(outcomes, dtype=np.float64)
    chosen = np.asarray(chosen, dtype=np.int64)
    rows = np.arange(len(objective))
    if chosen.shape != (len(objective),):
        raise InvalidInput(f"{chosen.shape} choices for {len(objective)} inputs")
    if np.isnan(objective[rows, chosen]).any():
        row = int(np.flatnonzero(np.isnan(objective[rows, chosen]))[0])
        raise InvalidInput(f"the policy chose {models[chosen[row]]!r} for input {row}, whose outcome is missing")
    best = np.nanmax(objective, axis=1)
    policy = objective[rows, chosen].mean()
    column_means = np.nanmean(objective, axis=0)
    single = int(np.argmax(column_means))
    oracle = best.mean()
    gap = oracle - column_means[single]
    costs = np.zeros_like(objective) if cost is None else np.broadcast_to(np.asarray(cost, float), objective.shape)
    sign = -1.0 if loss else 1.0
    return Evaluation(
        n=len(objective),
        accuracy=float((objective[rows, chosen] >= best).mean()),
        mean_quality=float(sign * quality[rows, chosen].mean()),
        mean_cost=float(costs[rows, chosen].mean()),
        regret=float(oracle - policy),
        single_best=models[single],
        single_best_quality=float(sign * np.nanmean(quality[:, single])),
        oracle_quality=float(sign * np.nanmax(quality, axis=1).mean()) if not cost_weight else float("nan"),
        gap_closed=float((policy - column_means[single]) / gap) if gap > 0 else float("nan"),
    )


def evaluate(
    policy: Any, features: Any, outcomes: Any, *, cost: Any = None, cost_weight: float = 0.0, loss: bool = False
) -> Evaluation:
    """Route every logged input with ``policy`` and measure the result.

    ``outcomes`` (n, k) has one column per model of ``policy.models`` (higher
    is better, or a loss with ``loss=True``); ``cost`` per model (k,) or per
    cell (n, k). NaN marks a model that was not run; the policy must not pick it.
    """
    matrix = training_features(features, len(np.asarray(outcomes)))
    return score_choices(policy.predict(matrix), outcomes, policy.models, cost=cost, cost_weight=cost_weight, loss=loss)


def cross_validate(
    policy: Any,
    features: Any,
    outcomes: Any,
    *,
    models: Sequence[str],
    folds: int | Any = 10,
    cost: Any = None,
    cost_weight: float = 0.0,
    loss: bool = False,
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
) -> Evaluation:
    """Fit a copy of ``policy`` on all folds but one, route the held-out fold, repeat.

    ``folds`` is a fold count (a seeded random split) or an array giving each
    input's fold (e.g. an ASlib scenario's cv.arff). The measures are computed
    over every input's out-of-fold choice, the single best model over all inputs.
    """
    matrix = training_features(features, len(np.asarray(outcomes)))
    fold_of = _fold_ids(folds, len(matrix), seed)
    chosen = np.empty(len(matrix), dtype=np.int64)
    cost_matrix = None if cost is None or np.ndim(cost) < 2 else np.asarray(cost)
    for fold in np.unique(fold_of):
        test = fold_of == fold
        fitted = copy.deepcopy(policy).fit(
            matrix[~test], np.asarray(outcomes)[~test], models=models, loss=loss, cost_weight=cost_weight,
            cost=cost if cost_matrix is None else cost_matrix[~test], feature_names=feature_names)
        chosen[test] = fitted.predict(matrix[test])
    return score_choices(chosen, outcomes, models, cost=cost, cost_weight=cost_weight, loss=loss)


def _fold_ids(folds: int | Any, n: int, seed: int) -> np.ndarray:
    if np.ndim(folds) == 0:
        k = int(folds)
        if not 2 <= k <= n:
            raise PolicyError(f"folds must be between 2 and the number of inputs ({n}), got {k}")
        return np.random.default_rng(seed).permutation(np.arange(n) % k)
    fold_of = np.asarray(folds)
    if fold_of.shape != (n,):
        raise InvalidInput(f"folds must give one fold per input ({n}), got shape {fold_of.shape}")
    return fold_of


@dataclass(frozen=True)
class StrongWeakCurve:
    """How a strong/weak router trades calls to the strong model for quality (RouteLLM's measures).

    ``call_share[j]`` = j/n: the top-j inputs by score go to the strong model;
    ``pgr[j]``: the performance gap recovered there, (quality - weak) /
    (strong - weak). ``apgr``: the area under PGR over call share 0..100%
    (trapezoids over all n + 1 points). ``cpt(x)``: the least call share
    reaching PGR x (CPT(50%) = ``cpt(0.5)``).
    """

    apgr: float
    weak_quality: float
    strong_quality: float
    call_share: np.ndarray
    pgr: np.ndarray

    def cpt(self, recovered: float) -> float:
        """The least share of calls to the strong model that recovers ``recovered`` of the gap."""
        reached = np.flatnonzero(self.pgr >= recovered - 1e-12)
        return float(self.call_share[reached[0]]) if reached.size else float("nan")


def strong_weak_curve(scores: Any, outcomes: Any) -> StrongWeakCurve:
    """APGR and CPT of a router's ``scores`` (n,) on two-model ``outcomes`` (n, 2): (weak, strong).

    A higher score means "send to the strong model"; ties keep input order.
    Raises InvalidInput when the shapes disagree, a value is missing, or the
    strong model is not better than the weak one on average (no gap to recover).
    """
    quality = np.asarray(outcomes, dtype=np.float64)
    score = np.asarray(scores, dtype=np.float64)
    if quality.ndim != 2 or quality.shape[1] != 2 or score.shape != (len(quality),) or len(quality) == 0:
        raise InvalidInput(f"need scores (n,) and outcomes (n, 2), got {score.shape} and {quality.shape}")
    if np.isnan(quality).any() or np.isnan(score).any():
        raise InvalidInput("strong_weak_curve needs every outcome and score (no NaN)")
    weak, strong = quality[:, 0], quality[:, 1]
    gap = strong.mean() - weak.mean()
    if not gap > 0:
        raise InvalidInput(f"the strong model ({strong.mean():.4g}) must beat the weak one ({weak.mean():.4g}) on average")
    order = np.argsort(-score, kind="stable")
    gained = np.concatenate([[0.0], np.cumsum((strong - weak)[order])]) / len(quality)
    pgr = gained / gap
    share = np.arange(len(quality) + 1) / len(quality)
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(share)))
    return StrongWeakCurve(apgr, float(weak.mean()), float(strong.mean()), share, pgr)
