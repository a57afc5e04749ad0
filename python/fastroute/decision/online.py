"""Online policies: contextual bandits that keep learning from feedback.

Each policy owns a C++ bandit (``fastroute._core.Bandit``, see
``csrc/bandit.hpp``) with one arm per model. ``select`` decides with the GIL
released and returns a :class:`~fastroute.decision.base.Choice` carrying the
propensity (the probability the policy gave the chosen model) and what it
needs to learn later; the router's feedback store joins a reward to it
(``router.feedback(decision.id, reward=...)``) and calls :meth:`learn`.
Decisions and updates run concurrently: a decision never waits for an update.

- :class:`EpsilonGreedy`, :class:`UCB1`, :class:`ThompsonSampling`: context-free.
- :class:`LinUCB`, :class:`LinThompson`: one ridge regression per model over
  the policy's feature row (``feature_names``): ``log_features`` maps each value
  to sign(x) log1p(|x|), ``fit`` standardises with the training rows' mean and
  spread, values are clipped to +-``clip``, a missing (NaN) value counts as 0.

Common settings: ``explore`` (floor: the share of decisions that pick a model
uniformly, so every model keeps being checked), ``decay`` (each update of a
model multiplies its past statistics by ``decay``; ``window=N`` means
``decay = 1 - 1/N``, an exponential window whose mean age is N updates),
``seed`` (decisions are reproducible for one seed and order of calls),
``cost_weight`` (reward = quality - cost_weight * cost when feedback gives
``quality`` instead of ``reward``), ``latency_weight`` (the executor's measured
latency, in seconds, subtracted likewise), ``error_reward`` (the reward learned,
without user code, when the model raises; None: errors teach nothing) and
``reward_range`` (rewards outside it are refused with InvalidInput).

State: :meth:`save` / :func:`fastroute.decision.load` (npz, no pickle);
:meth:`merge` adds another policy's learned statistics (replicas that learned
apart combine; a warm-start prior is never counted twice).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import _core
from ..analyzer import FEATURE_NAMES, Analysis, BatchAnalysis
from ..errors import InvalidInput, NoRoute, PolicyError
from .base import Choice, Policy
from .compiled import FORMAT, FORMAT_VERSION, as_feature_matrix
from .trees import default_feature_names, training_features, routing_objective

if TYPE_CHECKING:
    from .trees import Forest, Tree

__all__ = [
    "ALGORITHMS",
    "EpsilonGreedy",
    "LinThompson",
    "LinUCB",
    "OnlinePolicy",
    "Outcome",
    "ThompsonSampling",
    "UCB1",
]

#: The C++ bandit's algorithms, in its order (exported by the extension).
ALGORITHMS: tuple[str, ...] = tuple(_core.BANDIT_ALGORITHMS)


class Outcome(NamedTuple):
    """What happened after one decision (any field may be None)."""

    reward: float | None = None
    quality: float | None = None
    cost: float | None = None
    latency: float | None = None  # seconds


class _Learner(NamedTuple):
    """One bandit with the names its arms and columns mean: swapped in one assignment."""

    bandit: Any  # fastroute._core.Bandit
    models: tuple[str, ...]
    feature_names: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    reasons: tuple[str, ...]  # per arm, built once


class Pending(NamedTuple):
    """What a decision needs to learn later: the policy and learner that decided, the arm, the row."""

    policy: OnlinePolicy
    learner: _Learner
    arm: int
    row: np.ndarray | None


class OnlinePolicy(Policy):
    """Base of the online policies: a C++ bandit over ``models`` (see the module doc)."""

    _algorithm = ""
    _contextual = False

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        explore: float = 0.0,
        alpha: float = 1.0,
        decay: float = 1.0,
        window: int | None = None,
        ridge: float = 1.0,
        seed: int = 0,
        feature_names: Sequence[str] = FEATURE_NAMES,
        log_features: bool = True,
        clip: float = 10.0,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        latency_weight: float = 0.0,
        error_reward: float | None = None,
        reward_range: tuple[float, float] | None = None,
    ) -> None:
        if window is not None:
            if decay != 1.0:
                raise PolicyError("give decay= or window=, not both")
            if not isinstance(window, int) or window < 1:
                raise PolicyError(f"window must be a positive int, got {window!r}")
            decay = 1.0 - 1.0 / window if window > 1 else 0.5
        self.explore, self.alpha, self.decay, self.ridge, self.seed = explore, alpha, decay, ridge, seed
        self.log_features, self.clip = log_features, clip
        self.cost_weight = _finite("cost_weight", cost_weight)
        self.latency_weight = _finite("latency_weight", latency_weight)
        self.costs = {str(name): _finite(f"costs[{name!r}]", value) for name, value in (costs or {}).items()}
        self.error_reward = None if error_reward is None else _finite("error_reward", error_reward)
        self.reward_range = None if reward_range is None else _range(reward_range)
        self._feature_names = tuple(feature_names)
        self._learner: _Learner | None = None
        if models is not None:
            self._learner = self._new_learner(tuple(models), self._feature_names, (), ())

    # -- state -------------------------------------------------------------------

    def _new_learner(
        self, models: tuple[str, ...], feature_names: tuple[str, ...], center: Sequence[float], scale: Sequence[float]
    ) -> _Learner:
        if not models or len(set(models)) != len(models) or not all(isinstance(m, str) for m in models):
            raise PolicyError(f"models must be unique model names, got {list(models)}")
        width = len(feature_names) if self._contextual else 0
        try:
            bandit = _core.Bandit(
                self._algorithm, len(models), width, float(self.explore), float(self.alpha), float(self.decay),
                float(self.ridge), int(self.seed), bool(self.log_features), float(self.clip), list(center), list(scale),
            )
        except (InvalidInput, TypeError) as error:
            raise PolicyError(f"{type(self).__name__}: {error}") from None
        reasons = tuple(f"{type(self).__name__} -> {model}" for model in models)
        return _Learner(bandit, models, feature_names, tuple(center), tuple(scale), reasons)

    def _checked(self) -> _Learner:
        learner = self._learner
        if learner is None:
            raise PolicyError(f"{type(self).__name__} has no models: pass models=[...] or call fit() first")
        return learner

    @property
    def models(self) -> tuple[str, ...]:
        """The model names the bandit's arms stand for, in order."""
        learner = self._learner
        return learner.models if learner is not None else ()

    @property
    def feature_names(self) -> tuple[str, ...]:  # type: ignore[override]
        learner = self._learner
        return learner.feature_names if learner is not None else self._feature_names

    def pinned(self) -> OnlinePolicy:
        """A view sharing the current learner: a later fit() swaps this policy's, not the view's."""
        return copy.copy(self)

    # -- deciding ----------------------------------------------------------------

    def select(self, analysis: Analysis, models: Any = None) -> Choice:
        """Choose among the candidate ``models`` (the router's Candidates, or model names; None:
        every arm). The choice's score is the model's estimated reward."""
        learner = self._checked()
        row = self._row(learner, analysis.features) if self._contextual else None
        arm, propensity, score = learner.bandit.decide(row, _allowed(learner.models, models))
        pending = Pending(self, learner, arm, row)
        return Choice(learner.models[arm], learner.reasons[arm], score, propensity=propensity, pending=pending)

    def select_batch(self, batch: BatchAnalysis, models: Any = None) -> list[Choice]:
        """One choice per row; ``models[i]`` are row i's candidates (None: all arms)."""
        return [self.select(batch[i], None if models is None else models[i]) for i in range(len(batch))]

    def decide(self, row: Any = None) -> tuple[int, float]:
        """The chosen arm index (into :attr:`models`) and its propensity for one feature row."""
        learner = self._checked()
        arm, propensity, _ = learner.bandit.decide(self._row(learner, row) if self._contextual else None)
        return arm, propensity

    def estimate(self, row: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Each model's estimated reward for ``row`` and its uncertainty (standard deviation)."""
        learner = self._checked()
        return learner.bandit.estimate(self._row(learner, row) if self._contextual else None)

    @staticmethod
    def _row(learner: _Learner, features: Any) -> np.ndarray:
        if type(features) is np.ndarray and features.dtype == np.float32 and features.ndim == 1:
            if len(features) != len(learner.feature_names):
                raise InvalidInput(
                    f"feature row has {len(features)} values; the policy reads {len(learner.feature_names)}"
                )
            return features
        return as_feature_matrix(features, len(learner.feature_names), "feature row")[0]

    # -- learning ----------------------------------------------------------------

    def reward_of(self, model: str, outcome: Outcome) -> float:
        """The reward an outcome is worth: ``reward`` if given, else quality - cost_weight * cost
        - latency_weight * latency (cost defaults to ``costs[model]``). InvalidInput when
        neither is given, or the reward is NaN, infinite or outside ``reward_range``."""
        if outcome.reward is not None:
            reward = finite_number("reward", outcome.reward)
        elif outcome.quality is not None:
            cost = outcome.cost if outcome.cost is not None else self.costs.get(model, 0.0)
            reward = finite_number("quality", outcome.quality) - self.cost_weight * finite_number("cost", cost)
            if self.latency_weight and outcome.latency is not None:
                reward -= self.latency_weight * finite_number("latency", outcome.latency)
        else:
            raise InvalidInput("feedback needs reward= or quality=")
        if self.reward_range is not None and not self.reward_range[0] <= reward <= self.reward_range[1]:
            raise InvalidInput(f"reward {reward!r} is outside reward_range {list(self.reward_range)}")
        return reward

    def learn(self, pending: Pending, reward: float) -> None:
        """Update the learner that made a decision with its reward (thread-safe)."""
        pending.learner.bandit.update(pending.arm, pending.row, reward)

    def update(self, row: Any, model: str | int, reward: float, weight: float = 1.0) -> None:
        """Learn that ``model`` (name or arm index) earned ``reward`` on feature ``row``."""
        learner = self._checked()
        arm = model if isinstance(model, (int, np.integer)) else _arm(learner, model)
        learner.bandit.update(int(arm), self._row(learner, row) if self._contextual else None, float(reward), weight)

    # -- warm start ----------------------------------------------------------------

    def fit(
        self,
        features: Any,
        outcomes: Any,
        *,
        models: Sequence[str],
        cost: Any = None,
        cost_weight: float | None = None,
        loss: bool = False,
        weight: float = 1.0,
        feature_names: Sequence[str] | None = None,
    ) -> OnlinePolicy:
        """Warm start from logs and return self, as Tree/Forest's ``fit``.

        ``outcomes`` (n, k): each model's quality per input (NaN: not run; a
        loss with ``loss=True``); the prior learns quality - cost_weight * cost
        for every observed cell, each counted ``weight`` times. Linear policies
        also standardise their features with these rows. Replaces what was
        learned before (the prior is kept apart: ``merge`` never adds it twice).
        """
        models = tuple(models)
        weight_of_cost = self.cost_weight if cost_weight is None else cost_weight
        objective = routing_objective(outcomes, len(models), cost=cost, cost_weight=weight_of_cost, loss=loss)
        matrix = training_features(features, len(objective))
        names = default_feature_names(matrix.shape[1], feature_names)
        center, scale = _standardisation(matrix, self.log_features) if self._contextual else ((), ())
        learner = self._new_learner(models, names if self._contextual else self._feature_names, center, scale)
        self._add_prior(learner, matrix, objective, weight)
        self._learner = learner
        return self

    def fit_prior(self, policy: Tree | Forest, features: Any, *, weight: float = 1.0, loss: bool = False) -> OnlinePolicy:
        """Add a fitted Tree or Forest's predicted scores on ``features`` as a prior and return self.

        The tree's models must be among this policy's; its per-model scores
        (negated with ``loss=True``) count as ``weight`` observations each.
        """
        learner = self._checked()
        matrix = training_features(features)
        scores = np.asarray(policy.predict_scores(matrix), dtype=np.float64)
        if loss:
            scores = -scores
        objective = np.full((len(matrix), len(learner.models)), np.nan)
        for column, name in enumerate(policy.models):
            objective[:, _arm(learner, name)] = scores[:, column]
        self._add_prior(learner, matrix, objective, weight)
        return self

    def _add_prior(self, learner: _Learner, matrix: np.ndarray, objective: np.ndarray, weight: float) -> None:
        rows, arms = np.nonzero(~np.isnan(objective))
        rewards = objective[rows, arms]
        if self.reward_range is not None:
            rewards = np.clip(rewards, *self.reward_range)
        features = np.ascontiguousarray(matrix[rows]) if self._contextual else None
        if self._contextual and matrix.shape[1] != len(learner.feature_names):
            raise InvalidInput(f"features have {matrix.shape[1]} columns; the policy reads {len(learner.feature_names)}")
        learner.bandit.add_prior(arms.astype(np.int32), features, rewards, np.full(len(rows), float(weight)))

    # -- combining and keeping -------------------------------------------------------

    def merge(self, other: OnlinePolicy) -> OnlinePolicy:
        """Add what ``other`` learned (its data statistics, not its prior) and return self."""
        mine, theirs = self._checked(), other._checked()
        if type(self) is not type(other) or mine.models != theirs.models or mine.feature_names != theirs.feature_names:
            raise PolicyError(
                f"merge needs the same policy kind, models and features: {type(self).__name__}{list(mine.models)} "
                f"vs {type(other).__name__}{list(theirs.models)}"
            )
        try:
            mine.bandit.merge(theirs.bandit)
        except InvalidInput as error:
            raise PolicyError(f"merge: {error}") from None
        return self

    def save(self, path: str | Path) -> None:
        """Write settings and learned statistics to an ``.npz`` file (no pickle)."""
        learner = self._checked()
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": "online",
            "policy": type(self).__name__,
            "settings": self._settings(),
            "models": list(learner.models),
            "feature_names": list(learner.feature_names),
            "center": list(learner.center),
            "scale": list(learner.scale),
        }
        np.savez(
            path,
            header=np.array(json.dumps(header)),
            data=learner.bandit.export_stats(False),
            prior=learner.bandit.export_stats(True),
        )

    def _settings(self) -> dict[str, Any]:
        return {
            "explore": self.explore, "alpha": self.alpha, "decay": self.decay, "ridge": self.ridge, "seed": self.seed,
            "log_features": self.log_features, "clip": self.clip, "cost_weight": self.cost_weight,
            "costs": self.costs, "latency_weight": self.latency_weight, "error_reward": self.error_reward,
            "reward_range": None if self.reward_range is None else list(self.reward_range),
        }

    @classmethod
    def _from_saved(cls, body: Mapping[str, Any]) -> OnlinePolicy:
        kinds = {kind.__name__: kind for kind in (EpsilonGreedy, UCB1, ThompsonSampling, LinUCB, LinThompson)}
        kind = kinds.get(body["policy"])
        if kind is None:
            raise PolicyError(f"unknown online policy {body['policy']!r}")
        policy = kind._from_settings(dict(body["settings"]))
        learner = policy._new_learner(
            tuple(body["models"]), tuple(body["feature_names"]), tuple(body["center"]), tuple(body["scale"])
        )
        try:
            learner.bandit.import_stats(np.asarray(body["prior"], dtype=np.float64), True)
            learner.bandit.import_stats(np.asarray(body["data"], dtype=np.float64), False)
        except InvalidInput as error:
            raise PolicyError(f"learned statistics: {error}") from None
        policy._learner = learner
        return policy

    @classmethod
    def _from_settings(cls, settings: dict[str, Any]) -> OnlinePolicy:
        return cls(**settings)


