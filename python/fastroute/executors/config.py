"""ExecutorConfig: the tuning knobs of an executor, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["ExecutorConfig"]


@dataclass(frozen=True)
class ExecutorConfig:
    """Tuning knobs of a :class:`CPUExecutor`, validated once at construction.

    - ``threads``: worker threads shared by every model (a hanging model holds one).
    - ``max_batch``: most requests handed to a model in one call.
    - ``max_delay_us``: longest wait after a batch's first request for more to arrive.
    - ``queue_capacity``: bound of each replica's queue, per priority (rounded up to
      a power of two); a full queue makes ``submit`` raise :class:`~fastroute.Overloaded`.
    - ``spin_us``: how long an idle worker spins before parking (a park/wake costs
      tens of microseconds; spinning is bounded so idle workers burn no core).
    - ``max_lanes``: most model replicas one executor serves at once (a retired
      spec's queues are reused); past it ``submit`` raises :class:`~fastroute.Overloaded`.
    """

    threads: int = 2
    max_batch: int = 32
    max_delay_us: int = 200
    queue_capacity: int = 4096
    spin_us: int = 20
    max_lanes: int = 1024

    def __post_init__(self) -> None:
        limits = {
            "threads": (1, 1024),
            "max_batch": (1, 1 << 20),
            "max_delay_us": (0, 60_000_000),
            "queue_capacity": (1, 1 << 24),
            "spin_us": (0, 1_000_000),
            "max_lanes": (1, 1 << 16),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"executor {name} must be an int in [{low}, {high}], got {value!r}")
