"""The requests an executor accepted whose model has not started them yet.

Three parties may end such a request: the worker that takes it from its queue
(to run it, or to fail it as expired or aborted), its deadline, and
``close(drain=False)``. Each must :meth:`WaitingRequests.claim` the request
first, and only one claim succeeds, so every request ends exactly once,
whichever comes first. A claim is one ``dict.pop``: atomic, never blocking.

Deadlines are enforced here, not only when a request leaves its queue: one
daemon thread per executor (started with the first request that has a
deadline, ending when none is left) fails each request still waiting at its
deadline, also one queued behind a hung model.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from typing import Any, Callable

from .handles import ResultHandle

__all__ = ["WaitingRequests", "fail_unstarted"]

_MIN_COMPACT = 1024  # deadline entries kept before ended requests are swept out of the heap
# Where a request (the executor's queued tuple, cpu.Request) holds its handle and its model spec.
_HANDLE, _SPEC = 0, 2


def fail_unstarted(future: ResultHandle, error: BaseException) -> None:
    """End a claimed request that never ran with ``error`` (a cancelled one stays cancelled)."""
    if future.set_running_or_notify_cancel():
        future.set_exception(error)


class WaitingRequests:
    """Accepted requests not yet claimed, and a watch failing each at its deadline. Thread-safe.

    ``clock`` gives nanoseconds on the dispatcher's clock (the one deadlines use);
    ``deadline_error(model)`` makes the exception of a request of ``model``
    whose deadline passed.
    """

    def __init__(
        self,
        deadline_error: Callable[[str], BaseException],
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._deadline_error = deadline_error
        self._clock = clock
        # id(future) -> the request (the queued tuple itself, so no entry is built per
        # request): requests no one has claimed. Holding the future keeps its id unique
        # until it is claimed.
        self._unclaimed: dict[int, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # (deadline_ns, tie-breaker, weak reference to the future, model): a heap, guarded by _lock
        self._deadlines: list[tuple[int, int, weakref.ref, str]] = []
        self._order = itertools.count()
        self._compact_at = _MIN_COMPACT  # guarded by _lock
        self._watching = False  # a watch thread runs; guarded by _lock

    @property
    def unclaimed(self) -> dict[int, tuple[Any, ...]]:
        """id(handle) -> request, for every request no one has claimed. The executor's native
        enqueue (``_core.RequestQueue``) adds a request without a deadline here itself, as
        :meth:`add` does (one dict store); everything else goes through the methods."""
        return self._unclaimed

    def add(self, request: tuple[Any, ...], deadline_ns: int | None) -> None:
        """Register a request about to be queued (the executor's tuple: its handle first, its
        model spec third); ``deadline_ns`` (absolute, or None) is watched."""
        future = request[_HANDLE]
        self._unclaimed[id(future)] = request
        if deadline_ns is None:
            return
        with self._lock:
            entry = (deadline_ns, next(self._order), weakref.ref(future), request[_SPEC].name)
            heapq.heappush(self._deadlines, entry)
            if len(self._deadlines) > self._compact_at:
                self._drop_ended()
            if not self._watching:
                self._watching = True
                threading.Thread(target=self._watch, name="fastroute-deadlines", daemon=True).start()
            elif self._deadlines[0] is entry:
                self._changed.notify()  # the watch sleeps until a later deadline

    def claim(self, future: ResultHandle) -> bool:
        """True for the one caller that may end this request; False for every later one."""
        return self._unclaimed.pop(id(future), None) is not None

    def fail_all(self, error: Callable[[str], BaseException]) -> None:
        """Claim and fail every waiting request with ``error(model)``; stop watching deadlines."""
        for request in list(self._unclaimed.values()):
            future = request[_HANDLE]
            if self.claim(future):
                fail_unstarted(future, error(request[_SPEC].name))
        self.close()

    def close(self) -> None:
        """Stop watching deadlines (when no request can be waiting any more)."""
        with self._lock:
            self._deadlines.clear()
            self._changed.notify()

    def _watch(self) -> None:
        """Fails due requests until no deadline is left."""
        while True:
            with self._lock:
                due = self._pop_due()
                if not due and not self._deadlines:
                    self._watching = False
                    return
                if not due:
                    self._changed.wait((self._deadlines[0][0] - self._clock()) / 1e9)
                    continue
            for future_ref, model in due:
                future = future_ref()
                if future is not None and self.claim(future):
                    fail_unstarted(future, self._deadline_error(model))

    def _pop_due(self) -> list[tuple[weakref.ref, str]]:
        """The entries whose deadline has passed, taken off the heap (caller holds _lock)."""
        now = self._clock()
        due = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, future_ref, model = heapq.heappop(self._deadlines)
            due.append((future_ref, model))
        return due

    def _drop_ended(self) -> None:
        """Sweep entries of requests already claimed out of the heap (caller holds _lock);
        amortised O(1) per request, as the heap must double before the next sweep."""
        self._deadlines = [entry for entry in self._deadlines if self._is_unclaimed(entry[2])]
        heapq.heapify(self._deadlines)
        self._compact_at = max(_MIN_COMPACT, 2 * len(self._deadlines))

    def _is_unclaimed(self, future_ref: weakref.ref) -> bool:
        future = future_ref()
        return future is not None and id(future) in self._unclaimed
