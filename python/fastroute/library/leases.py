"""Leases: a request's claim on one model version, from decision to completion.

Memory ordering: a version's :class:`InFlight` count is a native
``HoldCount`` (csrc/model_state.hpp): holding and dropping are lock-free
atomic operations. The registry holds a version only under its lock, and
only while the version is active (the native request path holds the version
a catalog resolved and checks the catalog is still published afterwards); it
marks a version retiring under that lock after hiding it and before waiting
for the count to reach zero. A drop reads the mark after its decrement, so
either the drop sees the mark (and tells the registry, which then takes its
lock) or the registry's wait sees the count already at zero: no drain is
missed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Callable

from .. import _core
from .experiments import Experiment, Shadow
from .spec import ModelSpec, group_by_spec

__all__ = ["InFlight", "Lease", "run_leased"]


class InFlight:
    """How many requests hold one model version (a spec object). Thread-safe, lock-free.

    ``hold()`` is called by the registry under its lock (so that a version
    being hidden gets no new holders); ``drop()`` by a lease, from any thread,
    never blocking unless the version is ``retiring`` and this was its last
    request, when it calls ``on_drained(self)`` (which may take the
    registry's lock). ``holds`` is the native count itself: calling it drops
    one hold, so a queued request's handle ends its hold with
    ``handle.add_done_callback(in_flight.holds)``, no Python frame run.
    Neither allocates; neither fails.
    """

    __slots__ = ("spec", "holds")

    def __init__(self, spec: ModelSpec, on_drained: Callable[[InFlight], None]) -> None:
        self.spec = spec
        self.holds = _core.HoldCount(lambda: on_drained(self))

    @property
    def count(self) -> int:
        """Requests holding the version now (exact for a retiring version)."""
        return self.holds.count

    @property
    def retiring(self) -> bool:
        """Set (once, under the registry's lock) after the version is hidden."""
        return self.holds.retiring

    def mark_retiring(self) -> None:
        self.holds.mark_retiring()

    def hold(self) -> None:
        self.holds.hold()

    def drop(self) -> None:
        self.holds.drop()


class Lease:
    """A request's claim on one :class:`ModelSpec`, from decision to completion.

    While a lease is held, retiring its version waits. ``reason`` says why
    this version was chosen (pinned, alias, split, canary step, latest).
    Release it exactly once with the request's outcome (``release(error)``,
    or use it as a context manager); later releases are ignored. The outcome
    and latency feed the experiment that chose the version, if any.
    """

    __slots__ = (
        "spec", "reason", "shadow", "on_outcome", "_in_flight", "_experiment", "_clock", "_started", "_claim"
    )

    def __init__(
        self,
        in_flight: InFlight,
        reason: str,
        experiment: Experiment | None,
        shadow: Shadow | None,
    ) -> None:
        """A lease on ``in_flight.spec``, which the caller has just held for it."""
        self.spec = in_flight.spec
        self.reason = reason
        self.shadow = shadow
        #: Called with (error or None, latency in seconds) when the request ends (the feedback store's hook).
        self.on_outcome: Callable[[BaseException | None, float], None] | None = None
        self._in_flight = in_flight
        self._experiment = experiment
        self._clock: Callable[[], float] = experiment.clock if experiment is not None else time.perf_counter
        self._started = self._clock()
        self._claim = [True]  # popped once, atomically, by whichever end comes first

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
        try:
            self._claim.pop()
        except IndexError:
            return False
        self._in_flight.drop()
        return True

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.release(exc)


def run_leased(
    xs: Sequence[Any],
    leases: Sequence[Lease | None],
    results: list[Any],
    per_item: bool,
    on_result: Callable[[Lease, Any, Any], None],
) -> None:
    """On the calling thread, call each leased model version once on its group of inputs.

    ``results[i]`` gets input i's result, or per item its ModelError (else the
    first is raised); each lease ends with its input's outcome, and each result
    also goes to ``on_result(lease, x, result)`` (the shadow). Inputs without a
    lease are skipped.
    """
    leased = [index for index, lease in enumerate(leases) if lease is not None]
    for spec, indices in group_by_spec(leased, lambda index: leases[index].spec):
        for index in indices:
            leases[index].restart_clock()  # a later group's latency excludes earlier groups
        try:
            outcomes = spec.run_outcomes([xs[i] for i in indices], per_item=per_item)
        except BaseException as error:
            for index in indices:
                leases[index].release(error)
            raise
        for index, (error, output) in zip(indices, outcomes):
            results[index] = output if error is None else error
            leases[index].release(error)
            if error is None:
                on_result(leases[index], xs[index], output)
