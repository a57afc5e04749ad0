"""Executors: run routed requests on worker threads, in micro-batches.

Rooms: ``config`` (ExecutorConfig, the one definition of the tuning knobs),
``cpu`` (CPUExecutor over the C++ dispatcher), ``handles`` (ResultHandle, what
``submit`` returns), ``waiting`` (the accepted requests not started yet, each
ended exactly once), ``resilience`` (fallbacks, retries within a budget,
circuit breakers), ``offload`` (the stand-in mechanism of executors that run
some models elsewhere), ``ray_actors`` (RayExecutor: ``device="ray"`` models on
Ray actors, its own settings in RaySettings; extra ``ray``), ``cuda``
(CUDAExecutor: ``device="cuda[:N]"`` models on GPUs; extra ``cuda``),
``remote`` (RemoteModel: a model built from its import path where it runs).
"""

from __future__ import annotations

from .config import ExecutorConfig
from .cpu import PRIORITIES, CPUExecutor, QueueStats, ReplicaStats
from .handles import ResultHandle
from .ray_actors import ActorStats, RayExecutor, RaySettings
from .remote import RemoteModel
from .resilience import BreakerSettings, Resilience, RetryPolicy

__all__ = [
    "ActorStats",
    "RayExecutor",
    "RaySettings",
    "RemoteModel",
    "ResultHandle",
    "BreakerSettings",
    "CPUExecutor",
    "ExecutorConfig",
    "QueueStats",
    "ReplicaStats",
    "Resilience",
    "RetryPolicy",
    "PRIORITIES",
]
