"""Worker threads: one limit for every thread dagentic starts in a process.

Sync tools, and every blocking call dagentic makes (a DuckDB query, an embedding, a
Docker API call, a disk cache read), run through :func:`run_in_thread`. They all share one
:class:`anyio.CapacityLimiter` per event loop, sized by the ``worker_threads`` setting, so
the number of threads stays bounded however many runs and executors a process holds (a
limiter per executor let 300 runs start 1,500 threads). anyio keeps an idle worker thread
about ten seconds for reuse, so a process holds at most about ``worker_threads`` of them
per event loop.

A sync tool must not wait, from its thread, for other work that needs a worker thread
(``anyio.from_thread.run`` of something that calls :func:`run_in_thread`): with every
thread taken by such tools, nothing could finish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

__all__ = ["DEFAULT_WORKER_THREADS", "run_in_thread", "set_worker_threads", "thread_limiter"]

T = TypeVar("T")

DEFAULT_WORKER_THREADS = 16
_size = DEFAULT_WORKER_THREADS
_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("dagentic-worker-threads")


def set_worker_threads(count: int) -> None:
    """Set how many worker threads the process's dagentic work may use at once, on every
    event loop (an :class:`~dagentic.Executor` sets it from its settings' ``worker_threads``;
    the last one set wins)."""
    global _size
    if count < 1:
        raise ValueError(f"worker_threads must be at least 1, not {count!r}")
    _size = count


def thread_limiter() -> anyio.CapacityLimiter:
    """The current event loop's limiter of worker threads (created on first use)."""
    try:
        limiter = _LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_size)
        _LIMITER.set(limiter)
    if limiter.total_tokens != _size:
        limiter.total_tokens = _size
    return limiter


async def run_in_thread(
    function: Callable[..., T], *args: object, abandon_on_cancel: bool = False
) -> T:
    """Call ``function(*args)`` in a worker thread, within the process's thread limit
    (:func:`anyio.to_thread.run_sync` with the shared limiter). Waiting for a free thread
    is waiting like any other: it can be cancelled."""
    return await anyio.to_thread.run_sync(
        function, *args, abandon_on_cancel=abandon_on_cancel, limiter=thread_limiter()
    )
