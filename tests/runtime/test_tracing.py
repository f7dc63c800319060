"""Behaviour of runtime.tracing and runtime.spans: the span tree of plan and agent runs, the
failure mode on every failed span, model-call spans, content recording, nesting of other
tracers' spans, foreign providers, the application's global provider left alone, JSONL
routing of spans to run files, metrics derived from spans, and the FastTracerProvider's
OpenTelemetry API.

Spans go to an InMemorySpanExporter through dagentic's own FastTracerProvider (or an SDK
TracerProvider where said); metrics to an InMemoryMetricReader. Async tests run on asyncio
and trio.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import (
    Executor,
    MemoryJournal,
    ResourceLimitError,
    RunStatus,
    ScriptedModel,
    Settings,
    StepStatus,
    Tool,
    ToolError,
    ToolNotFoundError,
    ToolRegistry,
    current_step_span,
    tool,
)
from dagentic.agent import Agent, Budgets
from dagentic.runfiles import JsonlSpanExporter, find_run, read_spans, run_files
from dagentic.spans import FastTracerProvider
from dagentic.tracing import Tracing, tracing_from_settings
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

ROOT_DIR = Path(__file__).resolve().parents[2]
CONTENT_KEYS = (
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "dagentic.goal",
)
GOAL = "What is the total?"
PASS = {"passed": True, "reason": "the answer achieves the goal"}


# --------------------------------------------------------------------------- helpers


class Traced:
    """A Tracing over dagentic's FastTracerProvider, an in-memory span exporter and an
    in-memory metric reader."""

    def __init__(self, *, record_content: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.provider = FastTracerProvider([self.exporter], shutdown_on_exit=False)
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.tracing = Tracing(self.provider, self.meter_provider, record_content=record_content)

    def spans(self) -> list[ReadableSpan]:
        self.tracing.flush()
        return list(self.exporter.get_finished_spans())

    def close(self) -> None:
        self.provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    t.close()


@pytest.fixture
def content_traced() -> Iterator[Traced]:
    t = Traced(record_content=True)
    yield t
    t.close()


def one(spans: list[ReadableSpan], name: str | None = None, **attrs: Any) -> ReadableSpan:
    """The one span with ``name`` (when given) and these attributes (dots as __)."""
    found = matching(spans, name, **attrs)
    assert len(found) == 1, (name, attrs, [(s.name, dict(s.attributes or {})) for s in spans])
    return found[0]


def matching(
    spans: list[ReadableSpan], name: str | None = None, **attrs: Any
) -> list[ReadableSpan]:
    wanted = {k.replace("__", "."): v for k, v in attrs.items()}
    return [
        s
        for s in spans
        if (name is None or s.name == name)
        and all((s.attributes or {}).get(k) == v for k, v in wanted.items())
    ]


def step_span(spans: list[ReadableSpan], step_id: str) -> ReadableSpan:
    return one(
        [s for s in spans if "dagentic.item" not in (s.attributes or {})],
        dagentic__step__id=step_id,
    )


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    (parent,) = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return (
        child.parent is not None
        and child.parent.span_id == parent.context.span_id
        and child.context.trace_id == parent.context.trace_id
    )


def assert_failed(span: ReadableSpan, mode: str, message: str) -> None:
    assert span.status.status_code is StatusCode.ERROR, (span.name, span.status)
    assert (span.attributes or {}).get("dagentic.failure_mode") == mode, dict(span.attributes)
    assert span.status.description == message


def exceptions(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "exception"]


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def by_attributes(
    reader: InMemoryMetricReader, name: str, value: str = "value"
) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(p.attributes.items())): getattr(p, value) for p in points(reader, name)}


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def attempted(journal: MemoryJournal, *step_ids: str) -> Callable[[], bool]:
    return lambda: all(
        any(e.kind == "attempt" and e.step_id == sid for e in journal.events) for sid in step_ids
    )


# The SDK's own tracer, as a library a tool uses would have it (never set globally).
SDK_EXPORTER = InMemorySpanExporter()
SDK_PROVIDER = SdkTracerProvider(shutdown_on_exit=False)
SDK_PROVIDER.add_span_processor(SimpleSpanProcessor(SDK_EXPORTER))
SDK_TRACER = SDK_PROVIDER.get_tracer("some.library")


@tool(name="probe.inner_async", side_effects="none")
async def inner_async(label: str) -> dict[str, int]:
    """Start a span with another tracer, on the event loop.

    Args:
        label: Names the span.
    """
    with SDK_TRACER.start_as_current_span(f"inner {label}") as span:
        await anyio.sleep(0)
        ctx = span.get_span_context()
        return {"trace_id": ctx.trace_id % 10**9, "span_id": ctx.span_id % 10**9}


@tool(name="probe.inner_sync", side_effects="none")
def inner_sync(label: str) -> dict[str, int]:
    """Start a span with another tracer, in a worker thread.

    Args:
        label: Names the span.
    """
    with SDK_TRACER.start_as_current_span(f"inner {label}") as span:
        ctx = span.get_span_context()
        return {"trace_id": ctx.trace_id % 10**9, "span_id": ctx.span_id % 10**9}


@tool(name="probe.hog", side_effects="none")
async def hog(megabytes: int = 1) -> None:
    """Exceed a resource limit.

    Args:
        megabytes: The limit.
    """
    raise ResourceLimitError(f"memory limit of {megabytes} MB exceeded", limit=megabytes)


@tool(name="probe.lost", side_effects="none")
async def lost(name: str = "x.y") -> None:
    """Ask for a tool that does not exist.

    Args:
        name: The tool asked for.
    """
    raise ToolNotFoundError(f"no tool named '{name}'")


# A file name with bytes that are not UTF-8, as os.fsdecode gives it: lone surrogates.
UNREADABLE = os.fsdecode(b"data-\xe9t\xe9.csv")


@tool(name="probe.unreadable", side_effects="none")
async def unreadable() -> None:
    """Fail on a file whose name is not UTF-8."""
    raise ToolError(f"cannot read {UNREADABLE}")


@tool(name="probe.note", side_effects="none")
async def note(text: str) -> bool:
    """Write a note onto the step's span (when the run is traced), on the event loop.

    Args:
        text: The note.
    """
    return write_note(text)


@tool(name="probe.note_sync", side_effects="none")
def note_sync(text: str) -> bool:
    """Write a note onto the step's span (when the run is traced), in a worker thread.

    Args:
        text: The note.
    """
    return write_note(text)


def write_note(text: str) -> bool:
    span = current_step_span()
    if span is not None:
        span.set_attribute("probe.note", text)
    return span is not None


PROBES = [inner_async, inner_sync, hog, lost, unreadable, note, note_sync]


@pytest.fixture
def registry(tools: ToolRegistry) -> ToolRegistry:
    """The test tools and probes, without planning-context tools (no extra agent runs)."""
    return ToolRegistry([*(t for t in tools if not t.planning_context), *PROBES])


def flaky_tool(failures: int) -> Tool:
    calls: list[int] = []

    @tool(name="probe.flaky", side_effects="none")
    async def flaky(value: int = 0) -> int:
        """Fail with a retryable ToolError the first `failures` times.

        Args:
            value: What to return.
        """
        calls.append(value)
        if len(calls) <= failures:
            raise ToolError(f"flaky failure {len(calls)}", retryable=True)
        return value

    return flaky


def answer(
    text: str = "Done.", cited: list[str] | tuple[str, ...] = (), complete: bool = False
) -> dict[str, Any]:
    return {"answer": text, "cited_steps": list(cited), "complete": complete}


def echo(sid: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "test.echo", "args": {"value": value}, **extra}


def make_agent(
    replies: list[Any],
    registry: ToolRegistry,
    settings: Settings,
    tracing: Tracing | None,
    **budgets: Any,
) -> Agent:
    return Agent(
        ScriptedModel(replies),
        registry,
        settings=settings,
        budgets=Budgets(**budgets),
        tracing=tracing,
    )


def executor(
    registry: ToolRegistry, settings: Settings, traced: Traced, **options: Any
) -> Executor:
    return Executor(registry, settings=settings, tracing=traced.tracing, **options)


# --------------------------------------------------------------------------- span tree


PARALLEL = {
    "name": "parallel",
    "steps": [
        {"id": "a", "tool": "test.sleep", "args": {"seconds": 0.05}},
        {"id": "b", "tool": "test.sleep", "args": {"seconds": 0.3}},
        {"id": "c", "tool": "test.sleep", "args": {"seconds": 0.15}},
        echo("join", "${{ [steps.a.output, steps.b.output, steps.c.output] }}"),
    ],
}


async def test_a_parallel_plan_is_a_run_span_over_overlapping_sibling_step_spans(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result = await executor(registry, settings, traced).run(PARALLEL)
    assert result.status is RunStatus.SUCCEEDED

    spans = traced.spans()
    run = one(spans, "run parallel")
    assert len(spans) == 5
    assert run.parent is None
    attrs = dict(run.attributes or {})
    assert attrs["dagentic.run_id"] == result.run_id
    assert attrs["dagentic.status"] == "succeeded"
    assert attrs["dagentic.plan"] == "parallel"
    assert attrs["dagentic.plan.steps"] == 4
    assert run.status.status_code is StatusCode.UNSET

    steps = {sid: step_span(spans, sid) for sid in ("a", "b", "c", "join")}
    for sid, span in steps.items():
        assert is_child(span, run), sid
        assert span.kind is trace.SpanKind.INTERNAL
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
        attrs = dict(span.attributes or {})
        tool_name = "test.echo" if sid == "join" else "test.sleep"
        assert span.name == f"execute_tool {tool_name}"
        assert attrs["gen_ai.operation.name"] == "execute_tool"
        assert attrs["gen_ai.tool.name"] == tool_name
        assert attrs["dagentic.step.id"] == sid
        assert attrs["dagentic.status"] == "succeeded"
        assert attrs["dagentic.attempts"] == 1
        assert "dagentic.failure_mode" not in attrs
        assert span.status.status_code is StatusCode.UNSET
    # The three independent steps ran at once: every pair of intervals overlaps.
    for x, y in [("a", "b"), ("a", "c"), ("b", "c")]:
        assert steps[x].start_time < steps[y].end_time and steps[y].start_time < steps[x].end_time
    # The join started after all of them and names the one it waited for last.
    last = max("abc", key=lambda sid: steps[sid].end_time)
    assert last == "b"
    assert steps["join"].attributes["dagentic.step.waited_for"] == last
    assert all(steps["join"].start_time >= steps[s].end_time for s in "abc")
    for sid in "abc":
        assert "dagentic.step.waited_for" not in steps[sid].attributes


async def test_a_run_inside_an_application_span_joins_its_trace(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    app = traced.provider.get_tracer("app")
    with app.start_as_current_span("request") as request:
        await executor(registry, settings, traced).run({"name": "p", "steps": [echo("a", 1)]})
    spans = traced.spans()
    run = one(spans, "run p")
    assert is_child(run, one(spans, "request"))
    assert request.get_span_context().trace_id == run.context.trace_id
    assert is_child(step_span(spans, "a"), run)


# --------------------------------------------------------------------------- failure modes


async def run_one(
    registry: ToolRegistry,
    settings: Settings,
    traced: Traced,
    steps: list[dict[str, Any]],
    **options: Any,
) -> tuple[Any, list[ReadableSpan]]:
    timeout = options.pop("timeout", None)
    result = await executor(registry, settings, traced, **options).run(
        {"name": "p", "steps": steps}, timeout=timeout
    )
    return result, traced.spans()


async def test_invalid_args_is_on_the_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            echo("a", "soon"),
            {"id": "nap", "tool": "test.sleep", "args": {"seconds": "${{ steps.a.output }}"}},
        ],
    )
    error = result.steps["nap"].error
    assert error is not None
    assert error.message.startswith(
        "step 'nap': tool 'test.sleep' rejected its arguments: seconds: "
    )
    assert error.message.endswith("(got 'soon')")
    span = step_span(spans, "nap")
    assert_failed(span, "invalid_args", error.message)
    assert span.attributes["dagentic.status"] == "failed"
    (event,) = exceptions(span)
    assert event["exception.type"] == "InvalidArgsError"
    assert event["dagentic.failure_mode"] == "invalid_args"
    run = one(spans, "run p")
    assert_failed(run, "invalid_args", error.message)
    assert run.attributes["dagentic.status"] == "failed"


async def test_tool_error_is_on_the_step_span_with_the_exception(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [{"id": "x", "tool": "test.fail", "args": {"message": "the disk is on fire"}}],
    )
    span = step_span(spans, "x")
    assert_failed(span, "tool_error", "the disk is on fire")
    (event,) = exceptions(span)
    assert event["exception.type"] == "ToolError"
    assert event["exception.message"] == "the disk is on fire"
    assert "ToolError: the disk is on fire" in event["exception.stacktrace"]
    assert event["dagentic.failure_mode"] == "tool_error"
    assert_failed(one(spans, "run p"), "tool_error", "step 'x' failed: the disk is on fire")
    assert result.error is not None
    assert result.error.message == "step 'x' failed: the disk is on fire"


ONE_STEP_FAILURES = [  # step, failure mode, message, exception type
    (
        {"id": "x", "tool": "test.crash", "args": {"message": "bug"}},
        "tool_error",
        "bug",
        "RuntimeError",
    ),  # a plain exception of a tool
    (
        {"id": "slow", "tool": "test.sleep", "args": {"seconds": 5}, "timeout": 0.05},
        "timeout",
        "step 'slow': tool 'test.sleep' did not finish within 0.05s",
        "StepTimeoutError",
    ),
    (
        {"id": "big", "tool": "probe.hog", "args": {"megabytes": 64}},
        "resource_limit",
        "memory limit of 64 MB exceeded",
        "ResourceLimitError",
    ),
    (
        {"id": "where", "tool": "probe.lost", "args": {"name": "mail.send"}},
        "invalid_tool",
        "no tool named 'mail.send'",
        "ToolNotFoundError",
    ),
]


@pytest.mark.parametrize(
    ("step", "mode", "message", "exception"),
    ONE_STEP_FAILURES,
    ids=[f[1] for f in ONE_STEP_FAILURES],
)
async def test_a_failure_mode_is_on_the_step_span(
    registry: ToolRegistry,
    settings: Settings,
    traced: Traced,
    step: dict[str, Any],
    mode: str,
    message: str,
    exception: str,
) -> None:
    _, spans = await run_one(registry, settings, traced, [step])
    span = step_span(spans, step["id"])
    assert_failed(span, mode, message)
    assert [e["exception.type"] for e in exceptions(span)] == [exception]
    assert (span.end_time - span.start_time) / 1e9 < 2


async def test_the_run_deadline_is_timeout_on_the_run_and_its_running_steps(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {"id": "slow", "tool": "test.sleep", "args": {"seconds": 5}},
            {"id": "done", "tool": "test.sleep", "args": {"seconds": 0}},
        ],
        timeout=0.2,
    )
    assert result.status is RunStatus.FAILED
    run = one(spans, "run p")
    assert_failed(run, "timeout", "the run's deadline of 0.2s passed")
    assert run.attributes["dagentic.status"] == "failed"
    slow = step_span(spans, "slow")
    assert slow.attributes["dagentic.status"] == "cancelled"
    assert_failed(slow, "timeout", "the run's deadline of 0.2s passed")
    assert result.steps["slow"].error is not None
    assert result.steps["slow"].error.failure_mode == "timeout"
    done = step_span(spans, "done")
    assert done.status.status_code is StatusCode.UNSET
    assert (run.end_time - run.start_time) / 1e9 < 3


async def test_policy_blocked_without_an_approver(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    _, spans = await run_one(
        registry, settings, traced, [echo("risky", 1, approval="required")], journal=None
    )
    assert_failed(
        step_span(spans, "risky"),
        "policy_blocked",
        "step 'risky' requires approval and no approver is configured "
        "(CLI: --yes approves every step)",
    )


async def test_policy_blocked_when_approval_is_denied(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    async def deny(step_id: str, tool: Tool, args: dict[str, Any]) -> bool:
        return step_id != "risky"

    _, spans = await run_one(
        registry,
        settings,
        traced,
        [echo("risky", 1, approval="required"), echo("fine", 2, approval="required")],
        approver=deny,
    )
    assert_failed(step_span(spans, "risky"), "policy_blocked", "step 'risky': approval was denied")
    assert step_span(spans, "fine").status.status_code is StatusCode.UNSET


async def test_a_skipped_dependent_gets_an_instant_upstream_failed_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {"id": "x", "tool": "test.fail", "args": {}},
            echo("after", "${{ steps.x.output }}"),
            echo("later", "${{ steps.after.output }}"),
        ],
    )
    assert result.steps["after"].status is StepStatus.SKIPPED
    failed = step_span(spans, "x")
    after = step_span(spans, "after")
    later = step_span(spans, "later")
    run = one(spans, "run p")
    assert_failed(after, "upstream_failed", "skipped because step 'x' failed")
    assert_failed(
        later, "upstream_failed", "skipped because step 'after' was skipped after a failure"
    )
    for span in (after, later):
        assert is_child(span, run)
        attrs = dict(span.attributes or {})
        assert attrs["dagentic.status"] == "skipped"
        assert "dagentic.attempts" not in attrs  # it never ran
        assert exceptions(span) == []
        assert span.start_time >= failed.end_time
        assert (span.end_time - span.start_time) / 1e9 < 0.05
    assert after.attributes["dagentic.step.waited_for"] == "x"
    assert later.attributes["dagentic.step.waited_for"] == "after"


async def test_check_failed_is_on_the_check_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    _, spans = await run_one(
        registry,
        settings,
        traced,
        [
            echo("a", 1),
            {"id": "ok", "check": {"assert": "${{ steps.a.output == 2 }}", "on_fail": "replan"}},
        ],
    )
    span = step_span(spans, "ok")
    assert span.name == "check ok"
    attrs = dict(span.attributes or {})
    assert "gen_ai.tool.name" not in attrs and "gen_ai.operation.name" not in attrs
    assert attrs["dagentic.attempts"] == 1
    assert_failed(
        span, "check_failed", "step 'ok': check failed: assert steps.a.output == 2 is false"
    )
    assert [e["exception.type"] for e in exceptions(span)] == ["CheckFailedError"]


CANCEL_ME = {
    "name": "cancel-me",
    "steps": [
        {"id": "nap", "tool": "test.sleep", "args": {"seconds": 10}},
        {"id": "block", "tool": "test.sync_sleep", "args": {"seconds": 10}},
        echo("after", "${{ steps.nap.output }}"),
    ],
}


async def test_executor_cancel_ends_every_span_and_the_run_span_says_cancelled(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    journal = MemoryJournal()
    runner = executor(registry, settings, traced, journal=journal)
    results = []

    async def run() -> None:
        results.append(await runner.run(CANCEL_ME))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await wait_until(attempted(journal, "nap", "block"))
        runner.cancel()
    [result] = results
    assert result.status is RunStatus.CANCELLED

    spans = traced.spans()
    run_span = one(spans, "run cancel-me")
    assert run_span.attributes["dagentic.status"] == "cancelled"
    assert_failed(run_span, "cancelled", "the run was cancelled")
    assert (run_span.end_time - run_span.start_time) / 1e9 < 5
    for sid in ("nap", "block"):
        span = step_span(spans, sid)
        assert is_child(span, run_span)
        assert span.attributes["dagentic.status"] == "cancelled"
        assert_failed(span, "cancelled", "the run was cancelled")
        assert span.end_time <= run_span.end_time
    # A step that never started gets an instant span that says why.
    [after] = matching(spans, dagentic__step__id="after")
    assert is_child(after, run_span)
    assert after.attributes["dagentic.status"] == "cancelled"
    assert_failed(after, "cancelled", "the run was cancelled")
    assert after.end_time - after.start_time < 10_000_000


async def test_a_cancelled_caller_still_ends_every_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    with anyio.move_on_after(0.3) as scope:
        await executor(registry, settings, traced).run(CANCEL_ME)
    assert scope.cancelled_caught

    spans = traced.spans()
    run_span = one(spans, "run cancel-me")
    assert run_span.attributes["dagentic.status"] == "cancelled"
    assert_failed(run_span, "cancelled", "the run was cancelled by its caller")
    for sid in ("nap", "block"):
        span = step_span(spans, sid)
        assert is_child(span, run_span)
        assert span.attributes["dagentic.status"] == "cancelled"
        assert_failed(span, "cancelled", "the run ended before this step finished")
    # The next run on this task is a root of its own again (the root was reset).
    await executor(registry, settings, traced).run({"name": "next", "steps": [echo("a")]})
    spans = traced.spans()
    assert one(spans, "run next").parent is None
    assert one(spans, "run next").attributes.get("dagentic.root") is True


async def test_retried_attempts_are_exception_events_on_the_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    retry = {"attempts": 3, "backoff": 0.01}
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {
                "id": "x",
                "tool": "test.fail",
                "args": {"message": "again", "retryable": True},
                "retry": retry,
            }
        ],
    )
    assert result.steps["x"].attempts == 3
    span = step_span(spans, "x")
    assert span.attributes["dagentic.attempts"] == 3
    assert_failed(span, "tool_error", "again")
    events = exceptions(span)
    assert len(events) == 3  # one per failed attempt
    assert [e.get("dagentic.attempt") for e in events] == [1, 2, None]
    assert [e.get("dagentic.retried") for e in events] == [True, True, None]
    assert all(e["dagentic.failure_mode"] == "tool_error" for e in events)
    assert all(e["exception.message"] == "again" for e in events)


async def test_a_retry_that_succeeds_leaves_the_span_ok_with_the_failed_attempt(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    tools = ToolRegistry([*registry, flaky_tool(failures=1)])
    result = await Executor(tools, settings=settings, tracing=traced.tracing).run(
        {
            "name": "p",
            "steps": [
                {
                    "id": "f",
                    "tool": "probe.flaky",
                    "args": {"value": 7},
                    "retry": {"attempts": 3, "backoff": 0.01},
                }
            ],
        }
    )
    assert result.steps["f"].output == 7
    span = step_span(traced.spans(), "f")
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["dagentic.status"] == "succeeded"
    assert span.attributes["dagentic.attempts"] == 2
    assert "dagentic.failure_mode" not in span.attributes
    (event,) = exceptions(span)
    assert (event["dagentic.attempt"], event["dagentic.retried"]) == (1, True)
    assert event["exception.message"] == "flaky failure 1"


class BrokenJournal(MemoryJournal):
    """Raises on events of one kind while ``broken``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.broken = True

    def record(self, event: Any) -> None:
        if self.broken and event.kind == self.kind:
            raise RuntimeError(f"the journal is down ({event.kind})")
        super().record(event)


