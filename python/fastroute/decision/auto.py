"""AutoPolicy: choose the learner (and its key settings) by inner cross-validation on the training logs.

No single learner wins on every routing log (round 1: forest regression wins on
ASlib QBF-2011, classification on MAXSAT12-PMS). :class:`AutoPolicy` tries a
small grid of learners on the training data only (k seeded inner folds,
scored by the routing objective: the mean outcome of the chosen models, as
:func:`~fastroute.decision.evaluate.cross_validate` measures it), refits the
winner on all of it and then serves through the winner.

Learners besides :class:`Forest`: :class:`LogForest` (forest regression of
log-transformed losses such as runtimes) and :class:`Pairwise` (one forest
classifier per pair of models, each weighted by the pair's outcome difference;
the models' votes decide).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInput, PolicyError
from .base import BatchChoice, Candidates, Choice, Policy
from .compiled import as_feature_matrix
from .evaluate import Evaluation, cross_validate
from .masks import no_route
from .trees import Forest, default_feature_names, routing_objective, training_features

__all__ = ["AutoPolicy", "LogForest", "Pairwise", "Trial", "default_learners"]


class LogForest(Forest):
    """Forest regression of log(1 + loss): for runtimes, whose few huge values (timeouts) dominate a
    plain regression. Needs ``loss=True``, losses >= 0 and no cost term. Saved as a plain Forest
    (the same decisions: the leaves hold the negated log-losses)."""

    def fit(self, features: Any, outcomes: Any, *, models: Sequence[str], cost: Any = None,
            cost_weight: float = 0.0, loss: bool = False, feature_names: Sequence[str] | None = None) -> Any:
        """As :meth:`Forest.fit` on ``log1p(outcomes)``; PolicyError when that does not apply."""
        values = np.asarray(outcomes, dtype=np.float64)
        if not loss or cost_weight or (np.nan_to_num(values) < 0).any():
            raise PolicyError("LogForest regresses log(1 + loss): it needs loss=True, losses >= 0 and no cost_weight")
        return super().fit(features, np.log1p(values), models=models, loss=True, feature_names=feature_names)


class Pairwise(Policy):
    """Pairwise classification: one forest classifier per pair of models predicts which of the two
    is better, each input weighted by the difference of their objectives; a model's score is its
    summed win probability against the other candidates, and the top score wins.

    A Python policy over compiled forests (one per pair): it serves ``select``, ``select_batch``,
    ``predict`` and ``decide_batch`` but has no ``save``.
    """

    def __init__(self, *, n_trees: int = 50, max_features: Any = 1.0, min_samples_leaf: int = 1,
                 random_state: int | None = 0, n_jobs: int = 1) -> None:
        self._forest = Forest(n_trees=n_trees, max_features=max_features, min_samples_leaf=min_samples_leaf,
                              method="classification", random_state=random_state, n_jobs=n_jobs)
        self._models: tuple[str, ...] = ()
        self._pairs: list[tuple[int, int, Forest | int]] = []  # (i, j, classifier, or the index always better)
        self.feature_names: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        if not self._pairs and len(self._models) != 1:
            raise PolicyError("Pairwise is not fitted: call fit() first")
        return self._models

    def fit(self, features: Any, outcomes: Any, *, models: Sequence[str], cost: Any = None,
            cost_weight: float = 0.0, loss: bool = False, feature_names: Sequence[str] | None = None) -> Pairwise:
        """Learn from logs (as :meth:`Forest.fit`) and return self."""
        objective = routing_objective(outcomes, len(models), cost=cost, cost_weight=cost_weight, loss=loss)
        matrix = training_features(features, len(objective))
        names = default_feature_names(matrix.shape[1], feature_names)
        pairs: list[tuple[int, int, Forest | int]] = []
        for i, j in combinations(range(len(models)), 2):
            both = ~np.isnan(objective[:, [i, j]]).any(axis=1)
            pair = objective[both][:, [i, j]]
            if len(pair) == 0 or (pair[:, 0] == pair[:, 1]).all():  # nothing to learn: the better on average
                pairs.append((i, j, i if np.nanmean(objective[:, i]) >= np.nanmean(objective[:, j]) else j))
                continue
            forest = copy.deepcopy(self._forest).fit(matrix[both], pair, models=[models[i], models[j]],
                                                     feature_names=names)
            pairs.append((i, j, forest))
        self._models, self._pairs, self.feature_names = tuple(models), pairs, names
        return self

    def votes(self, features: Any, allowed: np.ndarray | None = None) -> np.ndarray:
        """(n, k) summed win probabilities over the pairs of ``allowed`` models (all by default);
        -inf for a model not allowed."""
        k = len(self.models)
        allowed = np.ones(k, dtype=bool) if allowed is None else allowed
        matrix = as_feature_matrix(features, len(self.feature_names))
        votes = np.zeros((len(matrix), k))
        for i, j, learned in self._pairs:
            if not (allowed[i] and allowed[j]):
                continue
            if isinstance(learned, Forest):
                votes[:, [i, j]] += learned.predict_scores(matrix)
            else:
                votes[:, learned] += 1.0
        votes[:, ~allowed] = -np.inf
        return votes

    def predict(self, features: Any, threads: int = 0) -> np.ndarray:
        """The chosen model index of every row (int32)."""
        return np.argmax(self.votes(features), axis=1).astype(np.int32)

    def _allowed(self, candidates: Candidates | None) -> np.ndarray | None:
        if candidates is None:
            return None
        names = set(candidates.names)
        return np.array([model in names for model in self.models], dtype=bool)

    def decide_batch(self, features: Any, threads: int = 0) -> BatchChoice:
        """Model indices, top votes and margins for an (n, F) matrix (every model a candidate)."""
        votes = self.votes(features)
        index = np.argmax(votes, axis=1).astype(np.int32)
        ordered = np.sort(votes, axis=1)
        margin = ordered[:, -1] - ordered[:, -2] if votes.shape[1] > 1 else np.full(len(votes), np.nan)
        return BatchChoice(self.models, index, ordered[:, -1].astype(np.float32), margin.astype(np.float32))

    def select(self, analysis: Any, candidates: Candidates | None = None) -> Choice:
        """The candidate with the most pairwise votes among ``candidates``; NoRoute when none is a model."""
        return self._choose(analysis.features, candidates, analysis.modality)[0]

    def select_batch(self, batch: Any, candidates: Sequence[Candidates] | None = None) -> list[Choice]:
        """One Choice per row; rows with the same candidates are voted together."""
        features = np.asarray(batch.features)
        choices: list[Choice | None] = [None] * len(features)
        groups: dict[Any, list[int]] = {}  # candidate names -> rows
        for row in range(len(features)):
            groups.setdefault(None if candidates is None else (candidates[row].modality, candidates[row].names),
                              []).append(row)
        for rows in groups.values():
            group = None if candidates is None else candidates[rows[0]]
            modality = "tabular" if group is None else group.modality
            for row, choice in zip(rows, self._choose(features[rows], group, modality, rows[0])):
                choices[row] = choice
        return choices  # type: ignore[return-value]

    def _choose(self, features: Any, candidates: Candidates | None, modality: str, first_row: int | None = None
                ) -> list[Choice]:
        allowed = self._allowed(candidates)
        if allowed is not None and not allowed.any():
            raise no_route(modality, candidates, self.models, first_row)
        votes = self.votes(features, allowed)
        opponents = (int(allowed.sum()) if allowed is not None else len(self.models)) - 1
        return [
            Choice(self.models[best], f"pairwise: {row[best]:.3g} of {opponents} votes -> {self.models[best]}",
                   float(row[best]))
            for row, best in zip(votes, np.argmax(votes, axis=1).tolist())
        ]


@dataclass(frozen=True)
class Trial:
    """One learner's inner cross-validation: its routing measures on the training data, or why it failed."""

    name: str
    evaluation: Evaluation | None
    error: str = ""

    @property
    def regret(self) -> float:
        """Mean objective lost against the per-input best (what AutoPolicy minimises); inf if it failed."""
        return self.evaluation.regret if self.evaluation is not None else float("inf")


