"""Executors: run routed requests on worker threads, in micro-batches.

Rooms: ``config`` (ExecutorConfig, the one definition of the tuning knobs),
``cpu`` (CPUExecutor over the C++ dispatcher), ``resilience``
(fallbacks, retries within a budget, circuit breakers).
"""

from __future__ import annotations

from .config import ExecutorConfig
from .cpu import PRIORITIES, CPUExecutor, QueueStats, ReplicaStats
from .resilience import BreakerSettings, Resilience, RetryPolicy

__all__ = [
    "BreakerSettings",
    "CPUExecutor",
    "ExecutorConfig",
    "QueueStats",
    "ReplicaStats",
    "Resilience",
    "RetryPolicy",
    "PRIORITIES",
]