async def test_a_journal_raising_on_run_started_still_ends_the_run_span_as_error(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    journal = BrokenJournal("run_started")
    runner = executor(registry, settings, traced, journal=journal)
    plan = {"name": "p", "steps": [echo("a", 1)]}
    with pytest.raises(RuntimeError, match=r"^the journal is down \(run_started\)$"):
        await runner.run(plan, run_id="broken")

    journal.broken = False
    result = await runner.run(plan, run_id="next")  # on the same task
    assert result.status is RunStatus.SUCCEEDED

    spans = traced.spans()
    assert len(spans) == 3  # the broken run never started a step
    broken = one(spans, "run p", dagentic__run_id="broken")
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.status.description == "the journal is down (run_started)"
    assert broken.attributes["dagentic.status"] == "failed"
    assert broken.attributes["dagentic.root"] is True
    assert broken.end_time is not None
    # The failed run let go of the root: the next one is a root of its own.
    nxt = one(spans, "run p", dagentic__run_id="next")
    assert nxt.parent is None
    assert nxt.attributes.get("dagentic.root") is True
    assert nxt.context.trace_id != broken.context.trace_id
    assert nxt.status.status_code is StatusCode.UNSET
    assert is_child(step_span(spans, "a"), nxt)


# --------------------------------------------------------------------------- agent failures


async def test_plan_invalid_is_on_the_plan_span_and_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    bad = {"steps": [{"id": "a", "tool": "test.echo", "args": {"nope": 1}}]}
    result = await make_agent([bad, bad], registry, settings, traced.tracing, max_repairs=1).run(
        GOAL
    )
    # an argument the tool does not take: invalid_args, as the failure taxonomy names it
    assert result.error is not None and result.error.failure_mode == "invalid_args"

    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    plan = one(spans, "plan")
    assert is_child(plan, agent)
    assert_failed(plan, "invalid_args", result.error.message)
    assert [e["exception.type"] for e in exceptions(plan)] == ["PlanningError"]
    rejected = [e.attributes for e in plan.events if e.name == "dagentic.plan.rejected"]
    assert [(r["dagentic.plan.attempt"], r["dagentic.failure_mode"]) for r in rejected] == [
        (1, "invalid_args"),
        (2, "invalid_args"),
    ]
    assert_failed(agent, "invalid_args", result.error.message)
    assert agent.attributes["dagentic.status"] == "failed"
    assert agent.attributes["dagentic.replans"] == 0
    assert agent.attributes["dagentic.run_id"] == result.agent_run_id
    chats = matching(spans, "chat scripted")
    assert [c.attributes["dagentic.purpose"] for c in chats] == ["plan", "repair"]
    assert all(is_child(c, plan) for c in chats)
    assert matching(spans, dagentic__plan="p") == [] and not [
        s for s in spans if s.name.startswith("run ")
    ]


async def test_missing_capability_is_on_the_plan_span_and_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result = await make_agent(
        [{"missing_capability": "no tool sends email"}], registry, settings, traced.tracing
    ).run("Email Bob the total")
    message = "the planner says the goal needs a tool nobody provides: no tool sends email"
    assert result.error is not None and result.error.message == message
    spans = traced.spans()
    assert_failed(one(spans, "plan"), "missing_capability", message)
    assert_failed(one(spans, "invoke_agent dagentic"), "missing_capability", message)


async def test_goal_not_met_is_on_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result = await make_agent(
        [
            {"steps": [echo("a", "north")]},
            answer("The data is in [a].", ["a"]),
            {"passed": False, "reason": "it gives no total"},
        ],
        registry,
        settings,
        traced.tracing,
    ).run(GOAL)
    assert result.status is RunStatus.FAILED
    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert_failed(agent, "goal_not_met", "verification: it gives no total")
    assert agent.attributes["dagentic.status"] == "failed"
    run = one(spans, dagentic__run_id=result.run_id)
    assert run.status.status_code is StatusCode.UNSET  # the plan itself ran fine
    assert run.attributes["dagentic.status"] == "succeeded"
    verify = one(spans, "chat scripted", dagentic__purpose="verify")
    assert is_child(verify, agent)


async def test_false_success_is_on_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    await make_agent(
        [{"steps": [echo("total", 40)]}, answer("The total is 42 [total].", ["total"], True)],
        registry,
        settings,
        traced.tracing,
    ).run(GOAL)
    assert_failed(
        one(traced.spans(), "invoke_agent dagentic"),
        "false_success",
        "verification: the answer states 42, which no step result shows",
    )


async def test_the_step_budget_is_budget_exceeded_on_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result = await make_agent(
        [{"steps": [echo("a"), echo("b")]}], registry, settings, traced.tracing, max_steps=1
    ).run(GOAL)
    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert_failed(
        agent,
        "budget_exceeded",
        "step budget spent: 0 steps ran and the next plan has 2 (agent.max_steps is 1)",
    )
    assert result.run_ids == []
    assert not [s for s in spans if s.name.startswith("run ")]
    assert one(spans, "plan").status.status_code is StatusCode.UNSET


async def test_the_token_budget_is_budget_exceeded_on_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result = await make_agent(
        [{"steps": [echo("a", 1)]}], registry, settings, traced.tracing, max_tokens=50
    ).run(GOAL)
    assert result.error is not None
    assert result.error.message.startswith("token budget spent: ")
    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert_failed(agent, "budget_exceeded", result.error.message)
    chat = one(spans, "chat scripted")
    assert (
        agent.attributes["gen_ai.usage.input_tokens"],
        agent.attributes["gen_ai.usage.output_tokens"],
    ) == (
        chat.attributes["gen_ai.usage.input_tokens"],
        chat.attributes["gen_ai.usage.output_tokens"],
    )


# --------------------------------------------------------------------------- replans, chats


def replanning_agent(registry: ToolRegistry, settings: Settings, tracing: Tracing | None) -> Agent:
    first = {"steps": [echo("a", 1), {"id": "x", "tool": "test.fail", "args": {}}]}
    second = {"steps": [echo("a", 1), echo("b", 2)]}
    return make_agent(
        [first, second, answer("It is 2 [b].", ["b"], True), PASS], registry, settings, tracing
    )


async def test_a_replan_is_two_plan_spans_and_two_run_spans_under_the_agent_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result = await replanning_agent(registry, settings, traced.tracing).run(GOAL)
    assert result.status is RunStatus.SUCCEEDED, result.error

    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert agent.parent is None
    attrs = dict(agent.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.agent.name"] == "dagentic"
    assert attrs["gen_ai.request.model"] == "scripted"
    assert attrs["dagentic.run_id"] == result.agent_run_id
    assert attrs["dagentic.root"] is True
    assert attrs["dagentic.status"] == "succeeded"
    assert attrs["dagentic.replans"] == 1
    assert attrs["dagentic.model_calls"] == 4
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert agent.status.status_code is StatusCode.UNSET
    assert {s.context.trace_id for s in spans} == {agent.context.trace_id}

    plans = sorted(matching(spans, "plan"), key=lambda s: s.start_time)
    assert [p.attributes["dagentic.plan.version"] for p in plans] == [1, 2]
    assert all(is_child(p, agent) for p in plans)
    assert [e.name for e in plans[0].events] == []
    (replan,) = plans[1].events
    assert replan.name == "replan"
    assert dict(replan.attributes or {}) == {"dagentic.plan.version": 2}
    assert [p.attributes["dagentic.plan.steps"] for p in plans] == [2, 2]

    runs = sorted([s for s in spans if s.name.startswith("run ")], key=lambda s: s.start_time)
    assert [r.attributes["dagentic.plan.version"] for r in runs] == [1, 2]
    assert [r.attributes["dagentic.run_id"] for r in runs] == result.run_ids
    assert [r.attributes["dagentic.status"] for r in runs] == ["failed", "succeeded"]
    assert [r.attributes["dagentic.steps.reused"] for r in runs] == [0, 1]
    assert all(is_child(r, agent) for r in runs)
    assert all("dagentic.root" not in r.attributes for r in runs)
    assert_failed(runs[0], "tool_error", "step 'x' failed: boom")
    # Step a of the second run stands in for the first run's: a reused span, no attempts.
    reused = [s for s in spans if is_child(s, runs[1]) and s.attributes["dagentic.step.id"] == "a"]
    assert len(reused) == 1 and reused[0].attributes["dagentic.step.reused"] is True
    assert "dagentic.attempts" not in reused[0].attributes

    chats = sorted(matching(spans, "chat scripted"), key=lambda s: s.start_time)
    assert [c.attributes["dagentic.purpose"] for c in chats] == ["plan", "plan", "answer", "verify"]
    assert is_child(chats[0], plans[0]) and is_child(chats[1], plans[1])
    assert is_child(chats[2], agent) and is_child(chats[3], agent)
    for chat, call in zip(chats, result.model_calls, strict=True):
        attrs = dict(chat.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "scripted"
        assert attrs["gen_ai.provider.name"] == "scripted"
        assert attrs["gen_ai.usage.input_tokens"] == call.input_tokens > 0
        assert attrs["gen_ai.usage.output_tokens"] == call.output_tokens > 0
        assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
        assert chat.status.status_code is StatusCode.UNSET


async def test_judge_chat_spans_nest_under_the_check_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    plan = {
        "steps": [
            echo("news", {"results": [1]}),
            {"id": "enough", "check": {"criteria": "at least one result"}, "needs": ["news"]},
        ]
    }
    result = await make_agent(
        [plan, {"passed": True, "reason": "one result"}, answer("One [news].", ["news"]), PASS],
        registry,
        settings,
        traced.tracing,
    ).run(GOAL)
    assert result.status is RunStatus.SUCCEEDED, result.error
    spans = traced.spans()
    check = step_span(spans, "enough")
    assert check.name == "check enough"
    judge = one(spans, "chat scripted", dagentic__purpose="judge")
    assert is_child(judge, check)
    assert judge.attributes["gen_ai.usage.input_tokens"] > 0


async def test_a_failing_model_call_is_an_error_chat_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    from dagentic.models import ModelError

    await make_agent([ModelError("model: endpoint down")], registry, settings, traced.tracing).run(
        GOAL
    )
    spans = traced.spans()
    chat = one(spans, "chat scripted")
    assert_failed(chat, "tool_error", "model: endpoint down")
    assert "gen_ai.usage.input_tokens" not in chat.attributes
    assert_failed(one(spans, "plan"), "tool_error", "model: endpoint down")
    assert_failed(one(spans, "invoke_agent dagentic"), "tool_error", "model: endpoint down")


async def test_a_failed_model_call_records_its_exception_once(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    # Metered re-raises into Tracing.span, which opened the span: recorded there, once.
    from dagentic.models import ModelError

    await make_agent([ModelError("model: endpoint down")], registry, settings, traced.tracing).run(
        GOAL
    )
    spans = traced.spans()
    assert len(exceptions(one(spans, "plan"))) == 1
    chat = one(spans, "chat scripted")
    assert [e["exception.message"] for e in exceptions(chat)] == ["model: endpoint down"]


async def test_a_cancelled_agent_run_says_cancelled_on_its_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    # A caller's cancellation still gives invoke_agent its dagentic.status, so metrics count
    # the agent run as cancelled, like its plan run.
    plan = {"steps": [{"id": "nap", "tool": "test.sleep", "args": {"seconds": 10}}]}
    agent = make_agent([plan], registry, settings, traced.tracing)
    with anyio.move_on_after(0.3) as scope:
        await agent.run(GOAL)
    assert scope.cancelled_caught
    spans = traced.spans()
    run = one(spans, dagentic__plan__version=1, dagentic__status="cancelled")
    assert_failed(run, "cancelled", "the run was cancelled by its caller")
    span = one(spans, "invoke_agent dagentic")
    assert is_child(run, span)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["dagentic.failure_mode"] == "cancelled"
    assert span.attributes.get("dagentic.status") == "cancelled"
    assert by_attributes(traced.reader, "dagentic.runs") == {
        (("dagentic.run.kind", "plan"), ("dagentic.status", "cancelled")): 1,
        (("dagentic.run.kind", "agent"), ("dagentic.status", "cancelled")): 1,
    }


# --------------------------------------------------------------------------- foreach


async def test_foreach_items_are_spans_under_the_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {
                "id": "each",
                "tool": "test.echo",
                "foreach": ["x", "y", "z"],
                "args": {"value": "${{ item }}"},
            }
        ],
    )
    assert result.steps["each"].output == ["x", "y", "z"]
    step = step_span(spans, "each")
    items = sorted(matching(spans, dagentic__step__id="each"), key=lambda s: s.start_time)
    items = [s for s in items if "dagentic.item" in s.attributes]
    assert sorted(s.attributes["dagentic.item"] for s in items) == [0, 1, 2]
    for item in items:
        assert is_child(item, step)
        assert item.name == "execute_tool test.echo"
        assert item.attributes["gen_ai.tool.name"] == "test.echo"
        assert item.attributes["gen_ai.operation.name"] == "execute_tool"
        assert "dagentic.status" not in item.attributes
        assert step.start_time <= item.start_time <= item.end_time <= step.end_time
    assert step.attributes["dagentic.status"] == "succeeded"


async def test_a_failed_foreach_item_fails_its_span_and_the_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {
                "id": "each",
                "tool": "test.sleep",
                "foreach": [0, "never"],
                "max_parallel": 1,
                "args": {"seconds": "${{ item }}"},
            }
        ],
    )
    error = result.steps["each"].error
    assert error is not None and error.message.startswith("step 'each': item 1: ")
    step = step_span(spans, "each")
    assert_failed(step, "invalid_args", error.message)
    ok = one(spans, dagentic__step__id="each", dagentic__item=0)
    bad = one(spans, dagentic__step__id="each", dagentic__item=1)
    assert ok.status.status_code is StatusCode.UNSET
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes["dagentic.failure_mode"] == "invalid_args"
    assert bad.status.description.startswith("step 'each': tool 'test.sleep' rejected")


