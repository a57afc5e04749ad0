"""From decision logs to policies: the data ``fastroute fit`` and ``fastroute evaluate`` read.

A served decision with joined feedback tells the reward of one model (the one
chosen) on one input: a row of ``outcomes`` holds that reward in the chosen
model's column and NaN elsewhere ("not run"), which is how
:meth:`fastroute.Tree.fit` and :meth:`fastroute.Forest.fit` take partial logs.
The chosen model, its propensity and reward are what off-policy estimates need.
Decisions whose policy read user features log them after the analyzer's, with
their ``feature_names``; the replay's columns are the analyzer's then every user
feature any decision logged (missing where a decision did not log it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analyzer import FEATURE_NAMES
from ..errors import InvalidInput
from .decision_log import LoggedDecisions

__all__ = ["Replay", "replay"]


@dataclass(frozen=True)
class Replay:
    """Logged decisions that have a reward, as arrays."""

    models: tuple[str, ...]  # every model seen chosen or as a candidate, sorted
    feature_names: tuple[str, ...]  # FEATURE_NAMES, then the user features logged
    features: np.ndarray  # (n, len(feature_names)) float32, NaN = missing
    actions: np.ndarray  # (n,) index into models of the logged choice
    propensities: np.ndarray  # (n,) probability the logging policy gave its choice
    rewards: np.ndarray  # (n,)
    skipped: int  # decisions without a usable reward

    def outcomes(self) -> np.ndarray:
        """(n, len(models)): each row's reward in its chosen model's column, NaN elsewhere."""
        outcomes = np.full((len(self.actions), len(self.models)), np.nan)
        outcomes[np.arange(len(self.actions)), self.actions] = self.rewards
        return outcomes

    def columns(self, names: tuple[str, ...]) -> np.ndarray:
        """``features`` with the columns ``names`` (a policy's feature_names), NaN for any not logged."""
        matrix = np.full((len(self.features), len(names)), np.nan, dtype=np.float32)
        for j, name in enumerate(names):
            if name in self.feature_names:
                matrix[:, j] = self.features[:, self.feature_names.index(name)]
        return matrix


def replay(logged: LoggedDecisions) -> Replay:
    """The decisions of ``logged`` whose feedback carries a finite reward (others are counted
    as ``skipped``). Raises InvalidInput when none has, or a record is malformed."""
    rows = [d for d in logged.decisions if _reward(d) is not None]
    if not rows:
        raise InvalidInput(
            f"none of the {len(logged.decisions)} logged decisions has feedback with a reward; "
            "send rewards to POST /feedback (or Router.feedback) while logging"
        )
    models = tuple(sorted({d["model"] for d in rows} | {c for d in rows for c in d.get("candidates") or ()}))
    names = tuple(dict.fromkeys([*FEATURE_NAMES, *(name for d in rows for name in d.get("feature_names") or ())]))
    features = np.array([_features(d, names) for d in rows], dtype=np.float32).reshape(len(rows), len(names))
    actions = np.array([models.index(d["model"]) for d in rows], dtype=np.int64)
    propensities = np.array([float(d.get("propensity") or 1.0) for d in rows])
    rewards = np.array([_reward(d) for d in rows])
    return Replay(models, names, features, actions, propensities, rewards, len(logged.decisions) - len(rows))


def _reward(decision: dict[str, Any]) -> float | None:
    feedback = decision.get("feedback") or {}
    reward = feedback.get("reward")
    if isinstance(reward, (int, float)) and not isinstance(reward, bool) and math.isfinite(reward):
        return float(reward)
    return None


def _features(decision: dict[str, Any], columns: tuple[str, ...]) -> list[float]:
    """One decision's logged features in the order of ``columns`` (NaN where not logged)."""
    values, names = decision.get("features"), decision.get("feature_names")
    if names is None:
        names, expected = FEATURE_NAMES, f"this fastroute reads {len(FEATURE_NAMES)} (FEATURE_NAMES)"
    else:
        expected = f"its feature_names list {len(names)}"
    if not isinstance(values, list) or not isinstance(names, (list, tuple)) or len(values) != len(names):
        raise InvalidInput(
            f"decision {decision.get('id')!r} has {len(values) if isinstance(values, list) else 'no'} features; {expected}"
        )
    logged = dict(zip(names, values))
    return [np.nan if (value := logged.get(name)) is None else value for name in columns]
