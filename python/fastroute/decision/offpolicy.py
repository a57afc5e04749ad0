"""Off-policy evaluation: how would a candidate policy have done on logged decisions?

A log holds, per decision: the chosen model (``actions``, indices), the
probability the logging policy gave it (``propensities``, as
:class:`~fastroute.router.Decision` records them) and the observed
``rewards``. The candidate policy is given as ``target``: the model index it
would choose per row (a deterministic policy, e.g. ``tree.predict(features)``)
or an (n, k) matrix of its choice probabilities.

- :func:`ips`: inverse propensity scoring, unbiased when every propensity is right
  and positive wherever the target chooses; high variance with small propensities.
- :func:`snips`: self-normalised IPS, slightly biased, far lower variance.
- :func:`doubly_robust`: a reward model's prediction for the target's choice,
  corrected by IPS on its residuals: unbiased if either the propensities or
  the reward model is right, usually the tightest. :func:`fit_reward_model`
  gives cross-fitted predictions (each row predicted by a model that did not
  see it).

Each returns an :class:`Estimate` with a normal-approximation confidence
interval (``confidence``, default 0.95).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .feedback import LoggedDecision

__all__ = ["Estimate", "doubly_robust", "fit_reward_model", "from_logged", "ips", "snips"]


@dataclass(frozen=True)
class Estimate:
    """An estimated mean reward per decision, with its confidence interval."""

    value: float
    low: float
    high: float
    n: int
    effective_n: float  # (sum w)^2 / sum w^2 of the importance weights: how many rows really count

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def ips(actions: Any, propensities: Any, rewards: Any, target: Any, *, confidence: float = 0.95) -> Estimate:
    """Inverse propensity scoring: the mean of pi(a_i | x_i) / p_i * r_i."""
    a, p, r, pi = _checked(actions, propensities, rewards, target)
    weights = pi[np.arange(len(a)), a] / p
    return _interval(weights * r, weights, confidence)


def snips(actions: Any, propensities: Any, rewards: Any, target: Any, *, confidence: float = 0.95) -> Estimate:
    """Self-normalised IPS: sum(w_i r_i) / sum(w_i); interval by the delta method."""
    a, p, r, pi = _checked(actions, propensities, rewards, target)
    weights = pi[np.arange(len(a)), a] / p
    total = weights.sum()
    if total <= 0:
        raise InvalidInput("the target never chooses a logged action: SNIPS is undefined")
    value = float((weights * r).sum() / total)
    influence = weights * (r - value) / weights.mean()  # the estimator's linearisation
    return _interval(influence, weights, confidence, center=value)


def doubly_robust(
    actions: Any, propensities: Any, rewards: Any, target: Any, predicted: Any, *, confidence: float = 0.95
) -> Estimate:
    """Doubly robust: sum_a pi(a|x_i) q(x_i, a) + pi(a_i|x_i) / p_i * (r_i - q(x_i, a_i)).

    ``predicted`` (n, k): a reward model's estimate q for every model on every
    row (e.g. :func:`fit_reward_model`).
    """
    a, p, r, pi = _checked(actions, propensities, rewards, target)
    q = np.asarray(predicted, dtype=np.float64)
    if q.shape != pi.shape or not np.isfinite(q).all():
        raise InvalidInput(f"predicted must be finite with shape {pi.shape}, got {q.shape}")
    rows = np.arange(len(a))
    weights = pi[rows, a] / p
    terms = (pi * q).sum(axis=1) + weights * (r - q[rows, a])
    return _interval(terms, weights, confidence)


def fit_reward_model(
    features: Any, actions: Any, rewards: Any, n_models: int, *, folds: int = 2, seed: int = 0, n_trees: int = 50
) -> np.ndarray:
    """Cross-fitted (n, k) reward predictions: per fold, one random forest per model
    learns from the other folds' rows where that model was chosen (needs scikit-learn)."""
    from sklearn.ensemble import RandomForestRegressor

    x = np.nan_to_num(np.asarray(features, dtype=np.float64), nan=-1.0)
    a = np.asarray(actions, dtype=np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    if len(x) != len(a) or len(a) != len(r) or folds < 2:
        raise InvalidInput("features, actions and rewards need one row each per decision, and folds >= 2")
    fold = np.random.default_rng(seed).permutation(len(a)) % folds
    predicted = np.empty((len(a), n_models))
    for f in range(folds):
        train = fold != f
        for model in range(n_models):
            chosen = train & (a == model)
            if not chosen.any():
                predicted[fold == f, model] = r[train].mean()
                continue
            forest = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=5, random_state=seed)
            predicted[fold == f, model] = forest.fit(x[chosen], r[chosen]).predict(x[fold == f])
    return predicted