# --------------------------------------------------------------------------- content


async def test_content_is_not_recorded_by_default(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    await replanning_agent(registry, settings, traced.tracing).run(GOAL)
    await executor(registry, settings, traced).run(
        {
            "name": "p",
            "steps": [
                {
                    "id": "each",
                    "tool": "test.echo",
                    "foreach": [1],
                    "args": {"value": "${{ item }}"},
                }
            ],
        }
    )
    spans = traced.spans()
    assert len(spans) > 10
    for span in spans:
        assert not set(CONTENT_KEYS) & set(span.attributes or {}), span.name


async def test_content_is_recorded_when_asked(
    registry: ToolRegistry, settings: Settings, content_traced: Traced
) -> None:
    traced = content_traced
    result = await replanning_agent(registry, settings, traced.tracing).run(GOAL)
    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert agent.attributes["dagentic.goal"] == GOAL
    b = one(spans, dagentic__step__id="b")
    assert json.loads(b.attributes["gen_ai.tool.call.arguments"]) == {"value": 2}
    assert json.loads(b.attributes["gen_ai.tool.call.result"]) == 2
    failed = one(spans, dagentic__step__id="x")
    assert json.loads(failed.attributes["gen_ai.tool.call.arguments"]) == {
        "message": "boom",
        "retryable": False,
    }
    assert "gen_ai.tool.call.result" not in failed.attributes
    chats = sorted(matching(spans, "chat scripted"), key=lambda s: s.start_time)
    assert len(chats) == 4
    for chat, call in zip(chats, result.model_calls, strict=True):
        sent = json.loads(chat.attributes["gen_ai.input.messages"])
        assert [m["role"] for m in sent] == ["system", "user"], call.purpose
        (reply,) = json.loads(chat.attributes["gen_ai.output.messages"])
        assert reply["role"] == "assistant"
    assert (
        json.loads(json.loads(chats[0].attributes["gen_ai.output.messages"])[0]["content"])[
            "steps"
        ][1]["id"]
        == "x"
    )
    assert GOAL in chats[0].attributes["gen_ai.input.messages"]


async def test_recorded_content_is_cut_to_the_limit(
    registry: ToolRegistry, settings: Settings, content_traced: Traced
) -> None:
    from dagentic.tracing import CONTENT_LIMIT

    await executor(registry, settings, content_traced).run(
        {"name": "p", "steps": [echo("big", "x" * (CONTENT_LIMIT * 2))]}
    )
    span = step_span(content_traced.spans(), "big")
    for key in ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result"):
        assert span.attributes[key].endswith("…[cut]")
        assert len(span.attributes[key]) == CONTENT_LIMIT + len("…[cut]")


# --------------------------------------------------------------------------- other tracers


async def test_spans_of_another_tracer_in_a_tool_nest_under_the_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    SDK_EXPORTER.clear()
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {"id": "in_loop", "tool": "probe.inner_async", "args": {"label": "async"}},
            {"id": "in_thread", "tool": "probe.inner_sync", "args": {"label": "sync"}},
        ],
    )
    assert result.status is RunStatus.SUCCEEDED, result.error
    inner = {s.name: s for s in SDK_EXPORTER.get_finished_spans()}
    assert set(inner) == {"inner async", "inner sync"}
    for sid, name in (("in_loop", "inner async"), ("in_thread", "inner sync")):
        step = step_span(spans, sid)
        assert is_child(inner[name], step), sid
        assert inner[name].instrumentation_scope.name == "some.library"
    # dagentic's exporter never sees the other provider's spans.
    assert not [s for s in spans if s.name.startswith("inner")]


