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
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runtime import (
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
    tool,
)
from runtime.agent import Agent, Budgets
from runtime.runfiles import find_run, read_spans, run_files
from runtime.spans import FastTracerProvider
from runtime.tracing import Tracing, tracing_from_settings
from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

ROOT_DIR = Path(__file__).resolve().parents[2]
CONTENT_KEYS = ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
                "gen_ai.input.messages", "gen_ai.output.messages", "dagentic.goal")
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
        self.meter_provider = MeterProvider(metric_readers=[self.reader],
                                            shutdown_on_exit=False)
        self.tracing = Tracing(self.provider, self.meter_provider,
                               record_content=record_content)

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


def matching(spans: list[ReadableSpan], name: str | None = None, **attrs: Any
             ) -> list[ReadableSpan]:
    wanted = {k.replace("__", "."): v for k, v in attrs.items()}
    return [s for s in spans if (name is None or s.name == name)
            and all((s.attributes or {}).get(k) == v for k, v in wanted.items())]


def step_span(spans: list[ReadableSpan], step_id: str) -> ReadableSpan:
    return one([s for s in spans if "dagentic.item" not in (s.attributes or {})],
               dagentic__step__id=step_id)


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    (parent,) = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return (child.parent is not None and child.parent.span_id == parent.context.span_id
            and child.context.trace_id == parent.context.trace_id)


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
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics if m.name == name for p in m.data.data_points]


def by_attributes(reader: InMemoryMetricReader, name: str, value: str = "value"
                  ) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(p.attributes.items())): getattr(p, value)
            for p in points(reader, name)}


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def attempted(journal: MemoryJournal, *step_ids: str) -> Callable[[], bool]:
    return lambda: all(any(e.kind == "attempt" and e.step_id == sid for e in journal.events)
                       for sid in step_ids)


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


PROBES = [inner_async, inner_sync, hog, lost]


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


def answer(text: str = "Done.", cited: list[str] | tuple[str, ...] = (),
           complete: bool = False) -> dict[str, Any]:
    return {"answer": text, "cited_steps": list(cited), "complete": complete}


def echo(sid: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "test.echo", "args": {"value": value}, **extra}


def make_agent(replies: list[Any], registry: ToolRegistry, settings: Settings,
               tracing: Tracing | None, **budgets: Any) -> Agent:
    return Agent(ScriptedModel(replies), registry, settings=settings,
                 budgets=Budgets(**budgets), tracing=tracing)


def executor(registry: ToolRegistry, settings: Settings, traced: Traced, **options: Any
             ) -> Executor:
    return Executor(registry, settings=settings, tracing=traced.tracing, **options)


# --------------------------------------------------------------------------- span tree


PARALLEL = {"name": "parallel", "steps": [
    {"id": "a", "tool": "test.sleep", "args": {"seconds": 0.05}},
    {"id": "b", "tool": "test.sleep", "args": {"seconds": 0.3}},
    {"id": "c", "tool": "test.sleep", "args": {"seconds": 0.15}},
    echo("join", "${{ [steps.a.output, steps.b.output, steps.c.output] }}"),
]}


