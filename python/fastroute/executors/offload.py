"""OffloadingExecutor: a CPUExecutor whose some models run elsewhere (Ray actors, a GPU).

The C++ queue and batcher stay in the router's process. A model this
executor offloads is queued as a stand-in spec: batched, with the same
replicas (one lane each), whose "model" is a runner object that takes one
whole stacked batch and returns its results (sending it to an actor, copying
it to a device). The dispatcher's worker waits for the runner with the GIL
released, so ``threads`` bounds the batches in flight across every model.
Everything else (deadlines, priorities, exactly-once futures, retire, close,
stats, load-aware choice) is the CPUExecutor's, unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from ..errors import RouterClosed
from ..library.spec import ModelSpec
from .cpu import CPUExecutor

__all__ = ["OffloadingExecutor"]


class OffloadingExecutor(CPUExecutor):
    """Subclasses say which specs they take (:meth:`_offloads`), build a runner for one
    (:meth:`_make_runner`: a callable on one batch with ``stats()`` and ``close()``) and
    name its stats (:meth:`backend_stats`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # id(spec) -> (spec, its runner, the stand-in spec queued for it)
        self._runners: dict[int, tuple[ModelSpec, Any, ModelSpec]] = {}  # guarded by _runner_lock for writes
        self._runner_lock = threading.Lock()

    def _offloads(self, spec: ModelSpec) -> bool:
        raise NotImplementedError

    def _make_runner(self, spec: ModelSpec) -> Any:
        raise NotImplementedError

    def _runs_in_callers(self) -> bool:
        """Never: the batches of offloaded models run on the workers (see CPUExecutor, "Caller runs")."""
        return False

    def _queues_natively(self) -> bool:
        """Never: an offloaded spec is queued as its stand-in (see :meth:`_push`)."""
        return False

    def _lanes_per_replica(self) -> int:
        """Dispatcher lanes (batches in flight at once) per replica of an offloaded model."""
        return 1

    def start(self, spec: ModelSpec) -> None:
        """Build ``spec``'s runner now (else on its first request); its errors
        (:class:`~fastroute.RegistrationError`) surface here. Blocking; thread-safe;
        a no-op for models this executor runs in process."""
        if self._offloads(spec):
            self._stand_in(spec)

    def runner_stats(self, spec: ModelSpec) -> Any:
        """``stats()`` of ``spec``'s runner, or None before it started."""
        known = self._runners.get(id(spec))
        return known[1].stats() if known is not None else None

    def retire(self, spec: ModelSpec, *, drain: bool = True) -> None:
        """As :meth:`CPUExecutor.retire`, then closes the model's runner."""
        known = self._runners.get(id(spec))
        super().retire(known[2] if known is not None else spec, drain=drain)
        with self._runner_lock:
            self._runners.pop(id(spec), None)
        if known is not None:
            known[1].close()

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """As :meth:`CPUExecutor.close`, then closes every runner."""
        try:
            super().close(drain, timeout)
        finally:
            with self._runner_lock:
                runners, self._runners = list(self._runners.values()), {}
            for _, runner, _ in runners:
                runner.close()

    def _lanes_of(self, spec: ModelSpec) -> tuple[int, ...]:
        known = self._runners.get(id(spec))
        return super()._lanes_of(known[2] if known is not None else spec)

    def _push(self, spec: ModelSpec, x: Any, high: bool, deadline_ns: int, timeout_s: float) -> tuple[int, Any]:
        if self._offloads(spec):
            spec = self._stand_in(spec)
        return super()._push(spec, x, high, deadline_ns, timeout_s)

    def _stand_in(self, spec: ModelSpec) -> ModelSpec:
        """The spec queued for ``spec``: batched, its model the runner (built once)."""
        known = self._runners.get(id(spec))
        if known is not None:
            return known[2]
        with self._runner_lock:
            if self._closed:
                raise RouterClosed(f"executor closed; model {spec.name!r} not started")
            known = self._runners.get(id(spec))
            if known is None:
                runner = self._make_runner(spec)
                lanes = spec.replicas * self._lanes_per_replica()
                known = self._runners[id(spec)] = (spec, runner, replace(spec, model=runner, batched=True, replicas=lanes))
            return known[2]
