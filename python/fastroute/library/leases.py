"""Lease: a request's claim on one model version, from decision to completion."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from .experiments import Experiment, Shadow
from .spec import ModelSpec

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["Lease"]


class Lease:
    """A request's claim on one :class:`ModelSpec`, from decision to completion.

    While a lease is held, retiring its version waits. ``reason`` says why
    this version was chosen (pinned, alias, split, canary step, latest).
    Release it exactly once with the request's outcome (``release(error)``,
    or use it as a context manager); later releases are ignored. The outcome
    and latency feed the experiment that chose the version, if any.
    """

    __slots__ = (
        "spec", "reason", "shadow", "on_outcome", "_registry", "_experiment", "_clock", "_started", "_released"
    )

    def __init__(
        self,
        registry: Registry,
        spec: ModelSpec,
        reason: str,
        experiment: Experiment | None,
        shadow: Shadow | None,
    ) -> None:
        self.spec = spec
        self.reason = reason
        self.shadow = shadow
        #: Called with (error or None, latency in seconds) when the request ends (the feedback store's hook).
        self.on_outcome: Callable[[BaseException | None, float], None] | None = None
        self._registry = registry
        self._experiment = experiment
        self._clock: Callable[[], float] = experiment.clock if experiment is not None else time.perf_counter
        self._started = self._clock()
        self._released = False

    def release(self, error: BaseException | None = None) -> None:
        """End the request: record its outcome and let a retiring version drain."""
        latency = self._clock() - self._started
        if not self._end():
            return
        if self._experiment is not None:
            self._experiment.observe(self.spec.version, error is None, latency)
        if self.on_outcome is not None:
            self.on_outcome(error, latency)

    def restart_clock(self) -> None:
        """Measure latency from now: the request starts running after waiting its turn."""
        self._started = self._clock()

    def discard(self) -> None:
        """End a lease whose request never ran (a decision only): no outcome is recorded."""
        self._end()

    def _end(self) -> bool:
        """Give the claim back; True only the first time."""
        with self._registry._lock:
            if self._released:
                return False
            self._released = True
            retired = self._registry._release(self.spec)
        if retired is not None:
            self._registry._retire_in_background(retired)
        return True

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.release(exc)
