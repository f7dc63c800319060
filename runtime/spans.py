"""A lean OpenTelemetry tracer for dagentic's own spans, exporting through SDK exporters.

The OpenTelemetry SDK's ``Span`` costs 15-20 µs to start and end on the reference machine
(sampler, attribute cleaning, processor fan-out), so the SDK alone would add ~40 µs to a
no-op step. :class:`FastTracerProvider` implements the OpenTelemetry *API* (spans join the
current context, other tracers nest under them, ``trace.use_span`` works) with a span that
is little more than a record: ending it puts it on a queue, and a background thread hands
finished spans in batches to the exporters — as SDK ``ReadableSpan`` objects to any SDK
``SpanExporter`` (OTLP, console), as they are to dagentic's own (JSONL files, metrics),
which have an ``export_routed`` method. Attribute values are checked when they are set
through the API, so exporters only ever see valid ones.
"""

from __future__ import annotations

import atexit
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from .journal import get_logger
from .redact import redact_spans

__all__ = ["FastSpan", "FastTracer", "FastTracerProvider"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NO_STATE = TraceState()
_UNSET = Status(StatusCode.UNSET)
_VALUE_TYPES = (str, bool, int, float)
_log = get_logger("dagentic.tracing")


class FastTracerProvider(trace.TracerProvider):
    """Spans for the given SDK exporters, batched by one background thread.

    Args:
        exporters: where finished spans go.
        resource: the resource every span carries (service name and version).
        schedule_delay: seconds a finished span may wait for its batch.
        max_batch: spans per export at most.
        max_queue: finished spans waiting at most; more are dropped (and counted). A
            queue a tenth full wakes the thread before its time.
        shutdown_on_exit: export what is left when the interpreter exits.
    """

    def __init__(
        self,
        exporters: Sequence[SpanExporter],
        resource: Resource | None = None,
        *,
        schedule_delay: float = 1.0,
        max_batch: int = 512,
        max_queue: int = 20_000,
        shutdown_on_exit: bool = True,
    ) -> None:
        self.exporters = list(exporters)
        self.resource = resource or Resource.get_empty()
        self.schedule_delay = schedule_delay
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.dropped = 0
        self._in_flight = 0  # spans of the batch being exported
        # Waking the thread often makes it fight the event loop for the GIL mid-run.
        self._wake_at = max(max_queue // 10, 1)
        self._queue: deque[FastSpan] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._scopes: dict[tuple[str, str | None], InstrumentationScope] = {}
        if shutdown_on_exit:
            atexit.register(_shutdown_at_exit, weakref.ref(self))
        if hasattr(os, "register_at_fork"):  # a forked child starts its own thread
            os.register_at_fork(after_in_child=partial(_after_fork, weakref.ref(self)))

    def add_exporter(self, exporter: SpanExporter) -> None:
        """Also hand finished spans to ``exporter`` (on the exporter thread)."""
        self.exporters.append(exporter)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> FastTracer:
        key = (instrumenting_module_name, instrumenting_library_version)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = InstrumentationScope(
                instrumenting_module_name, instrumenting_library_version, schema_url
            )
        return FastTracer(self, scope)

    # -- the queue and its thread --------------------------------------------------------

    def _finished(self, span: FastSpan) -> None:
        if self._stopped:
            self.dropped += 1
            return
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append(span)
        if self._thread is None:
            self._start()
        elif len(queue) == self._wake_at:
            self._wake.set()

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and its spans are the parent's."""
        self._queue.clear()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._lock = threading.Lock()
        self._busy = False
        self._in_flight = 0
        self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="dagentic-spans", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            stopping = self._stopped  # read first: what ends before the stop is exported
            with self._idle:
                self._busy = True
            try:
                self._export_all()
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
            if stopping:
                return

    def _export_all(self) -> None:
        queue = self._queue
        while queue:
            batch: list[FastSpan] = []
            while queue and len(batch) < self.max_batch:
                batch.append(queue.popleft())
            self._in_flight = len(batch)
            redact_spans(batch)  # no secret dagentic holds reaches any exporter
            readable: list[ReadableSpan] | None = None
            for exporter in self.exporters:
                try:
                    routed = getattr(exporter, "export_routed", None)
                    if routed is not None:  # dagentic's own: reads finished spans as they are
                        routed(batch, [span.root for span in batch])
                        continue
                    if readable is None:
                        readable = [span._readable(self.resource) for span in batch]
                    exporter.export(readable)
                except Exception as exc:  # noqa: BLE001 - a broken exporter must not kill tracing
                    _log.warning(
                        "span export failed", exporter=type(exporter).__name__, error=str(exc)
                    )
            self._in_flight = 0

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now; True when done within the timeout."""
        if self._thread is None:
            return not self._queue
        deadline = time.monotonic() + timeout_millis / 1000
        with self._idle:
            while self._queue or self._busy:
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
        for exporter in self.exporters:
            exporter.force_flush(max(int((deadline - time.monotonic()) * 1000), 1))
        return True

    def shutdown(self, timeout_millis: int = 10_000) -> None:
        """Export what is left (within the timeout: a collector that does not answer must
        not hold the process), stop the thread and shut the exporters down. Spans that
        could not be exported, or were dropped, are counted in a warning."""
        if self._stopped:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self.force_flush(timeout_millis)
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.1))
        stuck = self._thread is not None and self._thread.is_alive()
        lost = len(self._queue) + self.dropped + (self._in_flight if stuck else 0)
        for exporter in self.exporters:
            exporter.shutdown()
        if lost:
            _log.warning(
                "spans not exported",
                count=lost,
                reason="the exporter was too slow or its queue was full",
            )


def _after_fork(ref: weakref.ref[FastTracerProvider]) -> None:
    provider = ref()
    if provider is not None:
        provider._after_fork()


def _shutdown_at_exit(ref: weakref.ref[FastTracerProvider]) -> None:
    provider = ref()
    if provider is not None:
        provider.shutdown()


class FastTracer(trace.Tracer):
    def __init__(self, provider: FastTracerProvider, scope: InstrumentationScope) -> None:
        self.provider = provider
        self.scope = scope

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> FastSpan:
        parent_span = trace.get_current_span(context)
        parent: SpanContext | None = parent_span.get_span_context()
        if parent is not None and parent.is_valid:
            # dagentic records its spans always (every run gets its trace), but passes the
            # parent's sampling decision on, so the application's sampling still holds
            # for its own spans under ours and for what it propagates.
            trace_id, state, flags = parent.trace_id, parent.trace_state, parent.trace_flags
        else:
            parent, trace_id, state, flags = None, random.getrandbits(128) or 1, _NO_STATE, _SAMPLED
        span_context = SpanContext(trace_id, random.getrandbits(64) or 1, False, flags, state)
        attrs = dict(attributes) if attributes else {}
        for value in attrs.values():
            if type(value) not in _VALUE_TYPES:
                attrs = _clean(attrs)
                break
        span = FastSpan(
            self,
            name,
            span_context,
            parent,
            kind,
            attrs,
            links,
            start_time or time.time_ns(),
            record_exception,
            set_status_on_exception,
        )
        if type(parent_span) is FastSpan:
            span.root = parent_span.root
        return span

    @contextmanager  # the SDK's own decorator is private; the context manager is the same
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[FastSpan]:
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ):
            yield span


class FastSpan(trace.Span):
    """A recording span: a record until it ends, then a ``ReadableSpan`` on the exporter
    thread."""

    __slots__ = (
        "_context",
        "_ended",
        "_record_exception",
        "_set_status_on_exception",
        "attributes",
        "end_time",
        "events",
        "kind",
        "links",
        "name",
        "parent",
        "root",
        "start_time",
        "status",
        "tracer",
    )

    def __init__(
        self,
        tracer: FastTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[trace.Link] | None,
        start_time: int,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self.tracer = tracer
        self.name = name
        self._context = context
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self.links = tuple(links) if links else ()
        self.events: list[Event] | None = None
        self.status = _UNSET
        self.start_time = start_time
        self.end_time: int | None = None
        self._ended = False
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self.root: str | None = None  # the run whose file it goes to (inherited)

    def get_span_context(self) -> SpanContext:
        return self._context

    # Read like an SDK ReadableSpan by dagentic's own exporters, once ended.
    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self.tracer.scope

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        if self._ended:
            return
        if type(value) not in _VALUE_TYPES:
            value = _clean_value(key, value)
            if value is None:
                return
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self._ended:
            return
        if self.events is None:
            self.events = []
        self.events.append(
            Event(
                name, _clean(dict(attributes)) if attributes else None, timestamp or time.time_ns()
            )
        )

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if not self._ended and context.is_valid:
            self.links += (trace.Link(context, _clean(dict(attributes or {}))),)

    def update_name(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if (
            self._ended
            or self.status.status_code is StatusCode.OK
            or status.status_code is StatusCode.UNSET
        ):
            return  # OK is final and UNSET changes nothing, as the specification asks
        self.status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        import traceback

        stack = "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        )
        self.add_event(
            "exception",
            {
                "exception.type": type(exception).__qualname__,
                "exception.message": str(exception),
                "exception.stacktrace": stack,
                "exception.escaped": str(escaped),
                **(attributes or {}),
            },
            timestamp,
        )

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self.end_time = end_time or time.time_ns()
        self.tracer.provider._finished(self)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)

    def _readable(self, resource: Resource) -> ReadableSpan:
        return ReadableSpan(
            name=self.name,
            context=self._context,
            parent=self.parent,
            resource=resource,
            attributes=self.attributes,
            events=self.events or (),
            links=self.links,
            kind=self.kind,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time,
            instrumentation_scope=self.tracer.scope,
        )


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for key, value in attributes.items():
        if type(value) not in _VALUE_TYPES:
            value = _clean_value(key, value)
            if value is None:
                continue
        cleaned[key] = value
    return cleaned


def _clean_value(key: str, value: Any) -> Any:
    """A valid attribute value (a primitive, or a sequence of one primitive type) from
    ``value``, or None (with a warning) when it cannot be one."""
    if isinstance(value, _VALUE_TYPES):
        return value
    if type(value) is tuple and all(type(v) is str for v in value):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = tuple(value)
        kinds = {type(v) for v in items if v is not None}
        if len(kinds) <= 1 and all(k in _VALUE_TYPES for k in kinds):
            return items
    if value is not None:
        _log.warning(
            "span attribute dropped: not a primitive or a sequence of one primitive type",
            key=key,
            type=type(value).__name__,
        )
    return None