async def test_a_parallel_plan_is_a_run_span_over_overlapping_sibling_step_spans(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    app = traced.provider.get_tracer("app")
    with app.start_as_current_span("request") as request:
        await executor(registry, settings, traced).run({"name": "p", "steps": [echo("a", 1)]})
    spans = traced.spans()
    run = one(spans, "run p")
    assert is_child(run, one(spans, "request"))
    assert request.get_span_context().trace_id == run.context.trace_id
    assert is_child(step_span(spans, "a"), run)


# --------------------------------------------------------------------------- failure modes


async def run_one(registry: ToolRegistry, settings: Settings, traced: Traced,
                  steps: list[dict[str, Any]], **options: Any) -> tuple[Any, list[ReadableSpan]]:
    timeout = options.pop("timeout", None)
    result = await executor(registry, settings, traced, **options).run(
        {"name": "p", "steps": steps}, timeout=timeout)
    return result, traced.spans()


async def test_invalid_args_is_on_the_step_span(registry: ToolRegistry, settings: Settings,
                                                traced: Traced) -> None:
    result, spans = await run_one(registry, settings, traced, [
        echo("a", "soon"),
        {"id": "nap", "tool": "test.sleep", "args": {"seconds": "${{ steps.a.output }}"}}])
    error = result.steps["nap"].error
    assert error is not None
    assert error.message.startswith("step 'nap': tool 'test.sleep' rejected its arguments: "
                                    "seconds: ")
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result, spans = await run_one(registry, settings, traced, [
        {"id": "x", "tool": "test.fail", "args": {"message": "the disk is on fire"}}])
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


async def test_a_plain_exception_of_a_tool_is_tool_error(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    _, spans = await run_one(registry, settings, traced, [
        {"id": "x", "tool": "test.crash", "args": {"message": "bug"}}])
    span = step_span(spans, "x")
    assert_failed(span, "tool_error", "bug")
    assert [e["exception.type"] for e in exceptions(span)] == ["RuntimeError"]


async def test_step_timeout_is_on_the_step_span(registry: ToolRegistry, settings: Settings,
                                                traced: Traced) -> None:
    _, spans = await run_one(registry, settings, traced, [
        {"id": "slow", "tool": "test.sleep", "args": {"seconds": 5}, "timeout": 0.05}])
    span = step_span(spans, "slow")
    assert_failed(span, "timeout",
                  "step 'slow': tool 'test.sleep' did not finish within 0.05s")
    assert [e["exception.type"] for e in exceptions(span)] == ["StepTimeoutError"]
    assert (span.end_time - span.start_time) / 1e9 < 2


async def test_the_run_deadline_is_timeout_on_the_run_and_its_running_steps(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result, spans = await run_one(registry, settings, traced, [
        {"id": "slow", "tool": "test.sleep", "args": {"seconds": 5}},
        {"id": "done", "tool": "test.sleep", "args": {"seconds": 0}}], timeout=0.2)
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


async def test_resource_limit_is_on_the_step_span(registry: ToolRegistry, settings: Settings,
                                                  traced: Traced) -> None:
    _, spans = await run_one(registry, settings, traced, [
        {"id": "big", "tool": "probe.hog", "args": {"megabytes": 64}}])
    span = step_span(spans, "big")
    assert_failed(span, "resource_limit", "memory limit of 64 MB exceeded")
    assert [e["exception.type"] for e in exceptions(span)] == ["ResourceLimitError"]


async def test_policy_blocked_without_an_approver(registry: ToolRegistry, settings: Settings,
                                                  traced: Traced) -> None:
    _, spans = await run_one(registry, settings, traced, [
        echo("risky", 1, approval="required")])
    assert_failed(step_span(spans, "risky"), "policy_blocked",
                  "step 'risky' requires approval and no approver is configured "
                  "(CLI: --yes approves every step)")


async def test_policy_blocked_when_approval_is_denied(registry: ToolRegistry,
                                                      settings: Settings,
                                                      traced: Traced) -> None:
    async def deny(step_id: str, tool: Tool, args: dict[str, Any]) -> bool:
        return step_id != "risky"

    _, spans = await run_one(registry, settings, traced, [
        echo("risky", 1, approval="required"), echo("fine", 2, approval="required")],
        approver=deny)
    assert_failed(step_span(spans, "risky"), "policy_blocked",
                  "step 'risky': approval was denied")
    assert step_span(spans, "fine").status.status_code is StatusCode.UNSET


async def test_a_skipped_dependent_gets_an_instant_upstream_failed_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result, spans = await run_one(registry, settings, traced, [
        {"id": "x", "tool": "test.fail", "args": {}},
        echo("after", "${{ steps.x.output }}"),
        echo("later", "${{ steps.after.output }}")])
    assert result.steps["after"].status is StepStatus.SKIPPED
    failed = step_span(spans, "x")
    after = step_span(spans, "after")
    later = step_span(spans, "later")
    run = one(spans, "run p")
    assert_failed(after, "upstream_failed", "skipped because step 'x' failed")
    assert_failed(later, "upstream_failed",
                  "skipped because step 'after' was skipped after a failure")
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


async def test_check_failed_is_on_the_check_span(registry: ToolRegistry, settings: Settings,
                                                 traced: Traced) -> None:
    _, spans = await run_one(registry, settings, traced, [
        echo("a", 1),
        {"id": "ok", "check": {"assert": "${{ steps.a.output == 2 }}", "on_fail": "replan"}}])
    span = step_span(spans, "ok")
    assert span.name == "check ok"
    attrs = dict(span.attributes or {})
    assert "gen_ai.tool.name" not in attrs and "gen_ai.operation.name" not in attrs
    assert attrs["dagentic.attempts"] == 1
    assert_failed(span, "check_failed",
                  "step 'ok': check failed: assert steps.a.output == 2 is false")
    assert [e["exception.type"] for e in exceptions(span)] == ["CheckFailedError"]


async def test_invalid_tool_is_on_the_step_span(registry: ToolRegistry, settings: Settings,
                                                traced: Traced) -> None:
    _, spans = await run_one(registry, settings, traced, [
        {"id": "where", "tool": "probe.lost", "args": {"name": "mail.send"}}])
    assert_failed(step_span(spans, "where"), "invalid_tool", "no tool named 'mail.send'")


CANCEL_ME = {"name": "cancel-me", "steps": [
    {"id": "nap", "tool": "test.sleep", "args": {"seconds": 10}},
    {"id": "block", "tool": "test.sync_sleep", "args": {"seconds": 10}},
    echo("after", "${{ steps.nap.output }}")]}


async def test_executor_cancel_ends_every_span_and_the_run_span_says_cancelled(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    retry = {"attempts": 3, "backoff": 0.01}
    result, spans = await run_one(registry, settings, traced, [
        {"id": "x", "tool": "test.fail", "args": {"message": "again", "retryable": True},
         "retry": retry}])
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    tools = ToolRegistry([*registry, flaky_tool(failures=1)])
    result = await Executor(tools, settings=settings, tracing=traced.tracing).run(
        {"name": "p", "steps": [{"id": "f", "tool": "probe.flaky", "args": {"value": 7},
                                 "retry": {"attempts": 3, "backoff": 0.01}}]})
    assert result.steps["f"].output == 7
    span = step_span(traced.spans(), "f")
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["dagentic.status"] == "succeeded"
    assert span.attributes["dagentic.attempts"] == 2
    assert "dagentic.failure_mode" not in span.attributes
    (event,) = exceptions(span)
    assert (event["dagentic.attempt"], event["dagentic.retried"]) == (1, True)
    assert event["exception.message"] == "flaky failure 1"


# --------------------------------------------------------------------------- agent failures


async def test_plan_invalid_is_on_the_plan_span_and_the_agent_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    bad = {"steps": [{"id": "a", "tool": "test.echo", "args": {"nope": 1}}]}
    result = await make_agent([bad, bad], registry, settings, traced.tracing,
                              max_repairs=1).run(GOAL)
    assert result.error is not None and result.error.failure_mode == "plan_invalid"

    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    plan = one(spans, "plan")
    assert is_child(plan, agent)
    assert_failed(plan, "plan_invalid", result.error.message)
    assert [e["exception.type"] for e in exceptions(plan)] == ["PlanError"]
    assert_failed(agent, "plan_invalid", result.error.message)
    assert agent.attributes["dagentic.status"] == "failed"
    assert agent.attributes["dagentic.replans"] == 0
    assert agent.attributes["dagentic.run_id"] == result.agent_run_id
    chats = matching(spans, "chat scripted")
    assert [c.attributes["dagentic.purpose"] for c in chats] == ["plan", "repair"]
    assert all(is_child(c, plan) for c in chats)
    assert matching(spans, dagentic__plan="p") == [] and not [
        s for s in spans if s.name.startswith("run ")]


async def test_missing_capability_is_on_the_plan_span_and_the_agent_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result = await make_agent([{"missing_capability": "no tool sends email"}], registry,
                              settings, traced.tracing).run("Email Bob the total")
    message = ("the planner says the goal needs a tool nobody provides: "
               "no tool sends email")
    assert result.error is not None and result.error.message == message
    spans = traced.spans()
    assert_failed(one(spans, "plan"), "missing_capability", message)
    assert_failed(one(spans, "invoke_agent dagentic"), "missing_capability", message)


async def test_goal_not_met_is_on_the_agent_span(registry: ToolRegistry, settings: Settings,
                                                 traced: Traced) -> None:
    result = await make_agent(
        [{"steps": [echo("a", "north")]}, answer("The data is in [a].", ["a"]),
         {"passed": False, "reason": "it gives no total"}],
        registry, settings, traced.tracing).run(GOAL)
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


async def test_false_success_is_on_the_agent_span(registry: ToolRegistry, settings: Settings,
                                                  traced: Traced) -> None:
    await make_agent([{"steps": [echo("total", 40)]},
                      answer("The total is 42 [total].", ["total"], True)],
                     registry, settings, traced.tracing).run(GOAL)
    assert_failed(one(traced.spans(), "invoke_agent dagentic"), "false_success",
                  "verification: the answer states 42, which no step result shows")


async def test_the_step_budget_is_budget_exceeded_on_the_agent_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result = await make_agent([{"steps": [echo("a"), echo("b")]}], registry, settings,
                              traced.tracing, max_steps=1).run(GOAL)
    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert_failed(agent, "budget_exceeded", "step budget spent: 0 steps ran and the next "
                                            "plan has 2 (agent.max_steps is 1)")
    assert result.run_ids == []
    assert not [s for s in spans if s.name.startswith("run ")]
    assert one(spans, "plan").status.status_code is StatusCode.UNSET


async def test_the_token_budget_is_budget_exceeded_on_the_agent_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result = await make_agent([{"steps": [echo("a", 1)]}], registry, settings,
                              traced.tracing, max_tokens=50).run(GOAL)
    assert result.error is not None
    assert result.error.message.startswith("token budget spent: ")
    spans = traced.spans()
    agent = one(spans, "invoke_agent dagentic")
    assert_failed(agent, "budget_exceeded", result.error.message)
    chat = one(spans, "chat scripted")
    assert (agent.attributes["gen_ai.usage.input_tokens"],
            agent.attributes["gen_ai.usage.output_tokens"]) == (
        chat.attributes["gen_ai.usage.input_tokens"],
        chat.attributes["gen_ai.usage.output_tokens"])


# --------------------------------------------------------------------------- replans, chats


def replanning_agent(registry: ToolRegistry, settings: Settings, tracing: Tracing | None
                     ) -> Agent:
    first = {"steps": [echo("a", 1), {"id": "x", "tool": "test.fail", "args": {}}]}
    second = {"steps": [echo("a", 1), echo("b", 2)]}
    return make_agent([first, second, answer("It is 2 [b].", ["b"], True), PASS],
                      registry, settings, tracing)


async def test_a_replan_is_two_plan_spans_and_two_run_spans_under_the_agent_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
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
    assert [c.attributes["dagentic.purpose"] for c in chats] == [
        "plan", "plan", "answer", "verify"]
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    plan = {"steps": [echo("news", {"results": [1]}),
                      {"id": "enough", "check": {"criteria": "at least one result"},
                       "needs": ["news"]}]}
    result = await make_agent([plan, {"passed": True, "reason": "one result"},
                               answer("One [news].", ["news"]), PASS],
                              registry, settings, traced.tracing).run(GOAL)
    assert result.status is RunStatus.SUCCEEDED, result.error
    spans = traced.spans()
    check = step_span(spans, "enough")
    assert check.name == "check enough"
    judge = one(spans, "chat scripted", dagentic__purpose="judge")
    assert is_child(judge, check)
    assert judge.attributes["gen_ai.usage.input_tokens"] > 0


async def test_a_failing_model_call_is_an_error_chat_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    from runtime.models import ModelError

    await make_agent([ModelError("model: endpoint down")], registry, settings,
                     traced.tracing).run(GOAL)
    spans = traced.spans()
    chat = one(spans, "chat scripted")
    assert_failed(chat, "tool_error", "model: endpoint down")
    assert "gen_ai.usage.input_tokens" not in chat.attributes
    assert_failed(one(spans, "plan"), "tool_error", "model: endpoint down")
    assert_failed(one(spans, "invoke_agent dagentic"), "tool_error", "model: endpoint down")


async def test_a_failed_model_call_records_its_exception_once(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    # BUG: Metered._chat records the exception on the chat span (fail_span(span, exc)) and
    # re-raises; Tracing.span, which opened that span, records it a second time.
    from runtime.models import ModelError

    await make_agent([ModelError("model: endpoint down")], registry, settings,
                     traced.tracing).run(GOAL)
    spans = traced.spans()
    assert len(exceptions(one(spans, "plan"))) == 1
    chat = one(spans, "chat scripted")
    assert [e["exception.message"] for e in exceptions(chat)] == ["model: endpoint down"]


async def test_a_cancelled_agent_run_says_cancelled_on_its_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    # BUG: Agent.run only describes its span (_describe: dagentic.status, usage) when the
    # loop returns; a caller's cancellation leaves invoke_agent without dagentic.status, so
    # SpanMetrics counts the agent run as failed while its plan run counts as cancelled.
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
        (("dagentic.run.kind", "agent"), ("dagentic.status", "cancelled")): 1}


# --------------------------------------------------------------------------- foreach


async def test_foreach_items_are_spans_under_the_step_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result, spans = await run_one(registry, settings, traced, [
        {"id": "each", "tool": "test.echo", "foreach": ["x", "y", "z"],
         "args": {"value": "${{ item }}"}}])
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    result, spans = await run_one(registry, settings, traced, [
        {"id": "each", "tool": "test.sleep", "foreach": [0, "never"], "max_parallel": 1,
         "args": {"seconds": "${{ item }}"}}])
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


async def test_content_is_not_recorded_by_default(registry: ToolRegistry, settings: Settings,
                                                  traced: Traced) -> None:
    await replanning_agent(registry, settings, traced.tracing).run(GOAL)
    await executor(registry, settings, traced).run({"name": "p", "steps": [
        {"id": "each", "tool": "test.echo", "foreach": [1], "args": {"value": "${{ item }}"}}]})
    spans = traced.spans()
    assert len(spans) > 10
    for span in spans:
        assert not set(CONTENT_KEYS) & set(span.attributes or {}), span.name


async def test_content_is_recorded_when_asked(registry: ToolRegistry, settings: Settings,
                                              content_traced: Traced) -> None:
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
        "message": "boom", "retryable": False}
    assert "gen_ai.tool.call.result" not in failed.attributes
    chats = sorted(matching(spans, "chat scripted"), key=lambda s: s.start_time)
    assert len(chats) == 4
    for chat, call in zip(chats, result.model_calls, strict=True):
        sent = json.loads(chat.attributes["gen_ai.input.messages"])
        assert [m["role"] for m in sent] == ["system", "user"], call.purpose
        (reply,) = json.loads(chat.attributes["gen_ai.output.messages"])
        assert reply["role"] == "assistant"
    assert json.loads(json.loads(chats[0].attributes["gen_ai.output.messages"])[0]["content"]
                      )["steps"][1]["id"] == "x"
    assert GOAL in chats[0].attributes["gen_ai.input.messages"]


async def test_recorded_content_is_cut_to_the_limit(registry: ToolRegistry,
                                                    settings: Settings,
                                                    content_traced: Traced) -> None:
    from runtime.tracing import CONTENT_LIMIT

    await executor(registry, settings, content_traced).run(
        {"name": "p", "steps": [echo("big", "x" * (CONTENT_LIMIT * 2))]})
    span = step_span(content_traced.spans(), "big")
    for key in ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result"):
        assert span.attributes[key].endswith("…[cut]")
        assert len(span.attributes[key]) == CONTENT_LIMIT + len("…[cut]")


# --------------------------------------------------------------------------- other tracers


async def test_spans_of_another_tracer_in_a_tool_nest_under_the_step_span(
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    SDK_EXPORTER.clear()
    result, spans = await run_one(registry, settings, traced, [
        {"id": "in_loop", "tool": "probe.inner_async", "args": {"label": "async"}},
        {"id": "in_thread", "tool": "probe.inner_sync", "args": {"label": "sync"}}])
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
        registry: ToolRegistry, settings: Settings, traced: Traced) -> None:
    # BUG: FastTracer.start_span gives every span an empty TraceState (_NO_STATE) instead
    # of its parent's, as OpenTelemetry asks; a vendor's tracestate from an incoming request
    # is lost on dagentic's spans and on every span nested under them (in tools too).
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.span import TraceState

    state = TraceState([("vendor", "v1")])
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=state)
    SDK_EXPORTER.clear()
    with trace.use_span(NonRecordingSpan(remote)):
        await executor(registry, settings, traced).run({"name": "p", "steps": [
            {"id": "in_loop", "tool": "probe.inner_async", "args": {"label": "async"}}]})
    spans = traced.spans()
    run = one(spans, "run p")
    assert run.context.trace_id == 0xABC and run.parent.span_id == 0xDEF
    (inner,) = SDK_EXPORTER.get_finished_spans()
    assert is_child(inner, step_span(spans, "in_loop"))
    assert run.context.trace_state == state
    assert step_span(spans, "in_loop").context.trace_state == state
    assert inner.context.trace_state == state


async def test_a_foreign_sdk_provider_gets_the_spans_and_metrics_inline(
        registry: ToolRegistry, settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = SdkTracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    tracing = Tracing(provider, meters)
    try:
        result = await Executor(registry, settings=settings, tracing=tracing).run(
            {"name": "p", "steps": [echo("a", 1), {"id": "x", "tool": "test.fail",
                                                    "args": {}}]})
        # No flush: the SDK processor exported each span as it ended, and metrics with it.
        spans = list(exporter.get_finished_spans())
        run = one(spans, "run p")
        assert run.attributes["dagentic.run_id"] == result.run_id
        assert_failed(run, "tool_error", "step 'x' failed: boom")
        assert is_child(step_span(spans, "a"), run)
        assert_failed(step_span(spans, "x"), "tool_error", "boom")
        assert by_attributes(reader, "dagentic.runs") == {
            (("dagentic.run.kind", "plan"), ("dagentic.status", "failed")): 1}
        assert by_attributes(reader, "dagentic.step.duration", "count") == {
            (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "test.echo")): 1,
            (("dagentic.status", "failed"), ("gen_ai.tool.name", "test.fail")): 1}
        assert by_attributes(reader, "dagentic.failures") == {
            (("dagentic.failure_mode", "tool_error"), ("gen_ai.tool.name", "test.fail")): 1}

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

    from runtime import Executor, Settings, ToolRegistry, tool
    from runtime.tracing import tracing_from_settings

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
    done = subprocess.run([sys.executable, "-c", APP_SCRIPT, str(runs_dir)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
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
    (first,) = [r for r in read_spans(runs_dir / f"{out['before_run_id']}.jsonl")
                if r["name"] == "run in-app"]
    assert first["parent_id"] is None
    assert first["trace_id"] != out["trace_id"]
    assert (runs_dir / "metrics.jsonl").is_file()


async def test_exporter_none_means_no_tracing_and_no_files(registry: ToolRegistry,
                                                           tmp_path: Path) -> None:
    settings = blind_settings(runs_dir=tmp_path / "runs", tracing={"exporter": "none"})
    assert tracing_from_settings(settings) is None
    runner = Executor(registry, settings=settings)
    assert runner.tracing is None
    result = await runner.run({"name": "p", "steps": [echo("a", 1)]})
    assert result.status is RunStatus.SUCCEEDED
    agent = Agent(ScriptedModel([{"steps": [echo("a", 1)]}, answer("1 [a].", ["a"]), PASS]),
                  registry, settings=settings)
    assert agent.tracing is None
    assert (await agent.run(GOAL)).status is RunStatus.SUCCEEDED
    assert not (tmp_path / "runs").exists()


def jsonl_settings(tmp_path: Path) -> Settings:
    return blind_settings(runs_dir=tmp_path / "runs", tracing={"export_delay": 0.05})


async def test_an_agent_run_is_one_file_named_after_the_agent_run(
        registry: ToolRegistry, tmp_path: Path) -> None:
    settings = jsonl_settings(tmp_path)
    result = await replanning_agent(registry, settings, tracing_from_settings(settings)
                                    ).run(GOAL)
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    tracing.flush()
    runs_dir = tmp_path / "runs"
    path = runs_dir / f"{result.agent_run_id}.jsonl"
    assert run_files(runs_dir) == [path]
    records = list(read_spans(path))
    run_ids = [r["attributes"]["dagentic.run_id"] for r in records
               if r["name"].startswith("run ")]
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


async def test_two_concurrent_plan_runs_write_two_files(registry: ToolRegistry,
                                                        tmp_path: Path) -> None:
    settings = jsonl_settings(tmp_path)
    runner = Executor(registry, settings=settings)
    plan = {"name": "twin", "steps": [
        {"id": "a", "tool": "test.sleep", "args": {"seconds": 0.05}},
        {"id": "b", "tool": "test.sleep", "args": {"seconds": "${{ steps.a.output }}"}}]}

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
        registry: ToolRegistry, tmp_path: Path) -> None:
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


# --------------------------------------------------------------------------- metrics


async def test_metrics_are_derived_from_the_spans(registry: ToolRegistry, settings: Settings,
                                                  traced: Traced) -> None:
    await executor(registry, settings, traced).run({"name": "p", "steps": [
        echo("a", 1), echo("b", 2), {"id": "x", "tool": "test.fail", "args": {}},
        echo("after", "${{ steps.x.output }}"),
        {"id": "ok", "check": {"assert": "${{ steps.a.output == 1 }}"}}]})
    result = await replanning_agent(registry, settings, traced.tracing).run(GOAL)
    await make_agent([{"missing_capability": "email"}], registry, settings,
                     traced.tracing).run(GOAL)
    traced.tracing.flush()
    reader = traced.reader

    durations = by_attributes(reader, "dagentic.step.duration", "count")
    assert durations == {
        (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "test.echo")): 2 + 1 + 2,
        (("dagentic.status", "failed"), ("gen_ai.tool.name", "test.fail")): 2,
        (("dagentic.status", "skipped"), ("gen_ai.tool.name", "test.echo")): 1,
        (("dagentic.status", "succeeded"), ("gen_ai.tool.name", "check")): 1}
    sums = by_attributes(reader, "dagentic.step.duration", "sum")
    assert all(s >= 0 for s in sums.values())

    assert by_attributes(reader, "dagentic.failures") == {
        (("dagentic.failure_mode", "tool_error"), ("gen_ai.tool.name", "test.fail")): 2,
        (("dagentic.failure_mode", "upstream_failed"), ("gen_ai.tool.name", "test.echo")): 1,
        (("dagentic.failure_mode", "missing_capability"),): 1}
    assert by_attributes(reader, "dagentic.runs") == {
        (("dagentic.run.kind", "plan"), ("dagentic.status", "failed")): 2,
        (("dagentic.run.kind", "plan"), ("dagentic.status", "succeeded")): 1,
        (("dagentic.run.kind", "agent"), ("dagentic.status", "succeeded")): 1,
        (("dagentic.run.kind", "agent"), ("dagentic.status", "failed")): 1}
    (replans,) = points(reader, "dagentic.replans")
    assert replans.value == 1

    tokens = {dict(p.attributes)["gen_ai.token.type"]: p for p in
              points(reader, "gen_ai.client.token.usage")}
    assert set(tokens) == {"input", "output"}
    assert all(dict(p.attributes)["gen_ai.request.model"] == "scripted"
               for p in tokens.values())
    calls = result.model_calls
    assert tokens["input"].count == len(calls) + 1  # and the missing-capability plan call
    assert tokens["input"].sum >= sum(c.input_tokens for c in calls)
    assert tokens["output"].sum >= sum(c.output_tokens for c in calls)
    (duration,) = points(reader, "gen_ai.client.operation.duration")
    assert duration.count == len(calls) + 1


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
    with pytest.raises(ValueError, match="bad value"), \
            tracer.start_as_current_span("work", attributes={"k": 1}) as span:
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
    assert dict(exported.attributes) == {"good": "x", "list": (1, 2), "strings": ("a", "b"),
                                         "n": 2.5}
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
        "first", "left 0", "left 1", "left 2"]
    tracer.start_span("after shutdown").end()  # ignored, never raises
    provider.shutdown()  # twice is fine
    assert len(exporter.get_finished_spans()) == 4


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
        "before the fork", "the parent's, pending"]
