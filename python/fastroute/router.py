"""The Router: analyse an input, let the policy choose a model, run it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .analyzer import Analysis, analyze, analyze_batch
from .errors import ModelError
from .policies import ByModality, Policy
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
        self.policy: Policy = policy if policy is not None else ByModality()

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

    def route(self, x: Any, *, hint: str | None = None) -> Decision:
        """Decide which model serves ``x``, without running it."""
        analysis = analyze(x, hint=hint)
        return self._decide(analysis)

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

    def _decide(self, analysis: Analysis) -> Decision:
        choice = self.policy.select(analysis, self.models)
        spec = self.models.get(choice.model)
        return Decision(spec.name, spec.version, analysis.modality, choice.reason, choice.score)


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
