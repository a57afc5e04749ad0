"""analyze_batch holds every item while it works without the GIL (issue 9).

Another thread swaps the contents of the very list being analysed, so the
items it drops are freed unless the batch holds them. Before the fix the
batch only borrowed the caller's list: a use-after-free (SIGSEGV in a normal
build within a few swaps; the sanitizer step runs this file under ASan too).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

import fastroute as fr

SWAPS = 12
# New objects, large enough to be returned to the OS when freed, of each input kind.
MAKERS: dict[str, Callable[[int], object]] = {
    "str": lambda round_: "word " * 200_000 + str(round_),
    "bytes": lambda round_: b"word " * 600_000 + str(round_).encode(),
    "bytearray": lambda round_: bytearray(b"word " * 600_000),
    "array": lambda round_: np.full(2_000_000, float(round_)),
}


@pytest.mark.parametrize("kind", MAKERS)
def test_a_thread_replacing_the_items_during_analyze_batch(kind):
    make = MAKERS[kind]
    items = [make(0) for _ in range(6)]
    expected = fr.analyze_batch(items).modalities
    swaps = 0
    stop = threading.Event()

    def replace_items() -> None:
        nonlocal swaps
        while not stop.is_set():
            fresh = [make(swaps + 1) for _ in range(6)]
            items[:] = fresh  # the old items' last reference goes
            del fresh
            swaps += 1

    replacer = threading.Thread(target=replace_items)
    replacer.start()
    try:
        while swaps < SWAPS:
            assert fr.analyze_batch(items).modalities == expected
    finally:
        stop.set()
        replacer.join()