class EpsilonGreedy(OnlinePolicy):
    """Epsilon-greedy: the model with the best mean reward, except a share
    ``epsilon`` of decisions that pick a model uniformly. Models never tried go first.
    Regret grows linearly with epsilon * T: use ``decay`` or a small epsilon."""

    _algorithm = "greedy"

    def __init__(self, models: Sequence[str] | None = None, *, epsilon: float = 0.1, **settings: Any) -> None:
        settings.setdefault("explore", epsilon)
        super().__init__(models, **settings)

    @classmethod
    def _from_settings(cls, settings: dict[str, Any]) -> OnlinePolicy:
        return cls(epsilon=settings.pop("explore"), **settings)


class UCB1(OnlinePolicy):
    """UCB1: the best mean + alpha * sqrt(2 ln N / n_model), N all decisions so far.
    Optimism under uncertainty: logarithmic regret for rewards in [0, 1] (alpha=1)."""

    _algorithm = "ucb1"


class ThompsonSampling(OnlinePolicy):
    """Thompson sampling: draw each model's mean from its posterior, take the best.

    ``rewards="beta"``: Bernoulli-style rewards in [0, 1], Beta(1 + sum, 1 + n - sum)
    posteriors. ``rewards="gaussian"``: any real reward, a normal posterior with
    the observed variance (``alpha`` scales its width). Explores in proportion
    to the chance a model is best; the propensity is that chance (computed by
    quadrature; for Beta posteriors from their normal approximation).
    """

    def __init__(self, models: Sequence[str] | None = None, *, rewards: str = "beta", **settings: Any) -> None:
        if rewards not in ("beta", "gaussian"):
            raise PolicyError(f"rewards must be 'beta' or 'gaussian', got {rewards!r}")
        self.rewards = rewards
        self._algorithm = "thompson_beta" if rewards == "beta" else "thompson_gaussian"
        if rewards == "beta" and settings.get("reward_range") is None:
            settings["reward_range"] = (0.0, 1.0)
        super().__init__(models, **settings)

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "rewards": self.rewards}


