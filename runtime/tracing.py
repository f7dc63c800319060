"""OpenTelemetry traces and metrics of runs, through dagentic's own providers.

Every span dagentic starts and every instrument it records go through a :class:`Tracing`:
built from settings (``tracing.exporter``: ``jsonl`` — a file per run under ``runs_dir``,
the default —, ``console``, ``otlp`` over HTTP or gRPC, or ``none``), or around providers
the application gives. dagentic never sets or changes the global OpenTelemetry providers:
an application's own tracing stays as it was, and dagentic's spans still join the
application's trace when one is active (they take the current span as parent).

The span tree of an agent run::

    invoke_agent dagentic                  gen_ai.operation.name=invoke_agent
      plan                                 one per plan version
        chat MODEL                         each model call: purpose, tokens, cost
      run PLAN                             one per executor run
        execute_tool TOOL                  one per step; retries are events on it
          execute_tool TOOL                one per foreach item
          chat MODEL                       model calls a tool or a check makes
      chat MODEL                           answer, verify

A failed span has status ERROR, the exception recorded, and ``dagentic.failure_mode``.
Prompts, tool arguments and outputs are recorded only with ``tracing.record_content``.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from .attributes import FAILURE_MODE, ROOT
from .errors import DagenticError, FailureMode, failure_mode_of
from .spans import FastSpan, FastTracerProvider

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter

__all__ = [
    "CONTENT_LIMIT",
    "SpanMetrics",
    "Tracing",
    "current_step_span",
    "fail_span",
    "maybe_span",
    "tracing_from_settings",
]

CONTENT_LIMIT = 16_000  # characters of one recorded prompt, argument set or output
SCOPE = "dagentic"

# Set by the outermost dagentic span of a call tree (an agent run, or a plan run outside
# one): spans below it go to that run's JSONL file.
_root_run: ContextVar[str | None] = ContextVar("dagentic_root_run", default=None)


def _version() -> str:
    try:
        return version("dagentic")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0"


class Tracing:
    """dagentic's tracer, and the metrics derived from its spans.

    Args:
        tracer_provider: where spans go (e.g. the application's own, or one with an
            in-memory exporter in tests).
        meter_provider: where metrics go (default: no metrics).
        record_content: also record prompts, replies, tool arguments and outputs.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider | None = None,
        *,
        record_content: bool = False,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer = tracer_provider.get_tracer(SCOPE, _version())
        self.record_content = record_content
        self._shut = False
        self._stuck = False  # a flush timed out: the exporter does not keep up
        self.span_metrics: SpanMetrics | None = None
        self._inline_metrics = None
        if meter_provider is not None:
            exporters = getattr(tracer_provider, "exporters", None)
            if isinstance(tracer_provider, FastTracerProvider) and exporters is not None:
                # ours: metrics are derived on its exporter thread, once per meter provider
                self.span_metrics = next(
                    (
                        e
                        for e in exporters
                        if isinstance(e, SpanMetrics) and e.meter_provider is meter_provider
                    ),
                    None,
                )
                if self.span_metrics is None:
                    self.span_metrics = SpanMetrics(meter_provider)
                    tracer_provider.add_exporter(self.span_metrics)
            else:
                self.span_metrics = self._inline_metrics = SpanMetrics(meter_provider)

    # -- roots ---------------------------------------------------------------------------

    def enter_root(self, run_id: str, span: Span) -> Any:
        """Make ``span`` (of run ``run_id``) the root its descendants are filed under,
        unless a dagentic root is already active. Returns a token for :meth:`exit_root`."""
        if _root_run.get() is not None:
            return None
        span.set_attribute(ROOT, True)
        if isinstance(span, FastSpan):  # its descendants inherit it: their file
            span.root = run_id
        return _root_run.set(run_id)

    def exit_root(self, token: Any) -> None:
        if token is not None:
            _root_run.reset(token)

    # -- spans outside the executor's hot path -------------------------------------------

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        root_run_id: str | None = None,
    ) -> Iterator[Span]:
        """A span, current while the block runs; an exception sets status ERROR, records
        it with its failure mode, and propagates."""
        span = self.tracer.start_span(name, attributes=attributes)
        token = self.enter_root(root_run_id, span) if root_run_id else None
        try:
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                yield span
        except BaseException as exc:
            if (
                getattr(getattr(span, "status", None), "status_code", None) is not StatusCode.ERROR
            ):  # unless the block said why already
                fail_span(span, exc)
            raise
        finally:
            span.end()
            self.ended(span)
            self.exit_root(token)

    def content(self, value: Any) -> str:
        """``value`` as the JSON text of a content attribute, cut to CONTENT_LIMIT."""
        text = (
            value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        )
        return text if len(text) <= CONTENT_LIMIT else text[:CONTENT_LIMIT] + "…[cut]"

    def ended(self, span: Span) -> None:
        """Call after ending a span dagentic started: with a provider that is not dagentic's
        own, its metrics are recorded now (an ended SDK span is readable)."""
        if self._inline_metrics is not None and isinstance(span, ReadableSpan):
            self._inline_metrics.export((span,))

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is buffered now: spans first, then the metrics derived from them.
        False if that did not finish within the timeout (a collector not answering)."""
        done = True
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                done = flush(timeout_millis) is not False and done
        self._stuck = self._stuck or not done
        return done

    def shutdown(self, timeout_millis: int = 10_000) -> None:
        """Export what is left and stop: spans first, then the metrics derived from them
        (within the timeout; 1 s once a flush timed out). Only for providers this Tracing
        was built with (see :func:`tracing_from_settings`). A second call does nothing."""
        if self._shut:
            return
        self._shut = True
        timeout_millis = 1000 if self._stuck else timeout_millis
        for provider in (self.tracer_provider, self.meter_provider):
            if isinstance(provider, FastTracerProvider):
                provider.shutdown(timeout_millis)
            elif provider is not None and hasattr(provider, "shutdown"):
                provider.shutdown()


@contextmanager
def maybe_span(
    tracing: Tracing | None,
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    root_run_id: str | None = None,
) -> Iterator[Span | None]:
    """:meth:`Tracing.span` when tracing is on; else the block runs with ``None``."""
    if tracing is None:
        yield None
        return
    with tracing.span(name, attributes, root_run_id=root_run_id) as span:
        yield span


def current_step_span() -> Span | None:
    """The current span if dagentic started it (the step's span while a tool runs), else
    None — so a tool never writes onto an application's own span."""
    span = trace.get_current_span()
    scope: Any
    if isinstance(span, FastSpan):
        scope = span.tracer.scope
    else:
        scope = getattr(span, "instrumentation_scope", None)
    return span if scope is not None and scope.name == SCOPE else None


def fail_span(
    span: Span, exc: BaseException | None, *, mode: Any = None, message: str | None = None
) -> None:
    """Mark ``span`` failed: status ERROR, the failure mode, and the exception (if any)."""
    if mode is None and exc is not None:
        # Cancellation (asyncio's, trio's) and KeyboardInterrupt are not Exceptions.
        mode = failure_mode_of(exc) if isinstance(exc, Exception) else FailureMode.CANCELLED
    if message is None and exc is not None:
        message = exc.message if isinstance(exc, DagenticError) else str(exc) or repr(exc)
    if exc is not None:
        span.record_exception(exc, attributes={FAILURE_MODE: str(mode)} if mode else None)
        span.set_attribute("error.type", type(exc).__name__)
    if mode is not None:
        span.set_attribute(FAILURE_MODE, str(mode))
    span.set_status(Status(StatusCode.ERROR, message))


# -- metrics, derived from finished spans ------------------------------------------------

AGENT_MODES = frozenset(
    {
        FailureMode.PLAN_INVALID,
        FailureMode.MISSING_CAPABILITY,
        FailureMode.GOAL_NOT_MET,
        FailureMode.FALSE_SUCCESS,
        FailureMode.BUDGET_EXCEEDED,
    }
)


class SpanMetrics(SpanExporter):
    """Records dagentic's metrics from its finished spans, so the hot path records none:
    step duration by tool and status, failures by mode, runs by status, replans, and per
    model call tokens, duration and cost."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        self.meter_provider = meter_provider
        meter = meter_provider.get_meter(SCOPE, _version())
        self.step_duration = meter.create_histogram(
            "dagentic.step.duration",
            unit="s",
            description="Duration of steps, by tool and final status.",
        )
        self.failures = meter.create_counter(
            "dagentic.failures",
            unit="{failure}",
            description="Failures by mode: of steps (failed, skipped after a failure, "
            "cancelled) and of agent runs (plan_invalid, goal_not_met, ...).",
        )
        self.runs = meter.create_counter(
            "dagentic.runs", unit="{run}", description="Finished runs, by kind and status."
        )
        self.replans = meter.create_counter(
            "dagentic.replans", unit="{replan}", description="Plans an agent made after its first."
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens per model call, by model and token type.",
        )
        self.model_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of model calls."
        )
        self.cost = meter.create_counter(
            "dagentic.model.cost", unit="USD", description="Cost of model calls, by model."
        )

    def export_routed(self, spans: Any, roots: Any) -> SpanExportResult:
        """From a FastTracerProvider: dagentic's own ended spans, read as they are."""
        return self.export(spans)

    def export(self, spans: Any) -> SpanExportResult:
        for span in spans:
            attrs = span.attributes or {}
            seconds = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
            mode = attrs.get(FAILURE_MODE)
            operation = attrs.get("gen_ai.operation.name")
            if "dagentic.step.id" in attrs:
                if "dagentic.item" in attrs or "dagentic.status" not in attrs:
                    continue
                tool = attrs.get("gen_ai.tool.name", "check")
                self.step_duration.record(
                    seconds, {"gen_ai.tool.name": tool, "dagentic.status": attrs["dagentic.status"]}
                )
                if mode:
                    self.failures.add(1, {FAILURE_MODE: mode, "gen_ai.tool.name": tool})
            elif operation == "chat":
                self._model_call(attrs, seconds)
            elif operation == "invoke_agent":
                self.runs.add(
                    1,
                    {
                        "dagentic.run.kind": "agent",
                        "dagentic.status": attrs.get("dagentic.status", "failed"),
                    },
                )
                if attrs.get("dagentic.replans"):
                    self.replans.add(attrs["dagentic.replans"])
                if mode in AGENT_MODES:
                    self.failures.add(1, {FAILURE_MODE: mode})
            elif "dagentic.plan" in attrs and "dagentic.status" in attrs:
                self.runs.add(
                    1, {"dagentic.run.kind": "plan", "dagentic.status": attrs["dagentic.status"]}
                )
        return SpanExportResult.SUCCESS

    def _model_call(self, attrs: Mapping[str, Any], seconds: float) -> None:
        model = attrs.get("gen_ai.request.model", "unknown")
        base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
        self.model_duration.record(seconds, base)
        for kind in ("input", "output"):
            tokens = attrs.get(f"gen_ai.usage.{kind}_tokens")
            if tokens is not None:
                self.tokens.record(tokens, {**base, "gen_ai.token.type": kind})
        if attrs.get("dagentic.cost"):
            self.cost.add(attrs["dagentic.cost"], {"gen_ai.request.model": model})


# -- from settings ----------------------------------------------------------------------

_cache: dict[Any, Tracing | None] = {}
_cache_lock = threading.Lock()


def tracing_from_settings(settings: Any) -> Tracing | None:
    """The :class:`Tracing` the settings describe (``None`` for exporter ``none``): one per
    process and configuration, with its own providers, so nothing global is touched."""
    config = settings.tracing
    runs_dir = Path(settings.runs_dir).resolve()
    secrets = sorted((k, v.get_secret_value()) for k, v in config.otlp.headers.items())
    key = (config.model_dump_json(), str(runs_dir), tuple(secrets))  # the dump masks secrets
    with _cache_lock:
        cached = _cache.get(key)
        if key not in _cache or (cached is not None and cached._shut):
            _cache[key] = _build(config, runs_dir)
        return _cache[key]


def _build(config: Any, runs_dir: Path) -> Tracing | None:
    if config.exporter == "none":
        return None
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": config.service_name, "service.version": _version()})
    if config.exporter == "jsonl":
        from .runfiles import JsonlMetricExporter, JsonlSpanExporter

        spans: SpanExporter
        metrics: MetricExporter
        spans, metrics = (
            JsonlSpanExporter(runs_dir),
            JsonlMetricExporter(runs_dir / "metrics.jsonl"),
        )
    elif config.exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        spans, metrics = ConsoleSpanExporter(out=sys.stderr), ConsoleMetricExporter(out=sys.stderr)
    else:
        spans, metrics = _otlp_exporters(config.otlp)
    tracer_provider = FastTracerProvider(
        [spans], resource, schedule_delay=config.export_delay, shutdown_on_exit=False
    )
    meter_provider = None
    if config.metrics:
        reader = PeriodicExportingMetricReader(
            metrics,
            export_interval_millis=config.metrics_interval * 1000,
            export_timeout_millis=config.otlp.timeout * 1000,
        )
        meter_provider = SdkMeterProvider(
            metric_readers=[reader], resource=resource, shutdown_on_exit=False
        )
    tracing = Tracing(tracer_provider, meter_provider, record_content=config.record_content)
    # In that order: metrics come from the last spans. A collector that does not answer
    # holds the exit for about two export timeouts at most.
    atexit.register(tracing.shutdown, int(config.otlp.timeout * 2000))
    return tracing


def _otlp_exporters(otlp: Any) -> tuple[Any, Any]:
    # gRPC metadata keys must be lowercase (HTTP header names are case-insensitive anyway).
    headers = {k.lower(): v.get_secret_value() for k, v in otlp.headers.items()} or None
    try:
        if otlp.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            insecure = otlp.endpoint.startswith("http://") if otlp.endpoint else None
            return (
                OTLPSpanExporter(
                    otlp.endpoint, insecure=insecure, headers=headers, timeout=otlp.timeout
                ),
                OTLPMetricExporter(
                    otlp.endpoint, insecure=insecure, headers=headers, timeout=otlp.timeout
                ),
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )
    except ImportError as exc:
        raise DagenticError(
            f"tracing.exporter is 'otlp' ({otlp.protocol}) but its exporter is not installed "
            f"({exc.name}); install it with: pip install 'dagentic[otlp]'"
        ) from None
    base = otlp.endpoint.rstrip("/") if otlp.endpoint else None
    return (
        HttpSpanExporter(
            f"{base}/v1/traces" if base else None, headers=headers, timeout=otlp.timeout
        ),
        HttpMetricExporter(
            f"{base}/v1/metrics" if base else None, headers=headers, timeout=otlp.timeout
        ),
    )
