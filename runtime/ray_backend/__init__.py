"""Tool calls on a Ray cluster: ``execution.backend = "ray"`` (the ``ray`` extra).

The scheduler, validation, expressions, retries, timeouts, approvals and the journal stay
in the driver; only the call moves. Each call is a Ray task with the resources its tool
declares (``@tool(resources=...)``) and its step overrides (``resources:`` in the plan);
a tool that keeps state (``@tool(stateful=True)``) gets one long-lived actor whose calls
run in its process.

- **Outputs**: a call's output is its task's second return value. One larger than
  ``ray.by_reference_bytes`` (pickled; 1 MiB by default) stays in the object store: a
  later call that takes it as an argument gets a reference and fetches it from the node
  that holds it, not from the driver. The driver fetches one copy, for the run's result
  and the journal.
- **Lost calls**: a call whose worker or node dies under it is run again, up to
  ``ray.lost_call_retries`` times, only when its tool is idempotent; each time is a
  ``dagentic.ray.lost`` event on the step's span (Ray's own task retries are off, so the
  count is one count). A call of a tool that is not idempotent fails with ``tool_error``.
  These do not count as the step's attempts: ``retry:`` counts the tool's own failures.
- **Cancellation and timeouts**: a cancelled call cancels its task (the worker process is
  killed; an actor's call is only abandoned: the actor finishes it).
- **Traces**: the call's span context goes into the task; the task's span
  (``ray.task TOOL``, with the node, worker and process) and any span the tool makes
  there come back with the result and are filed with the run's other spans.

Nothing imports Ray until a backend is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from opentelemetry import trace
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from ..attributes import RAY_BY_REFERENCE, RAY_LOST, RAY_NODE, RAY_PID, RAY_WORKER
from ..errors import ClusterError, ToolError
from ..spans import FastSpan
from ..threads import run_in_thread
from ..tools import Tool, ToolContext
from ._remote import ByReference, Report, ToolHost, run_call
from .cluster import connect, first_line

if TYPE_CHECKING:
    from ..backend import CallSite
    from ..settings import RaySettings

__all__ = ["RayBackend"]

_KEPT_REFERENCES = 64  # large outputs whose object-store reference the backend keeps
_NODES_FRESH = 5.0  # seconds the cluster's list of nodes is trusted for placement checks
_RAY_NAMES = {"num_cpus": "CPU", "memory": "memory"}


class RayBackend:
    """Runs each tool call on a Ray cluster (see the module's description).

    Args:
        settings: the ``ray`` settings (address, retries of lost calls, the size above
            which outputs stay in the object store); default: from files and environment.
    """

    name = "ray"

    def __init__(self, settings: RaySettings | None = None) -> None:
        if settings is None:
            from ..settings import Settings

            settings = Settings().ray
        self.settings = settings
        self._task: Any = None
        self._actors: dict[str, Any] = {}
        self._tasks: dict[tuple[str, tuple[tuple[str, float], ...]], Any] = {}
        self._nodes_read: tuple[float, list[dict[str, float]]] | None = None
        # id(output) -> (output, ref) of large outputs, newest last
        self._references: OrderedDict[int, tuple[Any, Any]] = OrderedDict()

    def start(self) -> None:
        """Connect to the cluster (or start a local one) now, not at the first call.
        Raises :class:`~dagentic.ClusterError` when it cannot be reached."""
        if self._task is None:
            import ray

            connect(self.settings)
            self._task = ray.remote(max_retries=0, num_returns=2)(run_call)

    async def call(
        self,
        tool: Tool,
        args: dict[str, Any],
        context: ToolContext | None,
        call_site: CallSite | None = None,
    ) -> Any:
        if self._task is None:
            await run_in_thread(self.start)
        import ray.exceptions

        lost = (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.ActorDiedError,
            ray.exceptions.ActorUnavailableError,
        )
        step_span = trace.get_current_span()
        parent = step_span.get_span_context()
        carried = (
            (parent.trace_id, parent.span_id, int(parent.trace_flags)) if parent.is_valid else None
        )
        sent = self._by_reference(tool, args, call_site)
        adapters = {
            name: tool.field_adapter(name) for name, v in sent.items() if isinstance(v, ByReference)
        }
        remote_context = (
            None if context is None else replace(context, progress=None, untrusted_output=[])
        )
        call = (
            tool.fn,
            tool.is_async,
            tool.name,
            sent,
            tool.context_param,
            remote_context,
            carried,
            adapters,
            self.settings.by_reference_bytes,
        )
        resources = {**tool.resources, **self.settings.tool_resources.get(tool.name, {})}
        if call_site is not None and call_site.resources:
            resources.update(call_site.resources)
        retries = 0
        while True:
            report_ref, output_ref = self._submit(tool, call, resources)
            try:
                report: Report = await _result(report_ref)
                output = report.output
                if report.error is None and not report.inline:  # it stayed in the store
                    output = await _result(output_ref)
            except lost as exc:
                reason = f"{type(exc).__name__}: {first_line(exc)}"
                self._actors.pop(tool.name, None)  # a stateful tool's next call: a new one
                if not tool.idempotent:
                    raise ToolError(
                        f"tool '{tool.name}': its Ray worker was lost during the call "
                        f"({reason}); not run again because the tool is not idempotent"
                    ) from None
                if retries >= self.settings.lost_call_retries:
                    raise ToolError(
                        f"tool '{tool.name}': its Ray worker was lost during the call "
                        f"{retries + 1} times, the last: {reason} (ray.lost_call_retries = "
                        f"{self.settings.lost_call_retries})",
                        retryable=True,
                    ) from None
                retries += 1
                step_span.add_event(
                    RAY_LOST,
                    {"dagentic.ray.reason": reason, "dagentic.ray.rerun": retries},
                )
                continue
            except BaseException:
                with contextlib.suppress(Exception):
                    ray.cancel(report_ref, force=not tool.stateful)
                raise
            break
        _file_spans(step_span, report, carried)
        if context is not None and report.untrusted:
            context.mark_untrusted(*report.untrusted)
        if report.error is not None:
            raise report.error
        if not report.inline:
            self._remember(output, output_ref)
        return output

    # -- where calls go ------------------------------------------------------------------

    def _submit(self, tool: Tool, call: tuple[Any, ...], resources: dict[str, float]) -> Any:
        if resources:
            self._check_placeable(tool, resources)
        options: dict[str, Any] = {"name": tool.name}
        custom = {k: v for k, v in resources.items() if k not in ("num_cpus", "memory")}
        if "num_cpus" in resources:
            options["num_cpus"] = resources["num_cpus"]
        if "memory" in resources:
            options["memory"] = int(resources["memory"])
        if custom:
            options["resources"] = custom
        if not tool.stateful:
            key = (tool.name, tuple(sorted(resources.items())))
            task = self._tasks.get(key)
            if task is None:  # Ray's options() costs a millisecond: once per kind of call
                task = self._tasks[key] = self._task.options(**options)
            return task.remote(call)  # one argument: Ray serializes each separately
        actor = self._actors.get(tool.name)
        if actor is None:
            import ray

            host = ray.remote(ToolHost)
            actor = self._actors[tool.name] = host.options(
                max_concurrency=tool.max_concurrency or 16,
                max_restarts=-1 if tool.idempotent else 0,
                **options,
            ).remote()
        return actor.call.options(num_returns=2).remote(call)

    def _check_placeable(self, tool: Tool, resources: dict[str, float]) -> None:
        """Refuse a call no node of the cluster could take (Ray would leave it pending for
        good): each resource asked for must be offered, in that amount, by one node."""
        import ray

        now = time.monotonic()
        if self._nodes_read is None or now - self._nodes_read[0] > _NODES_FRESH:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            self._nodes_read = (now, nodes)
        wanted = {_RAY_NAMES.get(k, k): v for k, v in resources.items() if v}
        nodes = self._nodes_read[1]
        if any(all(node.get(k, 0) >= v for k, v in wanted.items()) for node in nodes):
            return
        offered = sorted({name for node in nodes for name in node if not name.startswith("node:")})
        raise ClusterError(
            f"tool '{tool.name}' needs {_shown(resources)} of one node, and no node of the Ray "
            f"cluster offers that (they offer: {', '.join(offered) or 'nothing'}); give a node "
            "the resource (ray start --resources), or change the step's resources: or "
            "ray.tool_resources"
        )

    def _by_reference(
        self, tool: Tool, args: dict[str, Any], call_site: CallSite | None
    ) -> dict[str, Any]:
        """``args`` with each value that is a large output this backend returned (as the
        plan's expression gave it, before validation) replaced by its reference."""
        raw = call_site.raw_args if call_site is not None else None
        if not self._references or not raw:
            return args
        sent = dict(args)
        for name, value in raw.items():
            kept = self._references.get(id(value))
            if kept is not None and kept[0] is value and name in sent:
                sent[name] = ByReference(kept[1])
        return sent

    def _remember(self, output: Any, ref: Any) -> None:
        self._references[id(output)] = (output, ref)
        while len(self._references) > _KEPT_REFERENCES:
            self._references.popitem(last=False)


async def _result(ref: Any) -> Any:
    """The value of ``ref``, waited for without a thread, on asyncio or trio."""
    future = ref.future()
    if not future.done():
        done = anyio.Event()
        wake: Callable[[], Any]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: its token runs the wake-up on its loop
            token = anyio.lowlevel.current_token()

            def wake() -> None:
                anyio.from_thread.run_sync(done.set, token=token)
        else:

            def wake() -> None:
                loop.call_soon_threadsafe(done.set)

        def ready(_: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                wake()

        future.add_done_callback(ready)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
    return future.result()


def _shown(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"


def _file_spans(step_span: Any, report: Report, carried: tuple[int, int, int] | None) -> None:
    """The task's spans, as children of the step's span, and where it ran on the step's
    own span (``dagentic trace`` shows it)."""
    where = {
        RAY_NODE: report.node_id,
        RAY_WORKER: report.worker_id,
        RAY_PID: report.pid,
    }
    if report.by_reference:
        where[RAY_BY_REFERENCE] = tuple(report.by_reference)
    step_span.set_attributes(where)
    if carried is None or not isinstance(step_span, FastSpan):
        return
    tracer = step_span.tracer
    parent = step_span.get_span_context()
    for name, span_id, parent_id, kind, attributes, events, code, text, start, end in report.spans:
        span = FastSpan(
            tracer,
            name,
            SpanContext(carried[0], span_id, False, parent.trace_flags, parent.trace_state),
            SpanContext(carried[0], parent_id, False, parent.trace_flags, parent.trace_state),
            SpanKind(kind),
            attributes,
            None,
            start,
            True,
            True,
        )
        span.root = step_span.root
        span.events = [Event(n, a, t) for n, t, a in events] or None
        if code != StatusCode.UNSET.value:
            span.status = Status(StatusCode(code), text)
        span.end(end)
