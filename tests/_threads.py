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


def native_threads_started_since(tasks_before: set[str]) -> list[str]:
    """Ids of the OS threads, not Python threads, that are not in ``tasks_before``
    (a listing of /proc/self/task): e.g. the workers of an executor made since."""
    python_threads = {str(thread.native_id) for thread in threading.enumerate()}
    return sorted(set(os.listdir("/proc/self/task")) - tasks_before - python_threads)


def thread_state_and_cpu_ticks(thread_id: str) -> tuple[str, int]:
    """One thread's scheduler state (R running, S sleeping...) and the CPU time
    it has used (user + system, in clock ticks), from /proc/self/task/ID/stat."""
    with open(f"/proc/self/task/{thread_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[11]) + int(fields[12])
