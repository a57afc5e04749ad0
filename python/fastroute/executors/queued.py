"""Queueing a request already decided and held, for asyncio (the router's ``ainfer``):
at once when its queue has room, else waiting up to ``timeout`` for room without
blocking the event loop. The hold ends exactly once: with the request, or at once
when it was never queued."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import Overloaded

if TYPE_CHECKING:
    from ..library.spec import ModelSpec
    from .cpu import CPUExecutor

__all__ = ["queued_awaitable", "queued_when_room", "raising"]


def queued_awaitable(
    executor: CPUExecutor,
    spec: ModelSpec,
    x: Any,
    priority: str,
    deadline: float | None,
    timeout: float | None,
    end: Callable[..., None],
) -> Awaitable[Any]:
    """``x`` queued for ``spec``: its handle's asyncio future (no task, no coroutine) when
    there is room now; else a coroutine waiting for room (:func:`queued_when_room`).
    ``end(handle)`` ends the request's hold once it settles (``end(None)``: never queued).
    Errors are raised where the result is awaited."""
    try:
        handle = executor.submit(spec, x, priority=priority, deadline=deadline)
    except Overloaded:  # a full queue: wait for room, as long as timeout says
        return queued_when_room(executor, spec, x, priority, deadline, timeout, end, ())
    except Exception as error:  # noqa: BLE001 - raised where the caller awaits
        end(None)  # nothing was queued: the hold ends now
        return raising(error)
    handle.add_done_callback(end)  # the hold ends with the request
    return handle.asyncio_future()


async def queued_when_room(
    executor: CPUExecutor,
    spec: ModelSpec,
    x: Any,
    priority: str,
    deadline: float | None,
    timeout: float | None,
    end: Callable[..., None],
    args: tuple[Any, ...],
) -> Any:
    """Queue a decided request, waiting up to ``timeout`` for room; its result.
    ``end(*args, handle)`` ends its hold once it settles (``handle`` None: never queued)."""
    try:
        handle = await executor.asubmit(spec, x, priority=priority, deadline=deadline, timeout=timeout)
    except BaseException:  # CancelledError while waiting for room too
        end(*args, None)
        raise
    handle.add_done_callback(end, *args)
    return await handle


async def raising(error: Exception) -> Any:
    """An awaitable that raises ``error`` where it is awaited."""
    raise error
