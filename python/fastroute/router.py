"""The Router: analyse an input, let the policy choose a model, run it."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .analyzer import Analysis, analyze, analyze_batch
from .errors import ModelError, RouterClosed
from .policies import ByModality, Policy
from .registry import ModelSpec, Registry

if TYPE_CHECKING:
    from .executors import CPUExecutor

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

    def __init__(self, policy: Policy | None = None, *, executor: CPUExecutor | None = None) -> None:
        self.models = Registry()
        self.policy: Policy = policy if policy is not None else ByModality()
        self._executor = executor  # the router owns it: close() closes it
        self._executor_lock = threading.Lock()
        self._closed = False  # guarded by _executor_lock

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

    @property
    def executor(self) -> CPUExecutor:
        """The executor behind ``submit``/``ainfer``: a default CPUExecutor, created on first use."""
        with self._executor_lock:
            if self._closed:
                raise RouterClosed("the router is closed")
            if self._executor is None:
                from .executors import CPUExecutor  # executors imports this module

                self._executor = CPUExecutor()
            return self._executor

    def submit(
        self,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
        hint: str | None = None,
    ) -> Future:
        """Route ``x`` now and queue it for its model; returns a Future of the result.

        ``priority`` ("high" or "normal"), ``deadline`` (seconds the model may
        take to start it) and ``timeout`` (seconds to wait for queue room, else
        ``Overloaded``): see :meth:`fastroute.executors.CPUExecutor.submit`.
        """
        decision = self.route(x, hint=hint)
        spec = self.models.get(decision.model, decision.version)
        return self.executor.submit(spec, x, priority=priority, deadline=deadline, timeout=timeout)

    async def ainfer(
        self,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
        hint: str | None = None,
    ) -> Any:
        """``submit`` for asyncio: resolved on the caller's loop (call_soon_threadsafe), no polling."""
        future = self.submit(x, priority=priority, deadline=deadline, timeout=timeout, hint=hint)
        return await asyncio.wrap_future(future, loop=asyncio.get_running_loop())

    def close(self, drain: bool = True) -> None:
        """Stop accepting requests; run (``drain``) or fail the queued ones; join the workers.

        Idempotent. Requests refused afterwards raise ``RouterClosed``.
        """
        with self._executor_lock:
            self._closed = True
            executor = self._executor
        if executor is not None:
            executor.close(drain=drain)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
