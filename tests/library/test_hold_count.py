"""The lease count (leases.InFlight over the native HoldCount): holds, drops, the drain
report of a retiring version, the handle's native done-callback, and collection."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from fastroute import InvalidInput, ResultHandle, _core
from fastroute.library.leases import InFlight
from fastroute.library.spec import ModelSpec


def test_the_last_drop_of_a_retiring_version_reports_it_once() -> None:
    drained: list[InFlight] = []
    in_flight = InFlight(ModelSpec("m", "1", lambda x: x, "tabular"), drained.append)
    in_flight.hold()
    in_flight.hold()
    in_flight.drop()
    assert in_flight.count == 1 and not in_flight.retiring
    in_flight.mark_retiring()
    in_flight.drop()
    assert drained == [in_flight] and in_flight.count == 0 and in_flight.retiring
    with pytest.raises(InvalidInput, match="no hold to drop"):
        in_flight.drop()
    assert drained == [in_flight] and in_flight.count == 0


def test_a_handle_drops_its_hold_natively_when_it_settles() -> None:
    holds = _core.HoldCount()
    holds.hold()
    handle = ResultHandle()
    handle.add_done_callback(holds)  # called as holds(handle): any arguments drop one hold
    assert holds.count == 1
    handle.set_running_or_notify_cancel()
    handle.set_result(42)
    assert holds.count == 0 and handle.result() == 42


def test_many_threads_hold_and_drop() -> None:
    holds = _core.HoldCount()

    def churn() -> None:
        for _ in range(20_000):
            holds.hold()
            holds.drop()

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert holds.count == 0


def test_an_in_flight_count_and_its_owner_are_collected_together() -> None:
    class Owner:
        def drained(self, in_flight: InFlight) -> None:
            pass

    owner = Owner()
    owner.in_flight = InFlight(ModelSpec("m", "1", lambda x: x, "tabular"), owner.drained)  # a cycle
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None
    with pytest.raises(TypeError):
        _core.HoldCount(1, 2)
