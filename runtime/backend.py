"""Where a tool call actually runs. The scheduler only sees :class:`ExecutionBackend`.

:class:`InProcessBackend` runs async tools on the event loop and sync tools in worker
threads, so they never block it. A distributed backend (Ray) implements the same method.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Protocol

from .threads import run_in_thread, set_worker_threads
from .tools import Tool, ToolContext

__all__ = ["ExecutionBackend", "InProcessBackend"]


class ExecutionBackend(Protocol):
    async def call(self, tool: Tool, args: dict[str, Any], context: ToolContext | None) -> Any:
        """Run ``tool`` with validated ``args`` and return its output. ``context`` is given
        when the tool asks for one (``tool.context_param``)."""


class InProcessBackend:
    """Async tools on the event loop, sync tools in worker threads: the process's shared,
    bounded pool (see :mod:`dagentic.threads`; ``worker_threads``, when given, sizes it).

    A cancelled sync tool is not abandoned: the run waits for its thread to return, so no
    thread outlives the run. Long-running sync tools should call
    ``anyio.from_thread.check_cancelled()`` now and then to stop promptly.
    """

    def __init__(self, worker_threads: int | None = None) -> None:
        if worker_threads is not None:
            set_worker_threads(worker_threads)

    async def call(self, tool: Tool, args: dict[str, Any], context: ToolContext | None) -> Any:
        if tool.context_param is not None:
            args[tool.context_param] = context
        if tool.is_async:
            return await tool.fn(**args)
        return await run_in_thread(partial(tool.fn, **args))