def from_logged(records: Sequence[LoggedDecision], models: Sequence[str]) -> tuple[np.ndarray, ...]:
    """(features, actions, propensities, rewards) arrays from a feedback store's ``logged()``."""
    index = {name: i for i, name in enumerate(models)}
    unknown = sorted({r.model for r in records} - set(index))
    if unknown:
        raise InvalidInput(f"logged models {unknown} are not among {list(models)}")
    rows = [r.features for r in records]
    features = np.stack(rows) if rows and all(row is not None for row in rows) else np.empty((len(records), 0))
    return (
        features,
        np.array([index[r.model] for r in records], dtype=np.int64),
        np.array([r.propensity for r in records], dtype=np.float64),
        np.array([r.reward for r in records], dtype=np.float64),
    )


def _checked(actions: Any, propensities: Any, rewards: Any, target: Any) -> tuple[np.ndarray, ...]:
    a = np.asarray(actions)
    p = np.asarray(propensities, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if a.ndim != 1 or p.shape != a.shape or r.shape != a.shape or len(a) == 0:
        raise InvalidInput(f"actions, propensities and rewards must be 1-D of one length > 0, got {a.shape}, "
                           f"{p.shape}, {r.shape}")
    if a.dtype.kind not in "iu" or (a < 0).any():
        raise InvalidInput("actions must be non-negative model indices")
    if not np.isfinite(r).all():
        raise InvalidInput(f"rewards must be finite (row {int(np.flatnonzero(~np.isfinite(r))[0])} is not)")
    if not (np.isfinite(p) & (p > 0) & (p <= 1)).all():
        raise InvalidInput(f"propensities must be in (0, 1] (row {int(np.flatnonzero(~((p > 0) & (p <= 1)))[0])})")
    t = np.asarray(target)
    if t.ndim == 1:
        if t.shape != a.shape or t.dtype.kind not in "iu" or (t < 0).any():
            raise InvalidInput("a 1-D target must hold one model index per row")
        pi = np.zeros((len(a), int(max(t.max(), a.max())) + 1))
        pi[np.arange(len(a)), t] = 1.0
    else:
        pi = t.astype(np.float64)
        if pi.ndim != 2 or len(pi) != len(a) or a.max() >= pi.shape[1]:
            raise InvalidInput(f"target probabilities must have shape (n, k) covering every action, got {pi.shape}")
        if not (np.isfinite(pi).all() and (pi >= 0).all() and np.allclose(pi.sum(axis=1), 1.0)):
            raise InvalidInput("target probabilities must be non-negative rows summing to 1")
    if pi.shape[1] <= a.max():
        pi = np.pad(pi, ((0, 0), (0, int(a.max()) + 1 - pi.shape[1])))
    return a.astype(np.int64), p, r, pi


def _interval(terms: np.ndarray, weights: np.ndarray, confidence: float, center: float | None = None) -> Estimate:
    if not 0 < confidence < 1:
        raise InvalidInput(f"confidence must be in (0, 1), got {confidence!r}")
    n = len(terms)
    value = float(terms.mean()) if center is None else center
    spread = float(terms.std(ddof=1)) / np.sqrt(n) if n > 1 else float("inf")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    squares = float((weights**2).sum())
    effective = float(weights.sum() ** 2 / squares) if squares > 0 else 0.0
    return Estimate(value, value - z * spread, value + z * spread, n, effective)
