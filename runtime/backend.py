"""Where a tool call actually runs. The scheduler only sees :class:`ExecutionBackend`.

:class:`InProcessBackend` runs async tools on the event loop and sync tools in worker
threads, so they never block it. :class:`~dagentic.ray_backend.RayBackend` runs them on a
Ray cluster (``execution.backend = "ray"``); :func:`backend_from_settings` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from .threads import run_in_thread, set_worker_threads
from .tools import Tool, ToolContext

__all__ = ["CallSite", "ExecutionBackend", "InProcessBackend", "backend_from_settings"]


@dataclass(frozen=True, slots=True)
class CallSite:
    """What the step says about one call, for a backend that places calls: the step's
    ``resources`` (over the tool's own), and the arguments as the plan's expressions gave
    them, before validation (so a backend can tell an earlier output passed whole)."""

    resources: Mapping[str, float] = field(default_factory=dict)
    raw_args: Mapping[str, Any] = field(default_factory=dict)


class ExecutionBackend(Protocol):
    async def call(
        self,
        tool: Tool,
        args: dict[str, Any],
        context: ToolContext | None,
        call_site: CallSite | None = None,
    ) -> Any:
        """Run ``tool`` with validated ``args`` and return its output. ``context`` is given
        when the tool asks for one (``tool.context_param``); ``call_site`` says what the
        step asks of the call's placement (a backend whose ``call`` has no ``call_site``
        parameter is called without it)."""


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

    async def call(
        self,
        tool: Tool,
        args: dict[str, Any],
        context: ToolContext | None,
        call_site: CallSite | None = None,
    ) -> Any:
        if tool.context_param is not None:
            args[tool.context_param] = context
        if tool.is_async:
            return await tool.fn(**args)
        return await run_in_thread(partial(tool.fn, **args))


def backend_from_settings(settings: Any) -> ExecutionBackend:
    """The backend ``execution.backend`` names: in process, or Ray (connected now, so a
    cluster that cannot be reached is an error before anything runs)."""
    if settings.execution.backend == "ray":
        from .ray_backend import RayBackend

        backend = RayBackend(settings.ray)
        backend.start()
        return backend
    return InProcessBackend()
