"""The Router: analyse an input, let the policy choose a model, run it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .analyzer import FEATURE_NAMES, Analysis, analyze, analyze_batch
from .errors import InvalidInput, ModelError, PolicyError
from .compiled import BatchChoice, Choice, CompiledPolicy, Policy
from .policies import ByModality
from .registry import ModelSpec, Registry

__all__ = ["Decision", "Router"]


@dataclass(frozen=True)
class Decision:
    """Where one request goes, and why."""

    model: str
    version: str
    modality: str
    reason: str
    score: float | None = None


class Router:
    """Routes each request to the registered model best suited for it.

    >>> router = fastroute.Router()
    >>> router.register("double", lambda x: 2 * x, modality="tabular")
    >>> router.infer(np.ones(4))
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.models = Registry()
        self._extractors: list[tuple[tuple[str, ...], Callable[[Any], Sequence[float]]]] = []
        self._policy: Policy = ByModality()
        if policy is not None:
            self.policy = policy

    @property
    def policy(self) -> Policy:
        """The routing policy. Assigning swaps it atomically: each request reads it once."""
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        if not isinstance(policy, Policy):
            raise PolicyError(f"policy must be a fastroute Policy, got {type(policy).__name__}")
        names = tuple(policy.feature_names)
        if names[: len(FEATURE_NAMES)] != FEATURE_NAMES:
            raise PolicyError(
                f"policy features must start with fastroute.FEATURE_NAMES, got {list(names[:3])}..."
            )
        if isinstance(policy, CompiledPolicy):
            policy._checked_state()
        self._policy = policy

    def add_features(self, names: Sequence[str], extractor: Callable[[Any], Sequence[float]]) -> None:
        """Register ``extractor(x) -> values`` computing the user features ``names`` for each input.

        Names are checked once, here: identifiers, not analyzer features, not registered twice.
        A policy may then split on them (its feature_names list them after FEATURE_NAMES).
        """
        names = tuple(names)
        taken = set(FEATURE_NAMES).union(*(set(group) for group, _ in self._extractors))
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise PolicyError(f"feature name must be an identifier, got {name!r}")
            if name in taken:
                raise PolicyError(f"feature {name!r} is already defined")
        if not names or not callable(extractor):
            raise PolicyError("add_features needs at least one name and a callable extractor")
        self._extractors.append((names, extractor))

    def register(
        self,
        name: str,
        model: Callable[[Any], Any],
        *,
        modality: str,
        version: str = "1",
        batched: bool = False,
        cost: float = 0.0,
        device: str = "cpu",
        replicas: int = 1,
        tags: Sequence[str] = (),
    ) -> ModelSpec:
        """Register ``model`` (a callable on one input, or on a batch if ``batched``)."""
        spec = ModelSpec(
            name=name,
            version=version,
            model=model,
            modality=modality,
            batched=batched,
            cost=cost,
            device=device,
            replicas=replicas,
            tags=frozenset(tags),
        )
        return self.models.register(spec)

    def route(
        self, x: Any, *, hint: str | None = None, features: Mapping[str, float] | None = None
    ) -> Decision:
        """Decide which model serves ``x``, without running it.

        ``features`` gives user feature values by name for this request; user
        features neither given nor extracted are missing (NaN).
        """
        policy = self._policy  # read once: a concurrent swap never splits a request
        analysis = analyze(x, hint=hint)
        row = self._policy_row(policy, analysis, x, features)
        return self._decide(analysis, policy.select(row, self.models))

    def route_batch(self, xs: Any, *, features: Any = None) -> BatchChoice:
        """Route many inputs at once: model indices through the batch scorer.

        ``features`` holds the user feature columns: an (n, U) array in the
        policy's order, or a mapping name -> (n,) values.
        """
        policy = self._policy
        batch = analyze_batch(xs)
        matrix = self._policy_matrix(policy, batch, xs, features)
        if isinstance(policy, CompiledPolicy):
            return policy.decide_batch(matrix)
        choices = policy.select_batch(batch, self.models)
        names = tuple(dict.fromkeys(choice.model for choice in choices))
        index = np.array([names.index(choice.model) for choice in choices], dtype=np.int32)
        score = np.array([np.nan if c.score is None else c.score for c in choices], dtype=np.float32)
        return BatchChoice(names, index, score, np.full(len(choices), np.nan, dtype=np.float32))

    def _user_columns(self, policy: Policy) -> tuple[str, ...]:
        return tuple(policy.feature_names[len(FEATURE_NAMES) :])

    def _policy_row(self, policy: Policy, analysis: Analysis, x: Any, features: Mapping[str, float] | None) -> Any:
        columns = self._user_columns(policy)
        if not columns and not features:
            return analysis
        values = dict.fromkeys(columns, np.nan)
        for names, extractor in self._extractors:
            if any(name in values for name in names):
                values.update(zip(names, _extracted(names, extractor(x))))
        for name, value in (features or {}).items():
            if name not in values:
                raise InvalidInput(f"unknown user feature {name!r}; the policy reads {list(columns)}")
            values[name] = value
        row = np.concatenate([analysis.features, np.array([values[c] for c in columns], dtype=np.float32)])
        return _PolicyRow(analysis.modality, row)

    def _policy_matrix(self, policy: Policy, batch: Any, xs: Any, features: Any) -> np.ndarray:
        columns = self._user_columns(policy)
        n = len(batch.features)
        user = np.full((n, len(columns)), np.nan, dtype=np.float32)
        for names, extractor in self._extractors:
            used = [(j, columns.index(name)) for j, name in enumerate(names) if name in columns]
            if used:
                extracted = np.array([_extracted(names, extractor(x)) for x in xs], dtype=np.float32)
                for j, column in used:
                    user[:, column] = extracted[:, j]
        if isinstance(features, Mapping):
            for name, values in features.items():
                if name not in columns:
                    raise InvalidInput(f"unknown user feature {name!r}; the policy reads {list(columns)}")
                user[:, columns.index(name)] = np.asarray(values, dtype=np.float32)
        elif features is not None:
            given = np.asarray(features, dtype=np.float32).reshape(n, -1)
            if given.shape[1] != len(columns):
                raise InvalidInput(f"features have {given.shape[1]} columns; the policy reads {list(columns)}")
            user = given
        return np.concatenate([batch.features, user], axis=1) if columns else batch.features

    def infer(self, x: Any, *, hint: str | None = None) -> Any:
        """Route ``x`` and return the chosen model's result."""
        decision = self.route(x, hint=hint)
        spec = self.models.get(decision.model, decision.version)
        return spec.model([x])[0] if spec.batched else spec.model(x)

    def infer_batch(self, xs: Sequence[Any]) -> list[Any]:
        """Route every input, call each chosen model once on its group, keep input order."""
        batch = analyze_batch(xs)
        choices = self.policy.select_batch(batch, self.models)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, choice in enumerate(choices):
            spec = self.models.get(choice.model)
            groups[spec.key].append(index)
        results: list[Any] = [None] * len(choices)
        for key, indices in groups.items():
            spec = self.models.get(*key)
            outputs = _run_group(spec, [xs[i] for i in indices])
            for index, output in zip(indices, outputs):
                results[index] = output
        return results

    def _decide(self, analysis: Analysis, choice: Choice) -> Decision:
        spec = self.models.get(choice.model)
        return Decision(spec.name, spec.version, analysis.modality, choice.reason, choice.score)


@dataclass(frozen=True)
class _PolicyRow:
    """What a policy sees when user features follow the analyzer's."""

    modality: str
    features: np.ndarray


def _extracted(names: tuple[str, ...], values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != len(names):
        raise InvalidInput(f"feature extractor for {list(names)} returned {len(values)} values")
    return values


def _run_group(spec: ModelSpec, inputs: list[Any]) -> list[Any]:
    if not spec.batched:
        return [spec.model(x) for x in inputs]
    outputs = spec.model(_stack_if_possible(inputs))
    if len(outputs) != len(inputs):
        raise ModelError(spec.name, f"returned {len(outputs)} results for a batch of {len(inputs)}")
    return list(outputs)


def _stack_if_possible(inputs: list[Any]) -> Any:
    """A stacked array when every input is an array of one shape and dtype, else the list."""
    first = inputs[0]
    if isinstance(first, np.ndarray) and all(
        isinstance(x, np.ndarray) and x.shape == first.shape and x.dtype == first.dtype
        for x in inputs
    ):
        return np.stack(inputs)
    return inputs
