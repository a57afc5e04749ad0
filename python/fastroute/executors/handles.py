"""ResultHandle: what every submitted request returns (``router.submit``, ``executor.submit``).

A C++ object (``fastroute._core.ResultHandle``, csrc/result.hpp) with the methods
of :class:`concurrent.futures.Future`: ``result(timeout=None)``, ``exception(timeout=None)``,
``done()``, ``cancel()`` (only before the model starts the request), ``cancelled()``,
``running()``, ``add_done_callback(fn)`` (``fn(handle)`` runs once, on the thread that
settles it, or at once if already done), and ``decision`` (the router's Decision).

Cheaper than a Future: creating and settling one costs a third of a Future's, and a
blocking ``result()`` releases the GIL and spins briefly (the executor's ``spin_us``)
before it parks, so a worker that answers within the spin wakes nobody. Before waiting,
``result()`` and ``exception()`` without a timeout run the request on the calling thread
when it is still queued and no worker serves its replica (a CPUExecutor's "caller runs",
see executors/cpu.py): then nothing is handed between threads at all.

``await handle`` works on any event loop. A worker settling a batch sets the asyncio
future of each awaited request in one ``loop.call_soon_threadsafe`` per loop for the
whole batch; cancelling the awaited future (the awaiting task cancelled, ``asyncio.wait_for``
timing out) drops the request if it has not started. No callback watches that future (it
would cost two objects per request): the cancel is read when a worker starts the request
and whenever the handle's state is read, so until then ``cancelled()`` is what tells, and a
cancelled request keeps its model version's hold until a worker reaches it.

``concurrent.futures.wait`` and ``as_completed`` accept handles directly (a handle
makes the condition and waiter list they read only when they ask for them).
``handle.as_future()`` gives a :class:`concurrent.futures.Future` mirroring the handle,
made on first call, for code that needs the class itself (``asyncio.wrap_future``,
``isinstance`` checks); cancelling it cancels the request if it has not started (once
started, the Future may say cancelled while the handle still completes).

>>> handle = router.submit(x)
>>> handle.result(timeout=1.0), handle.decision.model
>>> result = await router.executor.asubmit(spec, x)   # in a coroutine: the handle, awaited
"""

from __future__ import annotations

from .. import _core

__all__ = ["ResultHandle"]

ResultHandle = _core.ResultHandle