class LinUCB(OnlinePolicy):
    """Disjoint LinUCB (Li et al. 2010): per model, a ridge regression of the reward
    on the feature row; choose the best mean + alpha * sqrt(z^T A^-1 z), the
    width shrinking as the model sees rows like this one."""

    _algorithm = "linucb"
    _contextual = True


class LinThompson(OnlinePolicy):
    """Linear Thompson sampling (Agrawal and Goyal 2013): per model, draw the
    reward for this row from N(theta^T z, alpha^2 z^T A^-1 z) and take the best."""

    _algorithm = "lin_thompson"
    _contextual = True


# -- helpers -------------------------------------------------------------------------


def _allowed(arms: tuple[str, ...], models: Any) -> np.ndarray | None:
    """The mask of arms among the candidate ``models`` (None: every arm)."""
    if models is None:
        return None
    candidates = {m if isinstance(m, str) else m.name for m in models}  # names, or Candidates
    mask = np.fromiter((arm in candidates for arm in arms), dtype=np.uint8, count=len(arms))
    if not mask.any():
        raise NoRoute(f"none of the policy's models {list(arms)} is a candidate; candidates: {sorted(candidates)}")
    return None if mask.all() else mask


def _arm(learner: _Learner, model: str) -> int:
    try:
        return learner.models.index(model)
    except ValueError:
        raise InvalidInput(f"unknown model {model!r}; the policy's models: {list(learner.models)}") from None


def _standardisation(matrix: np.ndarray, log_features: bool) -> tuple[list[float], list[float]]:
    values = matrix.astype(np.float64)
    if log_features:
        values = np.sign(values) * np.log1p(np.abs(values))
    with warnings.catch_warnings():  # an all-missing column: center 0, scale 1 below
        warnings.simplefilter("ignore", RuntimeWarning)
        center = np.nanmean(values, axis=0) if len(values) else np.zeros(values.shape[1])
        scale = np.nanstd(values, axis=0) if len(values) else np.ones(values.shape[1])
    center = np.where(np.isfinite(center), center, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    return center.tolist(), scale.tolist()


def finite_number(what: str, value: Any) -> float:
    """``value`` as a finite float, or InvalidInput naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{what} must be finite, got {number!r}")
    return number


def _finite(what: str, value: Any) -> float:
    try:
        return finite_number(what, value)
    except InvalidInput as error:
        raise PolicyError(str(error)) from None


def _range(bounds: Any) -> tuple[float, float]:
    low, high = (_finite("reward_range", v) for v in bounds)
    if low > high:
        raise PolicyError(f"reward_range must be (low, high) with low <= high, got {list(bounds)}")
    return low, high
