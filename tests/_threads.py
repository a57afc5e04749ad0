"""Counting the executors' native worker threads from tests."""

from __future__ import annotations

import os
import threading
import time


def native_thread_count() -> int:
    """OS threads that are not Python threads: the executors' workers."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def settled_native_thread_count(expected: int | None = None, timeout: float = 5.0) -> int:
    """native_thread_count() once Python threads of earlier tests, which leave
    threading's registry before they leave the OS, are gone: the count equals
    ``expected``, or (without one) has not changed for 50 ms."""
    give_up = time.monotonic() + timeout
    count = native_thread_count()
    while time.monotonic() < give_up and count != expected:
        time.sleep(0.05)
        latest = native_thread_count()
        if expected is None and latest == count:
            break
        count = latest
    return count
