"""Base of the decision engine: a Policy maps an analysed input to a model name, a Choice says which and why.

The policy contract: for one input a policy is given its analysis (or feature
row) and the :class:`~fastroute.library.catalog.Candidates` for it, the models
registered for the input's modality (names plus modality, cost and tags), an
immutable snapshot read without a lock. Never the registry itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analyzer import FEATURE_NAMES, Analysis, BatchAnalysis
from ..library.catalog import Candidates

__all__ = ["BatchChoice", "Candidates", "Choice", "FeatureBatch", "FeatureRow", "Policy"]


@dataclass(frozen=True)
class Choice:
    """A policy's verdict for one input: a model name and why.

    ``propensity`` is the probability the policy gave this model (1.0 for a
    deterministic policy); ``pending`` is what a learning policy needs to
    learn from this decision's outcome later (None for the others).
    """

    model: str
    reason: str
    score: float | None = None
    propensity: float = 1.0
    pending: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BatchChoice:
    """A compiled policy's verdicts for a batch: ``models[index[i]]`` serves row i."""

    models: tuple[str, ...]
    index: np.ndarray  # (n,) int32
    score: np.ndarray  # (n,) float32, NaN where the policy has no score (rules)
    margin: np.ndarray  # (n,) float32: best score minus runner-up, or distance to the cut
    ids: tuple[str, ...] = ()  # feedback ids, when a learning policy decided
    propensity: np.ndarray | None = None  # (n,) float64, when the policy reports it

    def __len__(self) -> int:
        return len(self.index)

    def names(self) -> list[str]:
        """The chosen model name of every row."""
        return [self.models[i] for i in self.index]


class Policy:
    """Base class: map an analysed input to a registered model name."""

    #: Columns the policy reads; beyond FEATURE_NAMES they are user features.
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def select(self, analysis: Analysis, candidates: Candidates) -> Choice:
        """The model serving one input. ``analysis`` has ``.modality`` and
        ``.features`` (the analyzer's, then any user feature columns);
        ``candidates`` are the models registered for its modality."""
        raise NotImplementedError

    def select_batch(self, batch: BatchAnalysis, candidates: Sequence[Candidates]) -> list[Choice]:
        """One choice per row of ``batch`` (``candidates[i]`` for row i); subclasses
        override with a vectorised path."""
        return [self.select(batch[i], candidates[i]) for i in range(len(batch))]

    def pinned(self) -> Policy:
        """This policy as it stands now, unaffected by a later refit: what one request uses."""
        return self


@dataclass(frozen=True)
class FeatureRow:
    """What a policy sees for one input when user features follow the analyzer's (in its feature_names order)."""

    modality: str
    features: np.ndarray


@dataclass(frozen=True)
class FeatureBatch:
    """What a Python policy's select_batch sees when user features follow the analyzer's: one FeatureRow per input."""

    modalities: list[str]
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.modalities)

    def __getitem__(self, index: int) -> FeatureRow:
        return FeatureRow(self.modalities[index], self.features[index])
