"""Base of the decision engine: a Policy maps an analysed input to a model name, a Choice says which and why.

The policy contract: for one input a policy is given its analysis (or feature
row) and the :class:`~fastroute.library.catalog.Candidates` for it, the models
registered for the input's modality (names plus modality, cost and tags), an
immutable snapshot read without a lock. Never the registry itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analyzer import FEATURE_NAMES, Analysis, BatchAnalysis
from ..analyzer.user_features import FeatureBatch, FeatureRow
from ..library.catalog import Candidates

__all__ = ["BatchChoice", "Candidates", "Choice", "Decision", "FeatureBatch", "FeatureRow", "Policy"]


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

    def routes(self) -> list[tuple[str, str | None]]:
        """Each row's (model name, feedback id or None)."""
        names = self.names()
        return list(zip(names, self.ids or [None] * len(names)))

    @classmethod
    def of(cls, choices: Sequence[Choice], ids: tuple[str, ...]) -> BatchChoice:
        """A Python policy's per-row choices (``ids``: their feedback ids, if recorded) as one BatchChoice."""
        names = tuple(dict.fromkeys(choice.model for choice in choices))
        index = np.array([names.index(choice.model) for choice in choices], dtype=np.int32)
        score = np.array([np.nan if c.score is None else c.score for c in choices], dtype=np.float32)
        propensity = np.array([choice.propensity for choice in choices], dtype=np.float64)
        return cls(names, index, score, np.full(len(choices), np.nan, dtype=np.float32), ids, propensity)


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


class _LazyReason:
    """``Decision.reason``: a str, or the pair (policy's reason, version's reason)
    that is joined only when first read (most reasons are never read)."""

    def __get__(self, decision: Decision | None, owner: type | None = None) -> str:
        if decision is None:
            raise AttributeError("reason")  # no class-level default: the field is required
        reason = decision.__dict__["_reason"]
        if isinstance(reason, tuple):
            reason = "; ".join(reason)
            decision.__dict__["_reason"] = reason  # same text whichever thread joins first
        return reason

    def __set__(self, decision: Decision, reason: str | tuple[str, str]) -> None:
        decision.__dict__["_reason"] = reason


@dataclass(frozen=True)
class Decision:
    """Where one request goes (model and version), and why.

    ``id`` names the decision for :meth:`fastroute.Router.feedback`; ``propensity`` is
    the probability the policy gave this model (1.0 for deterministic policies).
    """

    model: str
    version: str
    modality: str
    reason: str = _LazyReason()  # type: ignore[assignment]
    score: float | None = None
    id: str | None = None
    propensity: float = 1.0
    #: Under failure handling: each model tried before the one that served, and what happened.
    attempts: tuple[str, ...] = ()
    #: What the policy read: the input's Analysis, or a FeatureRow (analyzer features, then the
    #: policy's user features, named by its ``names``) when the policy reads user features.
    features: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, choice: Choice, version: str, seen: Any, version_reason: str, decision_id: str | None) -> Decision:
        """The decision for ``choice`` served by ``version``, made from ``seen`` (what the policy
        read: an Analysis or a FeatureRow); the reasons are joined only if read."""
        reason = (choice.reason, version_reason)
        return cls.make(choice.model, version, seen.modality, reason, choice.score, decision_id, choice.propensity, seen)

    @classmethod
    def make(
        cls, model: str, version: str, modality: str, reason: str | tuple[str, str], score: float | None,
        decision_id: str | None, propensity: float, seen: Any,
    ) -> Decision:
        """``Decision(model, version, modality, reason, score, decision_id, propensity, (), seen)``
        built in one step: every request makes one, and a frozen dataclass's ``__init__``
        sets each field through ``object.__setattr__`` (about three times slower). ``attempts``
        is left to its class default, as unset fields of a dataclass read."""
        decision = object.__new__(cls)
        fields = decision.__dict__  # the instance's own dict (keys shared with its class): filled in place
        fields["model"] = model
        fields["version"] = version
        fields["modality"] = modality
        fields["_reason"] = reason
        fields["score"] = score
        fields["id"] = decision_id
        fields["propensity"] = propensity
        fields["features"] = seen
        return decision

    def explained(self, reason: str, attempts: Sequence[str]) -> Decision:
        """This decision with another reason and the attempts that led to it."""
        return dataclasses.replace(self, reason=reason, attempts=tuple(attempts))