async def test_dagentic_spans_keep_the_trace_state_of_their_parent(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    # As OpenTelemetry asks: a vendor's tracestate from an incoming request stays on
    # dagentic's spans and on every span nested under them (in tools too).
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.span import TraceState

    state = TraceState([("vendor", "v1")])
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)
    SDK_EXPORTER.clear()
    with trace.use_span(NonRecordingSpan(remote)):
        await executor(registry, settings, traced).run(
            {
                "name": "p",
                "steps": [
                    {"id": "in_loop", "tool": "probe.inner_async", "args": {"label": "async"}}
                ],
            }
        )
    spans = traced.spans()
    run = one(spans, "run p")
    assert run.context.trace_id == 0xABC and run.parent.span_id == 0xDEF
    (inner,) = SDK_EXPORTER.get_finished_spans()
    assert is_child(inner, step_span(spans, "in_loop"))
    assert run.context.trace_state == state
    assert step_span(spans, "in_loop").context.trace_state == state
    assert inner.context.trace_state == state


async def test_under_an_unsampled_parent_dagentic_spans_are_recorded_but_not_sampled(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    state = TraceState([("vendor", "v1")])
    parent = SpanContext(0xABC, 0xDEF, False, TraceFlags(0), state)
    SDK_EXPORTER.clear()
    with trace.use_span(NonRecordingSpan(parent)):
        result = await executor(registry, settings, traced).run(
            {
                "name": "p",
                "steps": [
                    {"id": "in_loop", "tool": "probe.inner_async", "args": {"label": "async"}},
                    {"id": "in_thread", "tool": "probe.inner_sync", "args": {"label": "sync"}},
                ],
            }
        )
    assert result.status is RunStatus.SUCCEEDED, result.error

    # Every run has its trace: dagentic's spans are recorded and exported all the same...
    spans = traced.spans()
    assert len(spans) == 3
    run = one(spans, "run p")
    assert run.context.trace_id == 0xABC and run.parent.span_id == 0xDEF
    for span in spans:
        assert span.context.trace_id == 0xABC
        # ...but carry the parent's decision on, and its trace state.
        assert span.context.trace_flags == TraceFlags(0), span.name
        assert not span.context.trace_flags.sampled
        assert span.context.trace_state == state
    # So the application's SDK spans under them (ParentBased sampler) are not sampled.
    assert SDK_EXPORTER.get_finished_spans() == ()
    for sid in ("in_loop", "in_thread"):
        assert is_child(step_span(spans, sid), run)
        assert result.steps[sid].output["trace_id"] == 0xABC  # the tool's span was in it


def test_current_step_span_is_none_outside_dagentic_spans(traced: Traced) -> None:
    assert current_step_span() is None
    with SDK_TRACER.start_as_current_span("app request"):
        assert current_step_span() is None
    # Another tracer of dagentic's own provider is not dagentic either.
    with traced.provider.get_tracer("app").start_as_current_span("app span"):
        assert current_step_span() is None
    with traced.tracing.span("mine") as span:
        assert current_step_span() is span
        with SDK_TRACER.start_as_current_span("nested app span"):
            assert current_step_span() is None
    assert current_step_span() is None


async def test_a_tool_writes_onto_its_step_span_through_current_step_span(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    result, spans = await run_one(
        registry,
        settings,
        traced,
        [
            {"id": "in_loop", "tool": "probe.note", "args": {"text": "async note"}},
            {"id": "in_thread", "tool": "probe.note_sync", "args": {"text": "sync note"}},
        ],
    )
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert (result.steps["in_loop"].output, result.steps["in_thread"].output) == (True, True)
    assert step_span(spans, "in_loop").attributes["probe.note"] == "async note"
    assert step_span(spans, "in_thread").attributes["probe.note"] == "sync note"
    assert "probe.note" not in one(spans, "run p").attributes


async def test_with_tracing_off_current_step_span_is_none_even_in_an_application_span(
    registry: ToolRegistry, settings: Settings
) -> None:
    SDK_EXPORTER.clear()
    runner = Executor(registry, settings=settings, tracing=None)
    with SDK_TRACER.start_as_current_span("app request"):
        assert current_step_span() is None
        result = await runner.run(
            {
                "name": "p",
                "steps": [
                    {"id": "in_loop", "tool": "probe.note", "args": {"text": "async note"}},
                    {"id": "in_thread", "tool": "probe.note_sync", "args": {"text": "sync note"}},
                ],
            }
        )
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert (result.steps["in_loop"].output, result.steps["in_thread"].output) == (False, False)
    (request,) = SDK_EXPORTER.get_finished_spans()
    assert request.name == "app request"
    assert "probe.note" not in (request.attributes or {})


async def test_a_foreign_sdk_provider_gets_the_spans_and_metrics_inline(
    registry: ToolRegistry, settings: Settings
) -> None:
    exporter = InMemorySpanExporter()
    provider = SdkTracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = Tracing(provider, meters)
    try:
        result = await Executor(registry, settings=settings, tracing=tracing).run(
            {"name": "p", "steps": [echo("a", 1), {"id": "x", "tool": "test.fail", "args": {}}]}
        )
        # No flush: the SDK processor exported each span as it ended, and metrics with it.
        spans = list(exporter.get_finished_spans())
        run = one(spans, "run p")
        assert run.attributes["dagentic.run_id"] == result.run_id
        assert_failed(run, "tool_error", "step 'x' failed: boom")
        assert is_child(step_span(spans, "a"), run)
        assert_failed(step_span(spans, "x"), "tool_error", "boom")
        assert by_attributes(reader, "dagentic.runs") == {
            (("dagentic.run.kind", "plan"), ("dagentic.status", "failed")): 1
        }
        assert by_attributes(reader, "dagentic.step.duration", "count") == {
            (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "test.echo")): 1,
            (("dagentic.status", "failed"), ("gen_ai.tool.name", "test.fail")): 1,
        }
        assert by_attributes(reader, "dagentic.failures") == {
            (("dagentic.failure_mode", "tool_error"), ("gen_ai.tool.name", "test.fail")): 1
        }

        await replanning_agent(registry, settings, tracing).run(GOAL)
        spans = list(exporter.get_finished_spans())
        agent = one(spans, "invoke_agent dagentic")
        assert agent.attributes["dagentic.replans"] == 1
        parents = [agent, *matching(spans, "plan")]
        chats = matching(spans, "chat scripted")
        assert len(chats) == 4
        assert all(any(is_child(c, p) for p in parents) for c in chats)
        assert [p.value for p in points(reader, "dagentic.replans")] == [1]
        assert len(points(reader, "gen_ai.client.token.usage")) == 2
    finally:
        provider.shutdown()
        meters.shutdown()


# --------------------------------------------------------------------------- settings, files


APP_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import anyio
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from dagentic import Executor, Settings, ToolRegistry, tool
    from dagentic.tracing import tracing_from_settings

    @tool(name="app.echo", side_effects="none")
    async def echo(value: int = 0) -> int:
        '''Return the value.

        Args:
            value: The value.
        '''
        return value

    runs_dir = Path(sys.argv[1])
    settings = Settings(_env_prefix="DAGENTIC_TEST_UNUSED_", runs_dir=runs_dir)
    plan = {"name": "in-app", "steps": [{"id": "a", "tool": "app.echo", "args": {"value": 1}}]}
    out = {}

    async def main():
        executor = Executor(ToolRegistry([echo]), settings=settings)
        before = await executor.run(plan)
        out["before_run_id"] = before.run_id
        out["proxy_after_first_run"] = type(trace.get_tracer_provider()).__name__

        exporter = InMemorySpanExporter()
        app = TracerProvider()
        app.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(app)
        with trace.get_tracer("app").start_as_current_span("app request") as span:
            result = await executor.run(plan)
        ctx = span.get_span_context()
        out.update(run_id=result.run_id, status=result.status.value,
                   trace_id=f"{ctx.trace_id:032x}", span_id=f"{ctx.span_id:016x}",
                   still_app=trace.get_tracer_provider() is app,
                   app_spans=[s.name for s in exporter.get_finished_spans()])

    anyio.run(main)
    tracing_from_settings(settings).flush()
    print(json.dumps(out))
""")


def test_the_applications_global_provider_is_untouched(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", APP_SCRIPT, str(runs_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["proxy_after_first_run"] == "ProxyTracerProvider"
    assert out["status"] == "succeeded"
    assert out["still_app"] is True
    assert out["app_spans"] == ["app request"]

    path = runs_dir / f"{out['run_id']}.jsonl"
    assert path.is_file(), sorted(p.name for p in runs_dir.iterdir())
    records = list(read_spans(path))
    (run,) = [r for r in records if r["name"] == "run in-app"]
    assert run["trace_id"] == out["trace_id"]
    assert run["parent_id"] == out["span_id"]
    assert run["attributes"]["dagentic.run_id"] == out["run_id"]
    assert run["attributes"]["dagentic.root"] is True
    (step,) = [r for r in records if r["name"] == "execute_tool app.echo"]
    assert step["parent_id"] == run["span_id"] and step["trace_id"] == out["trace_id"]
    assert {r["scope"] for r in records} == {"dagentic"}
    # The first run, outside any application span, has its own trace and file.
    (first,) = [
        r
        for r in read_spans(runs_dir / f"{out['before_run_id']}.jsonl")
        if r["name"] == "run in-app"
    ]
    assert first["parent_id"] is None
    assert first["trace_id"] != out["trace_id"]
    assert (runs_dir / "metrics.jsonl").is_file()


async def test_exporter_none_means_no_tracing_and_no_files(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    settings = blind_settings(runs_dir=tmp_path / "runs", tracing={"exporter": "none"})
    assert tracing_from_settings(settings) is None
    runner = Executor(registry, settings=settings)
    assert runner.tracing is None
    result = await runner.run({"name": "p", "steps": [echo("a", 1)]})
    assert result.status is RunStatus.SUCCEEDED
    agent = Agent(
        ScriptedModel([{"steps": [echo("a", 1)]}, answer("1 [a].", ["a"]), PASS]),
        registry,
        settings=settings,
    )
    assert agent.tracing is None
    assert (await agent.run(GOAL)).status is RunStatus.SUCCEEDED
    # no run files (the durable journal, a setting of its own, is there)
    assert [p.name for p in (tmp_path / "runs").iterdir() if "journal" not in p.name] == []


def jsonl_settings(tmp_path: Path) -> Settings:
    return blind_settings(runs_dir=tmp_path / "runs", tracing={"export_delay": 0.05})


async def test_an_agent_run_is_one_file_named_after_the_agent_run(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    settings = jsonl_settings(tmp_path)
    result = await replanning_agent(registry, settings, tracing_from_settings(settings)).run(GOAL)
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    tracing.flush()
    runs_dir = tmp_path / "runs"
    path = runs_dir / f"{result.agent_run_id}.jsonl"
    assert run_files(runs_dir) == [path]
    records = list(read_spans(path))
    run_ids = [r["attributes"]["dagentic.run_id"] for r in records if r["name"].startswith("run ")]
    assert sorted(run_ids) == sorted(result.run_ids)
    assert len({r["trace_id"] for r in records}) == 1
    names = [r["name"] for r in records]
    assert names.count("plan") == 2 and names.count("chat scripted") == 4
    assert names[-1] == "invoke_agent dagentic"  # the root ends last
    for run_id in result.run_ids:
        assert find_run(runs_dir, run_id) == path
    assert find_run(runs_dir, result.agent_run_id) == path
    assert find_run(runs_dir, result.agent_run_id[:8]) == path
    assert find_run(runs_dir, "0" * 32) is None


async def test_two_concurrent_plan_runs_write_two_files(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    settings = jsonl_settings(tmp_path)
    runner = Executor(registry, settings=settings)
    plan = {
        "name": "twin",
        "steps": [
            {"id": "a", "tool": "test.sleep", "args": {"seconds": 0.05}},
            {"id": "b", "tool": "test.sleep", "args": {"seconds": "${{ steps.a.output }}"}},
        ],
    }

    async with anyio.create_task_group() as group:
        for run_id in ("run-one", "run-two"):
            group.start_soon(partial(runner.run, plan, run_id=run_id))
    assert runner.tracing is not None
    runner.tracing.flush()

    runs_dir = tmp_path / "runs"
    assert sorted(p.name for p in run_files(runs_dir)) == ["run-one.jsonl", "run-two.jsonl"]
    for run_id in ("run-one", "run-two"):
        records = list(read_spans(runs_dir / f"{run_id}.jsonl"))
        assert len(records) == 3
        (run,) = [r for r in records if r["name"] == "run twin"]
        assert run["attributes"]["dagentic.run_id"] == run_id
        assert {r["trace_id"] for r in records} == {run["trace_id"]}
        assert find_run(runs_dir, run_id) == runs_dir / f"{run_id}.jsonl"


async def test_runs_inside_one_application_span_each_get_their_own_file(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    settings = jsonl_settings(tmp_path)
    runner = Executor(registry, settings=settings)
    app = SdkTracerProvider(shutdown_on_exit=False).get_tracer("app")
    plan = {"name": "p", "steps": [echo("a", 1)]}
    with app.start_as_current_span("request") as request:
        await runner.run(plan, run_id="first")
        await runner.run(plan, run_id="second")  # the first one's spans may not be out yet
    assert runner.tracing is not None
    runner.tracing.flush()

    runs_dir = tmp_path / "runs"
    assert sorted(p.name for p in run_files(runs_dir)) == ["first.jsonl", "second.jsonl"]
    trace_id = format(request.get_span_context().trace_id, "032x")
    for run_id in ("first", "second"):
        records = list(read_spans(runs_dir / f"{run_id}.jsonl"))
        assert [r["name"] for r in records] == ["execute_tool test.echo", "run p"]
        assert {r["trace_id"] for r in records} == {trace_id}


async def test_a_message_that_is_not_utf8_is_written_replaced_and_the_batch_still_goes_out(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    runs_dir = tmp_path / "runs"
    # Held until the flush: both runs' spans go out in one batch, the broken run's first.
    provider = FastTracerProvider(
        [JsonlSpanExporter(runs_dir)], schedule_delay=60, shutdown_on_exit=False
    )
    runner = Executor(
        registry, settings=blind_settings(runs_dir=runs_dir), tracing=Tracing(provider)
    )
    try:
        failed = await runner.run(
            {"name": "bad", "steps": [{"id": "x", "tool": "probe.unreadable", "args": {}}]},
            run_id="bad-name",
        )
        await runner.run({"name": "good", "steps": [echo("a", 1)]}, run_id="good-run")
        assert provider.force_flush() is True
    finally:
        provider.shutdown()
    assert failed.steps["x"].error is not None
    assert failed.steps["x"].error.message == "cannot read data-\udce9t\udce9.csv"

    bad = runs_dir / "bad-name.jsonl"
    raw = bad.read_bytes().decode("utf-8")  # valid UTF-8: the surrogates became "?"
    assert "cannot read data-?t?.csv" in raw
    records = list(read_spans(bad))
    assert [r["name"] for r in records] == ["execute_tool probe.unreadable", "run bad"]
    step, run = records
    assert step["message"] == "cannot read data-?t?.csv"  # printable anywhere
    assert step["events"][0]["attributes"]["exception.message"] == "cannot read data-?t?.csv"
    assert run["message"] == "step 'x' failed: cannot read data-?t?.csv"
    # The other run of the same batch is written too.
    good = list(read_spans(runs_dir / "good-run.jsonl"))
    assert [r["name"] for r in good] == ["execute_tool test.echo", "run good"]
    assert sorted(p.name for p in run_files(runs_dir)) == ["bad-name.jsonl", "good-run.jsonl"]


async def test_run_ids_that_are_no_plain_file_names_get_files_of_their_own(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    settings = jsonl_settings(tmp_path)
    runner = Executor(registry, settings=settings)
    run_ids = ["r" * 150, "r" * 121, "metrics", "a/b", "a b", "a_b", "../up", ".."]
    for run_id in run_ids:
        await runner.run({"name": "p", "steps": [echo("a", 1)]}, run_id=run_id)
    assert runner.tracing is not None
    runner.tracing.flush()

    runs_dir = tmp_path / "runs"
    paths = [find_run(runs_dir, run_id) for run_id in run_ids]
    assert len(set(paths)) == len(run_ids), paths
    assert sorted(run_files(runs_dir)) == sorted(paths)
    assert paths[5] == runs_dir / "a_b.jsonl"  # a plain id is its own file name
    for run_id, path in zip(run_ids, paths, strict=True):
        assert path is not None and path.parent == runs_dir, run_id
        assert len(path.name) <= 120 + len(".jsonl")
        (run,) = [r for r in read_spans(path) if r["name"] == "run p"]
        assert run["attributes"]["dagentic.run_id"] == run_id
    assert paths[0].name.startswith("r" * 80 + "-")
    assert paths[2] != runs_dir / "metrics.jsonl" and paths[2].name.startswith("metrics-")
    # The metrics file holds metrics only.
    lines = (runs_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines and all("resource_metrics" in json.loads(line) for line in lines)
    assert list(read_spans(runs_dir / "metrics.jsonl")) == []


async def test_after_shutdown_the_same_settings_give_a_new_working_tracing(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    settings = jsonl_settings(tmp_path)
    plan = {"name": "p", "steps": [echo("a", 1)]}
    first = tracing_from_settings(settings)
    assert first is not None and tracing_from_settings(settings) is first
    await Executor(registry, settings=settings).run(plan, run_id="before")
    first.shutdown()

    second = tracing_from_settings(settings)
    assert second is not None and second is not first
    assert tracing_from_settings(settings) is second
    runner = Executor(registry, settings=settings)
    assert runner.tracing is second
    await runner.run(plan, run_id="after")
    assert second.flush() is True

    runs_dir = tmp_path / "runs"
    for run_id in ("before", "after"):
        assert [r["name"] for r in read_spans(runs_dir / f"{run_id}.jsonl")] == [
            "execute_tool test.echo",
            "run p",
        ], run_id


# --------------------------------------------------------------------------- metrics


async def test_metrics_are_derived_from_the_spans(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    await executor(registry, settings, traced).run(
        {
            "name": "p",
            "steps": [
                echo("a", 1),
                echo("b", 2),
                {"id": "x", "tool": "test.fail", "args": {}},
                echo("after", "${{ steps.x.output }}"),
                {"id": "ok", "check": {"assert": "${{ steps.a.output == 1 }}"}},
            ],
        }
    )
    result = await replanning_agent(registry, settings, traced.tracing).run(GOAL)
    await make_agent([{"missing_capability": "email"}], registry, settings, traced.tracing).run(
        GOAL
    )
    traced.tracing.flush()
    reader = traced.reader

    durations = by_attributes(reader, "dagentic.step.duration", "count")
    assert durations == {
        (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "test.echo")): 2 + 1 + 2,
        (("dagentic.status", "failed"), ("gen_ai.tool.name", "test.fail")): 2,
        (("dagentic.status", "skipped"), ("gen_ai.tool.name", "test.echo")): 1,
        (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "check")): 1,
    }
    sums = by_attributes(reader, "dagentic.step.duration", "sum")
    assert all(s >= 0 for s in sums.values())

    assert by_attributes(reader, "dagentic.failures") == {
        (("dagentic.failure_mode", "tool_error"), ("gen_ai.tool.name", "test.fail")): 2,
        (("dagentic.failure_mode", "upstream_failed"), ("gen_ai.tool.name", "test.echo")): 1,
        (("dagentic.failure_mode", "missing_capability"),): 1,
    }
    assert by_attributes(reader, "dagentic.runs") == {
        (("dagentic.run.kind", "plan"), ("dagentic.status", "failed")): 2,
        (("dagentic.run.kind", "plan"), ("dagentic.status", "succeeded")): 1,
        (("dagentic.run.kind", "agent"), ("dagentic.status", "succeeded")): 1,
        (("dagentic.run.kind", "agent"), ("dagentic.status", "failed")): 1,
    }
    (replans,) = points(reader, "dagentic.replans")
    assert replans.value == 1

    tokens = {
        dict(p.attributes)["gen_ai.token.type"]: p
        for p in points(reader, "gen_ai.client.token.usage")
    }
    assert set(tokens) == {"input", "output"}
    assert all(dict(p.attributes)["gen_ai.request.model"] == "scripted" for p in tokens.values())
    calls = result.model_calls
    assert tokens["input"].count == len(calls) + 1  # and the missing-capability plan call
    assert tokens["input"].sum >= sum(c.input_tokens for c in calls)
    assert tokens["output"].sum >= sum(c.output_tokens for c in calls)
    (duration,) = points(reader, "gen_ai.client.operation.duration")
    assert duration.count == len(calls) + 1


async def test_two_tracings_on_one_provider_and_meter_provider_count_a_run_once(
    registry: ToolRegistry, settings: Settings, traced: Traced
) -> None:
    other = Tracing(traced.provider, traced.meter_provider)
    assert other.span_metrics is traced.tracing.span_metrics
    assert [type(e).__name__ for e in traced.provider.exporters] == [
        "InMemorySpanExporter",
        "SpanMetrics",
    ]
    # Another meter provider gets metrics of its own.
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        third = Tracing(traced.provider, meters)
        assert third.span_metrics is not traced.tracing.span_metrics
        assert len(traced.provider.exporters) == 3

        await Executor(registry, settings=settings, tracing=other).run(
            {"name": "p", "steps": [echo("a", 1)]}
        )
        traced.tracing.flush()
        for metrics in (traced.reader, reader):
            assert by_attributes(metrics, "dagentic.runs") == {
                (("dagentic.run.kind", "plan"), ("dagentic.status", "succeeded")): 1
            }
            assert by_attributes(metrics, "dagentic.step.duration", "count") == {
                (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "test.echo")): 1
            }
    finally:
        meters.shutdown()


# --------------------------------------------------------------------------- the API


def test_use_span_makes_a_fast_span_current_and_parents_new_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracer = provider.get_tracer("t", "1")
    outer = tracer.start_span("outer")
    with trace.use_span(outer, end_on_exit=True):
        assert trace.get_current_span() is outer
        inner = tracer.start_span("inner")
        inner.end()
        sdk_inner = SDK_TRACER.start_span("sdk inner")
        sdk_inner.end()
    assert trace.get_current_span() is not outer
    assert not outer.is_recording()
    assert provider.force_flush() is True
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert is_child(spans["inner"], spans["outer"])
    assert spans["outer"].instrumentation_scope.name == "t"
    assert spans["outer"].instrumentation_scope.version == "1"
    assert sdk_inner.parent is not None
    assert sdk_inner.parent.span_id == spans["outer"].context.span_id
    provider.shutdown()


def test_start_as_current_span_records_an_exception_as_error() -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    with (
        pytest.raises(ValueError, match="bad value"),
        tracer.start_as_current_span("work", attributes={"k": 1}) as span,
    ):
        assert trace.get_current_span() is span
        raise ValueError("bad value")
    with tracer.start_as_current_span("fine"):
        pass
    with pytest.raises(KeyError), tracer.start_span("manual"):
        raise KeyError("k")
    assert provider.force_flush() is True
    spans = {s.name: s for s in exporter.get_finished_spans()}
    work = spans["work"]
    assert work.status.status_code is StatusCode.ERROR
    assert work.status.description == "ValueError: bad value"
    (event,) = work.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad value"
    assert dict(work.attributes) == {"k": 1}
    assert spans["fine"].status.status_code is StatusCode.UNSET
    assert spans["fine"].events == ()
    assert spans["manual"].status.status_code is StatusCode.ERROR
    assert [e.name for e in spans["manual"].events] == ["exception"]
    provider.shutdown()


def test_invalid_attribute_values_are_dropped_and_never_exported() -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    span = tracer.start_span("s", attributes={"good": "x", "bad": {"a": 1}, "list": [1, 2]})
    span.set_attribute("dict", {"a": 1})
    span.set_attribute("mixed", [1, "a"])
    span.set_attribute("object", object())
    span.set_attribute("strings", ["a", "b"])
    span.set_attribute("none", None)
    span.set_attributes({"n": 2.5, "also_bad": {"b": 2}})
    span.add_event("e", {"ok": True, "bad": {"c": 3}})
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "ignored: OK is final")
    span.end()
    span.set_attribute("late", 1)  # after the end: ignored
    assert provider.force_flush() is True
    (exported,) = exporter.get_finished_spans()
    assert dict(exported.attributes) == {
        "good": "x",
        "list": (1, 2),
        "strings": ("a", "b"),
        "n": 2.5,
    }
    assert dict(exported.events[0].attributes) == {"ok": True}
    assert exported.status.status_code is StatusCode.OK
    provider.shutdown()


def test_force_flush_and_shutdown_export_what_is_left() -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], schedule_delay=60, shutdown_on_exit=False)
    assert provider.force_flush() is True  # nothing to do, no thread
    tracer = provider.get_tracer("t")
    tracer.start_span("first").end()
    time.sleep(0.05)
    assert exporter.get_finished_spans() == ()  # waits for its batch
    assert provider.force_flush(5_000) is True
    assert [s.name for s in exporter.get_finished_spans()] == ["first"]
    for i in range(3):
        tracer.start_span(f"left {i}").end()
    provider.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == [
        "first",
        "left 0",
        "left 1",
        "left 2",
    ]
    tracer.start_span("after shutdown").end()  # ignored, never raises
    provider.shutdown()  # twice is fine
    assert len(exporter.get_finished_spans()) == 4


def test_unset_never_replaces_error_and_ok_is_final() -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    failed = tracer.start_span("failed")
    failed.set_status(StatusCode.ERROR, "it broke")
    failed.set_status(StatusCode.UNSET)
    failed.set_status(Status(StatusCode.UNSET, "ignored"))
    failed.end()
    fixed = tracer.start_span("fixed")
    fixed.set_status(Status(StatusCode.ERROR, "it broke"))
    fixed.set_status(StatusCode.OK)
    fixed.set_status(StatusCode.ERROR, "ignored: OK is final")
    fixed.set_status(StatusCode.UNSET)
    fixed.end()
    untouched = tracer.start_span("untouched")
    untouched.set_status(StatusCode.UNSET)
    untouched.end()
    assert provider.force_flush() is True
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert (spans["failed"].status.status_code, spans["failed"].status.description) == (
        StatusCode.ERROR,
        "it broke",
    )
    assert spans["fixed"].status.status_code is StatusCode.OK
    assert spans["fixed"].status.description is None
    assert spans["untouched"].status.status_code is StatusCode.UNSET
    provider.shutdown()


class BlockedExporter(SpanExporter):
    """An exporter whose export hangs (a collector that does not answer) until released."""

    def __init__(self) -> None:
        self.exporting = threading.Event()
        self.release = threading.Event()
        self.names: list[str] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.exporting.set()
        self.release.wait(30)
        self.names.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_shutdown_with_a_blocked_exporter_returns_within_its_timeout() -> None:
    exporter = BlockedExporter()
    provider = FastTracerProvider([exporter], schedule_delay=60, shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    try:
        for i in range(3):
            tracer.start_span(f"span {i}").end()
        start = time.monotonic()
        provider.shutdown(timeout_millis=300)
        assert time.monotonic() - start < 1.5
        assert exporter.exporting.is_set() and exporter.names == []
        assert provider.dropped == 0
        tracer.start_span("after shutdown").end()
        tracer.start_span("after shutdown too").end()
        assert provider.dropped == 2
        provider.shutdown(timeout_millis=300)  # twice is fine, and quick
    finally:
        exporter.release.set()
    assert provider._thread is not None
    provider._thread.join(5)
    assert not provider._thread.is_alive()
    assert "after shutdown" not in exporter.names
    assert "after shutdown too" not in exporter.names


def test_shutdown_with_a_blocked_exporter_counts_the_spans_not_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The batch the exporter thread took and is stuck exporting counts too: with a
    # collector that does not answer, even a few spans (one batch) give a warning.
    exporter = BlockedExporter()
    provider = FastTracerProvider(
        [exporter], schedule_delay=60, max_batch=2, shutdown_on_exit=False
    )
    tracer = provider.get_tracer("t")
    try:
        for i in range(3):  # one batch of two the exporter is stuck on, one span queued
            tracer.start_span(f"span {i}").end()
        with caplog.at_level(logging.WARNING, logger="dagentic.tracing"):
            provider.shutdown(timeout_millis=300)
        assert exporter.names == []
    finally:
        exporter.release.set()
    assert [r.getMessage() for r in caplog.records if r.name == "dagentic.tracing"] == [
        "event='spans not exported' run_id=None step_id=None count=3 "
        "reason='the exporter was too slow or its queue was full'"
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_exports_its_own_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], schedule_delay=0.05, shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    tracer.start_span("before the fork").end()
    assert provider.force_flush()
    pending = tracer.start_span("the parent's, pending")
    pending.end()  # queued in the parent when it forks: not the child's to export
    with warnings.catch_warnings():  # 3.12+ warns about forking a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own thread starts, the parent's queue is not its own
        tracer.start_span("the child's").end()
        flushed = provider.force_flush(5000)
        names = [s.name for s in exporter.get_finished_spans()]
        os._exit(0 if flushed and names == ["before the fork", "the child's"] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert provider.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == [
        "before the fork",
        "the parent's, pending",
    ]
