"""The compiled policies' common part, and the policy file format.

A compiled policy is scored by a ``fastroute._core.Scorer`` (flat immutable
arrays in C++) and never changes after construction or ``fit``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import _core
from ..analyzer import FEATURE_NAMES, MODALITIES, Analysis, BatchAnalysis
from ..errors import InvalidInput, PolicyError
from .base import BatchChoice, Candidates, Choice, Policy
from .masks import ModelMasks, no_route

__all__ = [
    "Compiled",
    "CompiledPolicy",
    "as_feature_matrix",
    "build_scorer",
    "check_servable",
    "write_json",
]

FORMAT = "fastroute-policy"
FORMAT_VERSION = 1


def check_servable(policy: Any) -> Policy:
    """``policy`` if a Router can serve with it, else PolicyError saying why."""
    if not isinstance(policy, Policy):
        raise PolicyError(f"policy must be a fastroute Policy, got {type(policy).__name__}")
    names = tuple(policy.feature_names)
    if names[: len(FEATURE_NAMES)] != FEATURE_NAMES:
        raise PolicyError(f"policy features must start with fastroute.FEATURE_NAMES, got {list(names[:3])}...{_schema_hint(names)}")
    if isinstance(policy, CompiledPolicy):
        policy._checked_state()
    return policy


def _schema_hint(names: tuple[str, ...]) -> str:
    """Why a policy built on the analyzer's features no longer fits them: the schema changed since."""
    if names[:1] != FEATURE_NAMES[:1]:
        return ""
    missing = [name for name in FEATURE_NAMES if name not in names]
    return f"; it lacks {missing}: built on an older FEATURE_NAMES, refit it on this version's features" if missing else ""


def build_scorer(factory: Any, *args: Any) -> Any:
    """``factory(*args)`` for a ``_core`` scorer; its validation errors become PolicyError."""
    try:
        return factory(*args)
    except InvalidInput as error:
        raise PolicyError(str(error)) from None


