"""ExecutorConfig: the tuning knobs of an executor, validated once.

The settings, their defaults and their bounds are defined once, in C++
(``FASTROUTE_DISPATCH_SETTINGS`` in csrc/dispatcher.hpp), and read here from
``fastroute._core.DISPATCH_SETTINGS``; the config files' ``executor`` section
is made from the same table (see :func:`settings`).
"""

from __future__ import annotations

from dataclasses import field, make_dataclass
from typing import Any

from .. import _core
from ..errors import ExecutorError

__all__ = ["ExecutorConfig", "settings"]


def settings() -> tuple[tuple[str, int, int, int], ...]:
    """``(name, default, lowest, highest)`` of every executor setting, in order."""
    return _core.DISPATCH_SETTINGS


def _validate(config: Any) -> None:
    for name, _, low, high in settings():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ExecutorError(f"executor {name} must be an int in [{low}, {high}], got {value!r}")


ExecutorConfig = make_dataclass(
    "ExecutorConfig",
    [(name, int, field(default=default)) for name, default, _, _ in settings()],
    frozen=True,
    namespace={"__post_init__": _validate, "__module__": __name__},
)
ExecutorConfig.__doc__ = """Tuning knobs of a :class:`CPUExecutor`, validated once at construction
(:class:`~fastroute.ExecutorError` names a value out of its bounds).

- ``threads``: worker threads shared by every model (a hanging model holds one).
- ``max_batch``: most requests handed to a model in one call.
- ``max_delay_us``: longest wait after a batch's first request for more to arrive (batched
  models only: a model called once per request runs what is queued without waiting).
- ``queue_capacity``: bound of each replica's queue, per priority (rounded up to
  a power of two); a full queue makes ``submit`` raise :class:`~fastroute.Overloaded`.
- ``max_lanes``: most model replicas one executor serves at once (a retired
  spec's queues are reused); past it ``submit`` raises :class:`~fastroute.Overloaded`.
- ``spin_us``: how long an idle worker spins before parking (a park/wake costs
  tens of microseconds; spinning is bounded so idle workers burn no core).
- ``caller_runs``: 1 (default) lets a thread blocked in ``result()`` on a request still
  queued run it itself when no worker is on its replica (see :class:`CPUExecutor`,
  "Caller runs"); 0 leaves every model call to the workers.

Defaults and bounds: :func:`settings`.
"""
