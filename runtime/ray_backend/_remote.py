"""What runs in a Ray worker: one tool call under the caller's trace context.

A call reports where it ran (node, worker, process), the spans it made (its own and any
the tool made: they carry the run's trace id and are filed by the driver with the run's
other spans), the untrusted sources it read, and its error, picklable. Its output is the
task's second return value, so a large one can stay in the object store.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import BaseModel

from ..attributes import RAY_NODE, RAY_PID, RAY_WORKER
from ..errors import ToolError
from ..spans import FastSpan, FastTracerProvider
from ..tracing import SCOPE, fail_span

__all__ = ["ByReference", "Report", "SpanRecord", "ToolHost", "run_call"]

# name, span id, parent span id, kind, attributes, events, status code, description,
# start and end (ns)
SpanRecord = tuple[str, int, int, int, dict[str, Any], list[tuple[str, int, dict[str, Any]]],
                   int, str | None, int, int]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ByReference:
    """An argument that is a large output of an earlier call, left in the object store:
    the worker fetches it from the node that holds it."""

    ref: Any


@dataclass(slots=True)
class Report:
    """How one call went, without its output."""

    node_id: str
    worker_id: str
    pid: int
    started: int
    ended: int
    error: BaseException | None = None
    untrusted: list[str] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    by_reference: list[str] = field(default_factory=list)
    output_bytes: int = 0
    # The output itself when it is small (one object to fetch), else the task's second
    # return value holds it (it stays in the object store).
    output: Any = None
    inline: bool = False


class _Collector(FastTracerProvider):
    """Keeps the spans of this worker's calls, by call, for the report."""

    def __init__(self) -> None:
        super().__init__([], shutdown_on_exit=False)
        self.calls: dict[str, list[FastSpan]] = {}
        self.guard = threading.Lock()

    def _finished(self, span: FastSpan) -> None:
        with self.guard:
            kept = self.calls.get(span.root or "")
            if kept is not None:
                kept.append(span)


_collector: _Collector | None = None
_lock = threading.Lock()


@functools.cache
def _where() -> tuple[str, str]:
    """This worker's node and worker ids (they never change)."""
    import ray

    runtime = ray.get_runtime_context()
    return runtime.get_node_id(), runtime.get_worker_id()


def _tracer() -> tuple[_Collector, Any]:
    global _collector
    if _collector is None:
        _collector = _Collector()
    return _collector, _collector.get_tracer(SCOPE)


def run_call(call: tuple[Any, ...]) -> tuple[Report, Any]:
    """Make one call, ``(fn, is_async, tool_name, args, context_param, context, parent,
    adapters, inline_bytes)``: ``fn(**args)`` here; arguments passed :class:`ByReference`
    are fetched and validated with their field's ``adapters`` (as the driver validated the
    others). An output of at most ``inline_bytes`` (pickled) goes back in the report."""
    import ray

    fn, is_async, tool_name, args, context_param, context, parent, adapters, inline_bytes = call
    collector, tracer = _tracer()
    by_reference = []
    for name, value in list(args.items()):
        if isinstance(value, ByReference):
            fetched = ray.get(value.ref)
            adapter = adapters.get(name)
            args[name] = fetched if adapter is None else adapter.validate_python(fetched)
            by_reference.append(name)
    if context_param is not None:
        args[context_param] = context
    token = f"{os.getpid()}:{threading.get_ident()}:{time.monotonic_ns()}"
    parent_context = None
    if parent is not None:
        remote = SpanContext(parent[0], parent[1], True, TraceFlags(parent[2]))
        parent_context = trace.set_span_in_context(NonRecordingSpan(remote))
    node_id, worker_id = _where()
    with collector.guard:
        collector.calls[token] = []
    span = tracer.start_span(
        f"ray.task {tool_name}",
        context=parent_context,
        attributes={
            RAY_NODE: node_id,
            RAY_WORKER: worker_id,
            RAY_PID: os.getpid(),
            "gen_ai.tool.name": tool_name,
        },
    )
    span.root = token
    report = Report(node_id, worker_id, os.getpid(), span.start_time, 0)
    report.by_reference = by_reference
    output = None
    try:
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            output = _portal().call(_call, fn, is_async, args)
        if isinstance(output, BaseModel):
            output = output.model_dump(mode="json")
        report.output_bytes = _size(output)
        if report.output_bytes <= inline_bytes:
            report.output, report.inline, output = output, True, None
    except Exception as exc:  # noqa: BLE001 - the driver raises it as the call's error
        output = None
        fail_span(span, exc)
        report.error = _portable(exc)
    finally:
        span.end()
        with collector.guard:
            spans = collector.calls.pop(token, [])
    report.ended = span.end_time or time.time_ns()
    report.spans = [_record(s) for s in spans]
    if context is not None:
        report.untrusted = list(context.untrusted_output)
    return report, output


_portal_stack: contextlib.ExitStack | None = None
_the_portal: BlockingPortal | None = None


def _portal() -> BlockingPortal:
    """This worker's event loop, in a thread of its own, started at its first call: calls
    run there as they would in process (and a new loop per call would cost a millisecond)."""
    global _portal_stack, _the_portal
    if _the_portal is None:
        with _lock:
            if _the_portal is None:
                _portal_stack = contextlib.ExitStack()
                _the_portal = _portal_stack.enter_context(start_blocking_portal())
    return _the_portal


async def _call(fn: Any, is_async: bool, args: dict[str, Any]) -> Any:
    """As in process: async tools on an event loop, sync ones in a worker thread (where
    ``anyio.from_thread.check_cancelled()`` works as it does in process)."""
    if is_async:
        return await fn(**args)
    return await anyio.to_thread.run_sync(partial(fn, **args))


def _size(value: Any) -> int:
    """About how many bytes ``value`` takes pickled: exact but for scalars and text,
    which are not pickled to be measured."""
    if value is None or isinstance(value, bool | int | float):
        return 16
    if isinstance(value, str | bytes):
        return len(value) * (1 if isinstance(value, bytes) or value.isascii() else 4)
    return len(pickle.dumps(value, protocol=5))


def _record(span: FastSpan) -> SpanRecord:
    return (
        span.name,
        span.get_span_context().span_id,
        span.parent.span_id if span.parent is not None else 0,
        span.kind.value,
        dict(span.attributes),
        [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events or ()],
        span.status.status_code.value,
        span.status.description,
        span.start_time,
        span.end_time or span.start_time,
    )


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling as it is, else a :class:`ToolError` saying what it
    was (keeping ``retryable`` when it had one)."""
    try:
        back = pickle.loads(pickle.dumps(exc))
        if type(back) is type(exc) and str(back) == str(exc):
            return exc
    except Exception:  # noqa: BLE001 - not picklable: described below
        pass
    return ToolError(
        f"{type(exc).__name__}: {exc}", retryable=bool(getattr(exc, "retryable", False))
    )


class ToolHost:
    """A Ray actor for a tool that keeps state (a warm pool, a connection, a loaded model):
    its calls run here, in this one process, a few at once (threads)."""

    def call(self, call: tuple[Any, ...]) -> tuple[Report, Any]:
        return run_call(call)

    def ready(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())
