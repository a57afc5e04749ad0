"""Threshold: route to the cheaper model unless a score exceeds a cut point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..analyzer import FEATURE_NAMES
from ..errors import InvalidInput, PolicyError
from .compiled import Compiled, CompiledPolicy, build_scorer, write_json

__all__ = ["Threshold"]


class Threshold(CompiledPolicy):
    """Route to the cheaper model unless a score exceeds a cut point.

    ``score`` names the feature column holding the score (for an LLM router,
    e.g. a user feature with the predicted chance that the weak model fails).
    With models ``[m0, m1, ..., mk]`` (cheapest first) and ascending ``cuts``
    ``[c1, ..., ck]``, a row goes to ``m_j`` where j is the number of cuts its
    score strictly exceeds. A missing score goes to ``missing`` (default: the
    cheapest model). :meth:`calibrate` picks the cuts for a target share of
    traffic or a cost budget.
    """

    def __init__(
        self,
        score: str,
        models: Sequence[str],
        cuts: Sequence[float] | None = None,
        *,
        missing: str | None = None,
        feature_names: Sequence[str] = FEATURE_NAMES,
    ) -> None:
        self.score = score
        self._unfitted_feature_names = tuple(feature_names)
        self._unfitted_models = tuple(models)
        if score not in self.feature_names:
            raise PolicyError(f"unknown score feature {score!r}; features: {list(self.feature_names)}")
        if len(self.models) < 2:
            raise PolicyError(f"a threshold needs at least two models, got {list(self.models)}")
        self.missing = missing if missing is not None else self.models[0]
        if self.missing not in self.models:
            raise PolicyError(f"missing model {self.missing!r} is not one of {list(self.models)}")
        if cuts is not None:
            self._compile(cuts)

    def _compile(self, cuts: Sequence[float]) -> None:
        cuts = np.asarray(cuts, dtype=np.float32).ravel()
        if len(cuts) != len(self.models) - 1:
            raise PolicyError(f"{len(self.models)} models need {len(self.models) - 1} cuts, got {len(cuts)}")
        models, names = self._unfitted_models, self._unfitted_feature_names
        scorer = build_scorer(
            _core.ThresholdScorer, len(names), names.index(self.score), cuts, models.index(self.missing)
        )
        self._install(scorer, models, names, tuple(float(c) for c in cuts))

    @property
    def cuts(self) -> tuple[float, ...]:
        """The cut points in use (ascending); PolicyError before calibration."""
        return self._checked_state().detail

    def calibrate(
        self,
        scores: Any,
        *,
        share: float | Sequence[float] | None = None,
        budget: float | None = None,
        costs: Sequence[float] | None = None,
    ) -> Threshold:
        """Choose the cuts from observed ``scores`` (1-D) and return self.

        ``share``: the target share of traffic for each model above the
        cheapest (a float for two models), as quantiles of ``scores``.
        ``budget`` with ``costs`` (per model, cheapest first, two models): the
        largest share for the expensive model whose mean cost stays within budget.
        """
        values = np.asarray(scores, dtype=np.float64).ravel()
        values = values[~np.isnan(values)]
        if values.size == 0:
            raise InvalidInput("calibrate needs at least one non-missing score")
        if (share is None) == (budget is None):
            raise PolicyError("calibrate needs exactly one of share= or budget=")
        if budget is not None:
            share = _share_for_budget(budget, costs, len(self.models))
        shares = np.atleast_1d(np.asarray(share, dtype=np.float64))
        if len(shares) != len(self.models) - 1 or (shares < 0).any() or shares.sum() > 1:
            raise PolicyError(f"share must give {len(self.models) - 1} non-negative shares summing to <= 1, got {share!r}")
        # Model j (j >= 1) takes the top shares[j-1] of the score distribution above model j+1's.
        upper = np.cumsum(shares[::-1])[::-1]  # share of traffic at or above each cut
        # A row goes up only when its score strictly exceeds the cut: shares never overshoot.
        cuts = np.quantile(values, 1.0 - upper, method="inverted_cdf")
        cuts = _strictly_ascending(np.where(upper <= 0, np.float32(np.finfo(np.float32).max), cuts))
        self._compile(cuts)
        return self

    def _reason(self, state: Compiled, reason: int, index: int) -> str:
        if reason < 0:
            return f"{self.score} missing -> {state.models[index]}"
        # reason: the model the cuts chose; index: the one chosen, which differs when that model cannot take the input
        text = f"{self.score} above {reason} of cuts {list(state.detail)} -> {state.models[reason]}"
        return text if reason == index else f"{text}, which cannot take this input -> {state.models[index]}"

    def save(self, path: str | Path) -> None:
        write_json(path, "threshold", {
            "score": self.score,
            "models": list(self.models),
            "cuts": list(self.cuts),
            "missing": self.missing,
            "feature_names": list(self.feature_names),
        })

    @classmethod
    def _from_saved(cls, body: Mapping[str, Any]) -> Threshold:
        return cls(body["score"], body["models"], body["cuts"], missing=body["missing"], feature_names=body["feature_names"])


def _share_for_budget(budget: float, costs: Sequence[float] | None, n_models: int) -> float:
    if costs is None or len(costs) != 2 or n_models != 2:
        raise PolicyError("budget= needs costs= for exactly two models (cheap, expensive)")
    cheap, expensive = float(costs[0]), float(costs[1])
    if not expensive > cheap:
        raise PolicyError(f"costs must be (cheaper, more expensive), got {list(costs)}")
    return float(np.clip((budget - cheap) / (expensive - cheap), 0.0, 1.0))


def _strictly_ascending(cuts: np.ndarray) -> np.ndarray:
    cuts = cuts.astype(np.float32)
    for i in range(1, len(cuts)):
        if not cuts[i] > cuts[i - 1]:
            cuts[i] = np.nextafter(cuts[i - 1], np.float32(np.inf))
    return cuts