def default_learners(n_trees: int = 50, *, max_features: Sequence[Any] = (1.0,), random_state: int = 0,
                     n_jobs: int = 1) -> list[tuple[str, Any]]:
    """The default grid: forest regression, forest classification, log-loss forest regression and
    pairwise classification, ``n_trees`` trees each, for each share of features per split in
    ``max_features`` (one by default: each setting adds four learners to fit per inner fold)."""
    learners: list[tuple[str, Any]] = []
    common = {"n_trees": n_trees, "random_state": random_state, "n_jobs": n_jobs}
    for share in max_features:
        learners += [
            (f"forest regression, max_features={share}", Forest(max_features=share, **common)),
            (f"forest classification, max_features={share}",
             Forest(max_features=share, method="classification", **common)),
            (f"log-loss forest regression, max_features={share}", LogForest(max_features=share, **common)),
            (f"pairwise classification, max_features={share}", Pairwise(max_features=share, **common)),
        ]
    return learners


class AutoPolicy(Policy):
    """Picks a learner and its settings by inner cross-validation on the training data, then serves
    through it (``select``, ``select_batch``, ``predict``, ``decide_batch``, ``save`` where the winner
    has them; a :class:`Pairwise` winner is a Python policy and cannot be saved).

    ``learners``: (name, unfitted policy) pairs, tried in order (a tie goes to the earlier one);
    :func:`default_learners` by default. ``inner_folds`` seeded random folds (``seed``). After
    ``fit``: ``chosen`` (the winner's name), ``policy`` (the winner refitted on all the data),
    ``trials`` and ``report`` (what was tried, each inner score, and why the winner won).
    """

    def __init__(self, learners: Sequence[tuple[str, Any]] | None = None, *, inner_folds: int = 3,
                 seed: int = 0) -> None:
        self.learners = list(default_learners() if learners is None else learners)
        if not self.learners:
            raise PolicyError("AutoPolicy needs at least one learner")
        if len({name for name, _ in self.learners}) != len(self.learners):
            raise PolicyError("AutoPolicy learner names must be distinct")
        self.inner_folds, self.seed = inner_folds, seed
        self.trials: tuple[Trial, ...] = ()
        self.chosen = ""
        self._policy: Any = None

    @property
    def policy(self) -> Any:
        """The winning learner, refitted on all the training data."""
        if self._policy is None:
            raise PolicyError("AutoPolicy is not fitted: call fit() first")
        return self._policy

    def fit(self, features: Any, outcomes: Any, *, models: Sequence[str], cost: Any = None,
            cost_weight: float = 0.0, loss: bool = False, feature_names: Sequence[str] | None = None) -> AutoPolicy:
        """Score every learner by inner cross-validation, refit the best on all the data; return self."""
        trials = []
        for name, learner in self.learners:
            try:
                evaluation = cross_validate(learner, features, outcomes, models=models, folds=self.inner_folds,
                                            cost=cost, cost_weight=cost_weight, loss=loss,
                                            feature_names=feature_names, seed=self.seed)
                trials.append(Trial(name, evaluation))
            except (PolicyError, InvalidInput) as error:
                trials.append(Trial(name, None, str(error)))
        best = min(range(len(trials)), key=lambda t: trials[t].regret)  # first of the tied
        if trials[best].evaluation is None:
            raise PolicyError("no learner could be fitted: " + "; ".join(f"{t.name}: {t.error}" for t in trials))
        winner = copy.deepcopy(self.learners[best][1]).fit(
            features, outcomes, models=models, cost=cost, cost_weight=cost_weight, loss=loss,
            feature_names=feature_names)
        self.trials, self.chosen, self._policy = tuple(trials), trials[best].name, winner
        return self

    @property
    def report(self) -> str:
        """What was tried, each learner's inner-CV regret and gap closed, and why the winner won."""
        if not self.trials:
            return "AutoPolicy: not fitted"
        lines = [f"AutoPolicy: {len(self.trials)} learners, {self.inner_folds} inner folds (seed {self.seed})"]
        for trial in sorted(self.trials, key=lambda t: t.regret):
            mark = "*" if trial.name == self.chosen else " "
            if trial.evaluation is None:
                lines.append(f" {mark} {trial.name}: not applicable ({trial.error})")
            else:
                e = trial.evaluation
                lines.append(f" {mark} {trial.name}: regret {e.regret:.6g}, mean quality {e.mean_quality:.6g}, "
                             f"gap closed {e.gap_closed:.3f}")
        ranked = sorted((t for t in self.trials if t.evaluation is not None), key=lambda t: t.regret)
        why = f"chose {self.chosen}: the lowest inner cross-validated regret"
        if len(ranked) > 1 and ranked[1].regret == ranked[0].regret:
            why += f", tied with {ranked[1].name}: the earlier listed wins"
        elif len(ranked) > 1:
            why += f", {ranked[1].regret - ranked[0].regret:.6g} below the runner-up ({ranked[1].name})"
        return "\n".join(lines + [why])

    # ---- serving: through the winner ----------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        return self.policy.models

    @property
    def feature_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.policy.feature_names

    def select(self, analysis: Any, candidates: Candidates | None = None) -> Choice:
        """The winner's choice among ``candidates``; NoRoute when none is one of its models."""
        return self.policy.select(analysis, candidates)

    def select_batch(self, batch: Any, candidates: Sequence[Candidates] | None = None) -> list[Choice]:
        return self.policy.select_batch(batch, candidates)

    def predict(self, features: Any, threads: int = 0) -> np.ndarray:
        """The winner's model index for every row of ``features``."""
        return self.policy.predict(features, threads)

    def decide_batch(self, features: Any, threads: int = 0) -> BatchChoice:
        return self.policy.decide_batch(features, threads)

    def pinned(self) -> Policy:
        return self.policy.pinned()

    def save(self, path: str | Path) -> None:
        """Save the winner (``fastroute.decision.load`` reads it back as that policy); PolicyError for a
        Pairwise winner."""
        if not hasattr(self.policy, "save"):
            raise PolicyError(f"the chosen learner ({self.chosen}) is a Python policy and cannot be saved")
        self.policy.save(path)
