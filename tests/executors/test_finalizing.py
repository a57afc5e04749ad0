"""A worker detached by ``close(timeout=...)`` or by the exit finalizer's join timeout
may return to Python while the interpreter finalizes: the process must exit cleanly.

Each run is a fresh interpreter whose model keeps taking the GIL back (from a
sleep, or through the eval loop's switch requests) until the interpreter is
gone, so every run reaches the window that used to crash (SIGSEGV/SIGBUS: a
use-after-free of the worker's thread state).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

FINALIZING_SCRIPT = """
import sys, threading, time
from fastroute import CPUExecutor, ModelSpec, RouterClosed
from fastroute.executors import cpu

how, leave = sys.argv[1], sys.argv[2]
started = threading.Event()

def model(x):
    started.set()
    while True:  # keeps taking the GIL back until the interpreter is gone
        if how == "sleep":
            time.sleep(0.001)

executor = CPUExecutor(threads=1)
future = executor.submit(ModelSpec("forever", "1", model, "tabular"), 1)
queued = [executor.submit(ModelSpec("forever", "1", model, "tabular"), i) for i in range(3)]
assert started.wait(30)
if leave == "close":
    try:
        executor.close(drain=False, timeout=0.01)
    except RouterClosed:
        print("detached", flush=True)
else:  # the exit finalizer closes it, with a short join timeout
    cpu._EXIT_JOIN_TIMEOUT_S = 0.01
    print("left open", flush=True)
"""


def run_finalizing(leave: str, repeats: int) -> None:
    """``repeats`` interpreters per way of returning to Python, four at a time; each must exit 0."""
    for start in range(0, repeats, 2):
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", FINALIZING_SCRIPT, how, leave],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for how in ("sleep", "spin")
            for _ in range(min(2, repeats - start))
        ]
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, f"exit status {run.returncode}: {err}"
            assert out.strip() in ("detached", "left open"), err


@pytest.mark.parametrize("leave", ["close", "exit"])
def test_a_detached_worker_returning_to_python_during_finalization_does_not_crash(leave):
    # Every run reaches the window (see above): one interpreter per way suffices here; the
    # soak below repeats them.
    run_finalizing(leave, repeats=1)


@pytest.mark.slow
@pytest.mark.parametrize("leave", ["close", "exit"])
def test_a_detached_worker_returning_to_python_during_finalization_soak(leave):
    run_finalizing(leave, repeats=25)
