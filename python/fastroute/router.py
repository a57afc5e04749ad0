"""The Router: analyse an input, let the policy choose a model, run it."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .analyzer import Analysis, analyze, analyze_batch
from .errors import InvalidInput, ModelError, RouterClosed
from .policies import ByModality, Policy
from .registry import Lease, ModelSpec, Registry

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
        self.models.add_retire_hook(self._retire_queues)

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
        warmup: Any = None,
        aliases: Sequence[str] = (),
    ) -> ModelSpec:
        """Register ``model`` (a callable on one input, or on a batch if ``batched``).

        ``warmup`` is a sample input run once before the model takes traffic;
        ``aliases`` (e.g. ``["stable"]``) point at this version atomically.
        """
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
        return self.models.register(spec, warmup=warmup, aliases=aliases)

    @classmethod
    def from_config(cls, path: str | PathLike[str]) -> Router:
        """A router built from a YAML or TOML file (see :mod:`fastroute.config`)."""
        from .config import load_router

        return load_router(path, cls)

    def reload(self, path: str | PathLike[str]) -> None:
        """Apply a changed config file without dropping a request; an invalid one changes nothing."""
        from .config import reload_router

        reload_router(self, path)

    def route(self, x: Any, *, hint: str | None = None, key: Any = None) -> Decision:
        """Decide which model serves ``x``, without running it.

        ``key`` (a user or session id) keeps a caller on one version of a split.
        """
        analysis = analyze(x, hint=hint)
        return self._decide(analysis, key)

    def infer(self, x: Any, *, hint: str | None = None, key: Any = None) -> Any:
        """Route ``x`` and return the chosen model's result."""
        _, lease = self._decide_leased(analyze(x, hint=hint), key)
        with lease:
            result = lease.spec.run_one(x)
        self._mirror(lease, x, result)
        return result

    def infer_batch(self, xs: Sequence[Any], *, keys: Sequence[Any] | None = None) -> list[Any]:
        """Route every input, call each chosen model once on its group, keep input order."""
        batch = analyze_batch(xs)
        choices = self.policy.select_batch(batch, self.models)
        if keys is not None and len(keys) != len(choices):
            raise InvalidInput(f"infer_batch got {len(keys)} keys for {len(choices)} inputs")
        leases: list[Lease] = []
        try:
            for index, choice in enumerate(choices):
                leases.append(self.models.lease(choice.model, key=None if keys is None else keys[index]))
            return self._run_leased(xs, leases)
        finally:
            for lease in leases:
                lease.discard()  # frees leases of groups that never ran; no-op for finished ones

    def _run_leased(self, xs: Sequence[Any], leases: list[Lease]) -> list[Any]:
        """Call each leased model version once on its group of inputs, keep input order."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, lease in enumerate(leases):
            groups[id(lease.spec)].append(index)
        results: list[Any] = [None] * len(leases)
        for indices in groups.values():
            try:
                outputs = _run_group(leases[indices[0]].spec, [xs[i] for i in indices])
            except BaseException as error:
                for index in indices:
                    leases[index].release(error)
                raise
            for index, output in zip(indices, outputs):
                results[index] = output
                leases[index].release()
                self._mirror(leases[index], xs[index], output)
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
        key: Any = None,
    ) -> Future:
        """Route ``x`` now and queue it for its model; returns a Future of the result.

        ``priority`` ("high" or "normal"), ``deadline`` (seconds the model may
        take to start it) and ``timeout`` (seconds to wait for queue room, else
        ``Overloaded``): see :meth:`fastroute.executors.CPUExecutor.submit`.
        The request holds a lease on its model version until it completes, so
        a hot swap retires the old version only after this request ends.
        """
        executor = self.executor
        _, lease = self._decide_leased(analyze(x, hint=hint), key)
        try:
            future = executor.submit(lease.spec, x, priority=priority, deadline=deadline, timeout=timeout)
        except BaseException:
            lease.discard()
            raise
        future.add_done_callback(lambda done: self._complete(lease, x, done))
        return future

    async def ainfer(
        self,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
        hint: str | None = None,
        key: Any = None,
    ) -> Any:
        """``submit`` for asyncio: resolved on the caller's loop (call_soon_threadsafe), no polling."""
        future = self.submit(
            x, priority=priority, deadline=deadline, timeout=timeout, hint=hint, key=key
        )
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
        self.models.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _complete(self, lease: Lease, x: Any, done: Future) -> None:
        """Ends a submitted request's lease and offers its result to the shadow."""
        if done.cancelled():
            lease.discard()
        elif done.exception() is not None:
            lease.release(done.exception())
        else:
            lease.release()
            self._mirror(lease, x, done.result())

    def _retire_queues(self, spec: ModelSpec) -> None:
        """Registry hook: a retired version's executor queues drain and close."""
        with self._executor_lock:
            executor = self._executor
        if executor is not None:
            executor.retire(spec)

    def _decide(self, analysis: Analysis, key: Any = None) -> Decision:
        decision, lease = self._decide_leased(analysis, key)
        lease.discard()
        return decision

    def _decide_leased(self, analysis: Analysis, key: Any = None) -> tuple[Decision, Lease]:
        """The decision plus a lease on its model version, held until the request completes."""
        choice = self.policy.select(analysis, self.models)
        lease = self.models.lease(choice.model, key=key)
        spec = lease.spec
        reason = f"{choice.reason}; {lease.reason}"
        return Decision(spec.name, spec.version, analysis.modality, reason, choice.score), lease

    def _mirror(self, lease: Lease, x: Any, result: Any) -> None:
        """Offer a served request to its model's shadow, if any (never raises for it)."""
        if lease.shadow is not None:
            name, shadow = lease.spec.name, lease.shadow

            def run_shadow(sample: Any) -> Any:
                with self.models.lease(name, shadow.version) as shadow_lease:
                    return shadow_lease.spec.run_one(sample)

            shadow.offer(x, result, lease.spec.version, run_shadow)


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