def as_feature_matrix(features: Any, width: int, what: str = "features") -> np.ndarray:
    """``features`` as a C-contiguous float32 (n, width) matrix, or InvalidInput naming the problem."""
    if type(features) is np.ndarray and features.dtype == np.float32 and features.ndim == 2:
        if features.flags.c_contiguous and features.shape[1] == width:
            return features  # already in the scorer's layout: no copy
    array = np.asarray(features)
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"{what} must be numeric, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInput(f"{what} must have shape (n, {width}), got {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


class Compiled(NamedTuple):
    """Everything a compiled policy decides with, swapped in one assignment."""

    scorer: Any  # a fastroute._core.Scorer
    models: tuple[str, ...]
    feature_names: tuple[str, ...]
    detail: Any  # what reasons, explain() and save() need: rule texts, tree arrays, cuts
    masks: ModelMasks  # which models can take an input, per set of candidates


class CompiledPolicy(Policy):
    """A policy scored by a ``fastroute._core.Scorer``.

    Subclasses build a :class:`Compiled` state and install it with
    :meth:`_install`, one attribute assignment: a request reads the state
    once, so refitting or recalibrating a policy in use never shows a
    request half of the old and half of the new policy.
    """

    _state: Compiled | None = None
    # Before the first fit or calibration (e.g. a Threshold's configured models).
    _unfitted_models: tuple[str, ...] = ()
    _unfitted_feature_names: tuple[str, ...] = FEATURE_NAMES

    @property
    def models(self) -> tuple[str, ...]:
        """The model names the scorer's indices refer to, in order."""
        state = self._state
        return state.models if state is not None else self._unfitted_models

    @property
    def feature_names(self) -> tuple[str, ...]:  # type: ignore[override]
        state = self._state
        return state.feature_names if state is not None else self._unfitted_feature_names

    def _install(self, scorer: Any, models: Sequence[str], feature_names: Sequence[str], detail: Any = None) -> None:
        if len(set(models)) != len(models):
            raise PolicyError(f"model names must be unique, got {list(models)}")
        self._state = Compiled(scorer, tuple(models), tuple(feature_names), detail, ModelMasks(models))

    def pinned(self) -> CompiledPolicy:
        """A view sharing the current compiled state: a refit of this policy replaces
        its state, never the view's, so a request builds and scores its row with one state."""
        return copy.copy(self)

    @property
    def fitted(self) -> bool:
        """Whether the policy has a compiled state (after construction, fit, calibrate or load)."""
        return self._state is not None

    def _checked_state(self) -> Compiled:
        state = self._state
        if state is None:
            raise PolicyError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return state

    def select(self, analysis: Analysis, candidates: Candidates | None = None) -> Choice:
        """The best of the policy's models among ``candidates`` (the models able to take
        this input; None: every model); NoRoute when none of them is a candidate."""
        state = self._checked_state()
        mask = None if candidates is None else state.masks.for_candidates(candidates)
        row = analysis.features
        try:  # the common case, a float32 vector of the right length: checked in C++ only
            index, score, margin, reason = state.scorer.score(row, mask)
        except (InvalidInput, TypeError):
            index, score, margin, reason = state.scorer.score(as_feature_matrix(row, len(state.feature_names))[0], mask)
        if index == _core.NO_MODEL:
            raise no_route(analysis.modality, candidates, state.models)
        return Choice(state.models[index], self._reason(state, reason, index), _score_or_none(score))

    def decide_batch(
        self, features: Any, threads: int = 0, *, candidates_of: Callable[[str], Candidates | None] | None = None
    ) -> BatchChoice:
        """Model indices and scores for an (n, F) matrix through the batch scorer.

        Uses up to ``threads`` threads (0: all cores) on large batches. With
        ``candidates_of(modality)`` (e.g. ``registry.catalog.for_modality``)
        each row chooses only among the candidates of its modality (its
        ``modality`` column); NoRoute names the first row none can take.
        """
        state = self._checked_state()
        matrix = as_feature_matrix(features, len(state.feature_names))
        mask = None if candidates_of is None else state.masks.for_modalities(candidates_of)
        index, score, margin, _ = state.scorer.score_batch(matrix, threads, mask)
        if mask is not None:
            _raise_for_unroutable(index, matrix, state.models, candidates_of)
        return BatchChoice(state.models, index, score, margin)

    def predict(self, features: Any, threads: int = 0) -> np.ndarray:
        """The chosen model index of every row of ``features`` (int32).

        Uses up to ``threads`` threads (0: all cores) on large batches.
        """
        scorer = self._checked_state().scorer
        try:  # the common case, already (n, F) C-contiguous float32: checked in C++ only
            return scorer.predict(features, threads)
        except (InvalidInput, TypeError):
            return scorer.predict(as_feature_matrix(features, scorer.num_features), threads)

    def select_batch(self, batch: BatchAnalysis, candidates: Sequence[Candidates] | None = None) -> list[Choice]:
        """One Choice per row, with reasons, through the batch scorer (see also decide_batch);
        ``candidates[i]`` are row i's candidates (None: every model)."""
        state = self._checked_state()
        matrix = as_feature_matrix(batch.features, len(state.feature_names))
        mask = candidates_of = None
        if candidates is not None:
            by_modality = {group.modality: group for group in candidates}
            candidates_of = by_modality.get
            mask = state.masks.for_modalities(candidates_of)
        index, score, _, reason = state.scorer.score_batch(matrix, 0, mask)
        if mask is not None:
            _raise_for_unroutable(index, matrix, state.models, candidates_of)
        return [
            Choice(state.models[i], self._reason(state, r, i), _score_or_none(s))
            for i, s, r in zip(index.tolist(), score.tolist(), reason.tolist())
        ]

    def _reason(self, state: Compiled, reason: int, index: int) -> str:
        raise NotImplementedError

    def explain(self, row: Any) -> str:
        """A readable account of the decision for one feature row."""
        choice = self.select(_Row(as_feature_matrix(row, len(self.feature_names))[0]))
        return choice.reason

    def save(self, path: str | Path) -> None:
        """Write the policy to ``path``: ``.json`` for rules and thresholds, ``.npz`` for trees."""
        raise NotImplementedError


def _raise_for_unroutable(index: np.ndarray, matrix: np.ndarray, models: Sequence[str], candidates_of: Any) -> None:
    """NoRoute naming the first row the masked scorer could send nowhere."""
    unroutable = np.flatnonzero(index == _core.NO_MODEL)
    if unroutable.size:
        row = int(unroutable[0])
        code = matrix[row, 0]  # the schema's modality column
        modality = MODALITIES[int(code)] if 0 <= code < len(MODALITIES) else "unknown"
        raise no_route(modality, candidates_of(modality) or _NO_CANDIDATES, models, row)


@dataclass(frozen=True)
class _NoCandidates:
    names: tuple[str, ...] = ()


_NO_CANDIDATES = _NoCandidates()


@dataclass(frozen=True)
class _Row:
    features: np.ndarray
    modality: str = "tabular"


def _score_or_none(score: float) -> float | None:
    return None if score != score else float(score)


def write_json(path: str | Path, kind: str, body: Mapping[str, Any]) -> None:
    """Write a policy of ``kind`` as a versioned fastroute-policy JSON document."""
    document = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, **body}
    Path(path).write_text(json.dumps(document, indent=1))


