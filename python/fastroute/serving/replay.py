"""From decision logs to policies: the data ``fastroute fit`` and ``fastroute evaluate`` read.

A served decision with joined feedback tells the reward of one model (the one
chosen) on one input: a row of ``outcomes`` holds that reward in the chosen
model's column and NaN elsewhere ("not run"), which is how
:meth:`fastroute.Tree.fit` and :meth:`fastroute.Forest.fit` take partial logs.
The chosen model, its propensity and reward are what off-policy estimates need.
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
    features: np.ndarray  # (n, len(FEATURE_NAMES)) float32, NaN = missing
    actions: np.ndarray  # (n,) index into models of the logged choice
    propensities: np.ndarray  # (n,) probability the logging policy gave its choice
    rewards: np.ndarray  # (n,)
    skipped: int  # decisions without a usable reward

    def outcomes(self) -> np.ndarray:
        """(n, len(models)): each row's reward in its chosen model's column, NaN elsewhere."""
        outcomes = np.full((len(self.actions), len(self.models)), np.nan)
        outcomes[np.arange(len(self.actions)), self.actions] = self.rewards
        return outcomes


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
    features = np.array([_features(d) for d in rows], dtype=np.float32)
    actions = np.array([models.index(d["model"]) for d in rows], dtype=np.int64)
    propensities = np.array([float(d.get("propensity") or 1.0) for d in rows])
    rewards = np.array([_reward(d) for d in rows])
    return Replay(models, features, actions, propensities, rewards, len(logged.decisions) - len(rows))


def _reward(decision: dict[str, Any]) -> float | None:
    feedback = decision.get("feedback") or {}
    reward = feedback.get("reward")
    if isinstance(reward, (int, float)) and not isinstance(reward, bool) and math.isfinite(reward):
        return float(reward)
    return None


def _features(decision: dict[str, Any]) -> list[float]:
    values = decision.get("features")
    if not isinstance(values, list) or len(values) != len(FEATURE_NAMES):
        raise InvalidInput(
            f"decision {decision.get('id')!r} has {len(values) if isinstance(values, list) else 'no'} features; "
            f"this fastroute reads {len(FEATURE_NAMES)} (FEATURE_NAMES)"
        )
    return [np.nan if value is None else value for value in values]
