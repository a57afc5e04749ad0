"""Executors: run routed requests on worker threads, in micro-batches.

Rooms: ``config`` (ExecutorConfig, the one definition of the tuning knobs),
``cpu`` (CPUExecutor over the C++ dispatcher).
"""

from __future__ import annotations

from .config import ExecutorConfig
from .cpu import PRIORITIES, CPUExecutor, QueueStats

__all__ = ["CPUExecutor", "ExecutorConfig", "QueueStats", "PRIORITIES"]
