"""Behaviour of dagentic.Executor: scheduling, limits, timeouts, retries, conditions,
foreach, failure propagation, cancellation, failure modes, results and the journal.

Every test runs on asyncio and trio. Timing assertions use wide margins (the suite must
pass on a loaded two-core machine): they compare against what a wrong implementation
would take, not against tight expected durations.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pydantic
import pytest
from dagentic import (
    Executor,
    FailureMode,
    MemoryJournal,
    Plan,
    PlanError,
    Retry,
    RunResult,
    RunStatus,
    Settings,
    Step,
    StepStatus,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    tool,
)

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- helpers


class Gauge:
    """Counts the calls of a tool that are running at the same moment (thread-safe, so it
    measures sync tools in worker threads too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.calls = 0
        self.finished = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1
            self.finished += 1

    @asynccontextmanager
    async def holding(self) -> Any:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextmanager
    def holding_sync(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()


def gauge_tool(gauge: Gauge, *, name: str = "probe.gauge", **options: Any) -> Tool:
    @tool(name=name, side_effects="none", **options)
    async def hold(seconds: float = 0.05, value: Any = None) -> Any:
        """Hold a slot of the gauge for a while, then return `value`.

        Args:
            seconds: How long to hold it.
            value: What to return.
        """
        async with gauge.holding():
            await anyio.sleep(seconds)
        return value

    return hold


def sync_gauge_tool(gauge: Gauge, threads: list[int] | None = None) -> Tool:
    @tool(name="probe.block", side_effects="none")
    def block(seconds: float) -> float:
        """Sleep in a worker thread, checking for cancellation every 10 ms.

        Args:
            seconds: How long to sleep.
        """
        with gauge.holding_sync():
            if threads is not None:
                threads.append(threading.get_ident())
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                anyio.from_thread.check_cancelled()
                time.sleep(0.01)
        return seconds

    return block


def registry(tools: ToolRegistry, *extra: Tool) -> ToolRegistry:
    """The fixture's tools plus tools made for one test."""
    return ToolRegistry([*tools, *extra])


def tuned(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


def seconds_between(earlier: datetime | None, later: datetime | None) -> float:
    assert earlier is not None
    assert later is not None
    return (later - earlier).total_seconds()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


def attempted(journal: MemoryJournal, *step_ids: str) -> Callable[[], bool]:
    """True once every step in ``step_ids`` has begun an attempt."""
    return lambda: all("attempt" in journal.kinds(sid) for sid in step_ids)


# --------------------------------------------------------------------------- scheduling


async def test_step_starts_when_its_own_dependencies_finish_not_when_its_level_does(
    tools: ToolRegistry, settings: Settings
) -> None:
    journal = MemoryJournal()
    executor = Executor(tools, settings=settings, journal=journal)
    result = await executor.run("""
name: ready-queue
steps:
  - {id: a, tool: test.sleep, args: {seconds: 0.05}}
  - {id: b, tool: test.sleep, args: {seconds: 0.01}, needs: [a]}
  - {id: c, tool: test.sleep, args: {seconds: 0.6}}
""")
    assert result.status is RunStatus.SUCCEEDED
    a, b, c = (result.steps[s] for s in "abc")
    # b is on the same "level" as nothing but a; level scheduling would start it after c.
    assert seconds_between(a.finished_at, b.started_at) < 0.25
    assert seconds_between(b.finished_at, c.finished_at) > 0.2
    events = [(e.kind, e.step_id) for e in journal.events]
    assert events.index(("finished", "b")) < events.index(("finished", "c"))


async def test_independent_steps_run_in_parallel(tools: ToolRegistry, settings: Settings) -> None:
    plan = {
        "name": "fan",
        "steps": [
            {"id": f"s{i}", "tool": "test.sleep", "args": {"seconds": 0.2}} for i in range(10)
        ],
    }
    started = time.perf_counter()
    result = await Executor(tools, settings=settings).run(plan)
    elapsed = time.perf_counter() - started

    assert result.status is RunStatus.SUCCEEDED
    assert elapsed < 1.0  # one after another would take 2 s
    steps = list(result.steps.values())
    assert max(s.started_at for s in steps) < min(s.finished_at for s in steps)


async def test_concurrency_setting_caps_the_steps_running_at_once(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    plan = {
        "name": "capped",
        "steps": [
            {"id": f"s{i}", "tool": "probe.gauge", "args": {"seconds": 0.05}} for i in range(6)
        ],
    }
    executor = Executor(registry(tools, gauge_tool(gauge)), settings=tuned(settings, concurrency=2))
    result = await executor.run(plan)

    assert result.status is RunStatus.SUCCEEDED
    assert gauge.calls == 6
    assert gauge.peak == 2


async def test_tool_concurrency_setting_caps_calls_of_that_tool_only(
    tools: ToolRegistry, settings: Settings
) -> None:
    limited, free = Gauge(), Gauge()
    steps = [{"id": f"l{i}", "tool": "probe.limited", "args": {"seconds": 0.05}} for i in range(4)]
    steps += [{"id": f"f{i}", "tool": "probe.free", "args": {"seconds": 0.2}} for i in range(3)]
    executor = Executor(
        registry(
            tools, gauge_tool(limited, name="probe.limited"), gauge_tool(free, name="probe.free")
        ),
        settings=tuned(settings, tool_concurrency={"probe.limited": 1}),
    )
    result = await executor.run({"name": "per-tool", "steps": steps})

    assert result.status is RunStatus.SUCCEEDED
    assert (limited.calls, limited.peak) == (4, 1)
    assert (free.calls, free.peak) == (3, 3)


async def test_tool_concurrency_setting_serialises_test_sleep(
    tools: ToolRegistry, settings: Settings
) -> None:
    plan = {
        "name": "serial",
        "steps": [
            {"id": f"s{i}", "tool": "test.sleep", "args": {"seconds": 0.1}} for i in range(3)
        ],
    }
    executor = Executor(tools, settings=tuned(settings, tool_concurrency={"test.sleep": 1}))
    result = await executor.run(plan)

    assert result.status is RunStatus.SUCCEEDED
    assert result.usage.wall_time >= 0.28  # three 0.1 s sleeps, one at a time


async def test_tool_max_concurrency_caps_calls_across_steps_and_foreach_items(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    executor = Executor(registry(tools, gauge_tool(gauge, max_concurrency=2)), settings=settings)
    result = await executor.run("""
name: tool-limit
steps:
  - id: many
    tool: probe.gauge
    foreach: [1, 2, 3, 4, 5, 6]
    max_parallel: 6
    args: {seconds: 0.05, value: "${{ item }}"}
  - {id: one, tool: probe.gauge, args: {seconds: 0.05}}
  - {id: two, tool: probe.gauge, args: {seconds: 0.05}}
""")
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["many"].output == [1, 2, 3, 4, 5, 6]
    assert (gauge.calls, gauge.peak) == (8, 2)


async def test_tool_max_concurrency_holds_across_runs_of_one_executor(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    executor = Executor(registry(tools, gauge_tool(gauge, max_concurrency=1)), settings=settings)
    plan = executor.compile("""
name: shared-limit
steps:
  - {id: one, tool: probe.gauge, args: {seconds: 0.1}}
  - {id: two, tool: probe.gauge, args: {seconds: 0.1}}
""")
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(executor.run, plan)

    assert gauge.calls == 6
    # The tool says it can take one call at a time, however many runs want it.
    assert gauge.peak == 1


async def test_waiting_for_a_tool_slot_does_not_count_against_the_step_timeout(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    plan = {
        "name": "queued",
        "steps": [
            {"id": f"s{i}", "tool": "probe.gauge", "args": {"seconds": 0.1}, "timeout": 0.3}
            for i in range(5)
        ],
    }
    executor = Executor(
        registry(tools, gauge_tool(gauge)),
        settings=tuned(settings, tool_concurrency={"probe.gauge": 1}),
    )
    result = await executor.run(plan)

    # Each call takes 0.1 s, well inside its 0.3 s deadline; the last one waits 0.4 s
    # for the tool's only slot before it starts.
    assert [s.status for s in result.steps.values()] == [StepStatus.SUCCEEDED] * 5, [
        s.error.message for s in result.steps.values() if s.error
    ]
    assert gauge.peak == 1


# --------------------------------------------------------------------------- timeouts


async def test_step_timeout_fails_the_step_with_failure_mode_timeout(
    tools: ToolRegistry, settings: Settings
) -> None:
    started = time.perf_counter()
    result = await Executor(tools, settings=settings).run("""
name: slow
steps:
  - {id: slow, tool: test.sleep, args: {seconds: 5}, timeout: 100ms}
""")
    assert time.perf_counter() - started < 2.0
    step = result.steps["slow"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TIMEOUT
    assert step.error.message == "step 'slow': tool 'test.sleep' did not finish within 0.1s"
    assert step.error.type == "StepTimeoutError"
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.failure_mode is FailureMode.TIMEOUT


@pytest.mark.parametrize(
    ("step_timeout", "tool_timeout", "default_timeout", "expected"),
    [
        (0.1, 30.0, 30.0, "0.1s"),  # the step's own timeout wins
        (None, 0.15, 30.0, "0.15s"),  # then the tool's
        (None, None, 0.2, "0.2s"),  # then the settings' default
    ],
)
async def test_timeout_comes_from_step_then_tool_then_settings(
    tools: ToolRegistry,
    settings: Settings,
    step_timeout: float | None,
    tool_timeout: float | None,
    default_timeout: float,
    expected: str,
) -> None:
    gauge = Gauge()
    step: dict[str, Any] = {"id": "s", "tool": "probe.gauge", "args": {"seconds": 5}}
    if step_timeout is not None:
        step["timeout"] = step_timeout
    executor = Executor(
        registry(tools, gauge_tool(gauge, timeout=tool_timeout)),
        settings=tuned(settings, default_timeout=default_timeout),
    )
    result = await executor.run({"name": "deadlines", "steps": [step]})

    error = result.steps["s"].error
    assert error is not None
    assert error.failure_mode is FailureMode.TIMEOUT
    assert error.message == f"step 's': tool 'probe.gauge' did not finish within {expected}"


async def test_run_timeout_fails_the_run_and_cancels_its_running_steps(
    tools: ToolRegistry, settings: Settings
) -> None:
    started = time.perf_counter()
    result = await Executor(tools, settings=settings).run(
        """
name: late
steps:
  - {id: quick, tool: test.echo, args: {value: 1}}
  - {id: slow, tool: test.sleep, args: {seconds: 5}}
""",
        timeout=0.2,
    )
    assert time.perf_counter() - started < 2.0
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.failure_mode is FailureMode.TIMEOUT
    assert result.error.message == "the run's deadline of 0.2s passed"
    assert result.steps["quick"].status is StepStatus.SUCCEEDED
    slow = result.steps["slow"]
    assert slow.status is StepStatus.CANCELLED
    assert slow.error is not None
    assert slow.error.failure_mode is FailureMode.TIMEOUT


async def test_run_timeout_cancels_steps_still_waiting_for_a_running_step(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run(
        """
name: late-chain
steps:
  - {id: slow, tool: test.sleep, args: {seconds: 5}}
  - {id: after, tool: test.echo, args: {value: "${{ steps.slow.output }}"}}
""",
        timeout=0.2,
    )
    assert result.status is RunStatus.FAILED
    after = result.steps["after"]
    # It never ran because the run's deadline passed, not because 'slow' failed.
    assert after.status is StepStatus.CANCELLED, after.error
    assert after.error is not None
    assert after.error.failure_mode is FailureMode.TIMEOUT


async def test_run_that_finishes_before_its_deadline_succeeds(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run(
        """
name: in-time
steps:
  - {id: a, tool: test.sleep, args: {seconds: 0.01}}
""",
        timeout=5,
    )
    assert result.status is RunStatus.SUCCEEDED
    assert result.error is None


# --------------------------------------------------------------------------- retries


class Flaky:
    """A tool that fails its first ``failures`` calls in a chosen way, then returns."""

    def __init__(
        self, failures: int, exc: Callable[[], Exception] | None = None, hang: bool = False
    ) -> None:
        self.failures = failures
        self.exc = exc
        self.hang = hang
        self.calls: list[float] = []

    def tool(self, **options: Any) -> Tool:
        @tool(name="probe.flaky", side_effects="none", **options)
        async def flaky() -> str:
            """Fail a few times, then succeed."""
            self.calls.append(time.perf_counter())
            if len(self.calls) <= self.failures:
                if self.hang:
                    await anyio.sleep(10)
                assert self.exc is not None
                raise self.exc()
            return f"ok on call {len(self.calls)}"

        return flaky


FLAKY_PLAN = """
name: flaky
steps:
  - id: f
    tool: probe.flaky
    timeout: 100ms
    retry: {attempts: 5, backoff: 10ms}
"""


async def test_retryable_tool_error_is_retried_until_it_succeeds(
    tools: ToolRegistry, settings: Settings
) -> None:
    flaky = Flaky(2, lambda: ToolError("try again", retryable=True))
    result = await Executor(registry(tools, flaky.tool()), settings=settings).run(FLAKY_PLAN)

    step = result.steps["f"]
    assert step.status is StepStatus.SUCCEEDED
    assert step.output == "ok on call 3"
    assert step.attempts == 3
    assert len(flaky.calls) == 3
    assert result.usage.tool_calls == 3


async def test_tool_error_that_is_not_retryable_is_not_retried(
    tools: ToolRegistry, settings: Settings
) -> None:
    flaky = Flaky(2, lambda: ToolError("permanent", retryable=False))
    result = await Executor(registry(tools, flaky.tool()), settings=settings).run(FLAKY_PLAN)

    step = result.steps["f"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.message == "permanent"
    assert step.attempts == 1
    assert len(flaky.calls) == 1


async def test_invalid_args_are_never_retried(tools: ToolRegistry, settings: Settings) -> None:
    calls: list[int] = []

    @tool(name="probe.count", side_effects="none")
    async def count(n: int) -> int:
        """Record n.

        Args:
            n: A number.
        """
        calls.append(n)
        return n

    result = await Executor(registry(tools, count), settings=settings).run(
        {
            "name": "bad-args",
            "steps": [
                {"id": "text", "tool": "test.echo", "args": {"value": "three"}},
                {
                    "id": "use",
                    "tool": "probe.count",
                    "args": {"n": "${{ steps.text.output }}"},
                    "retry": {"attempts": 5, "backoff": 0.01, "on": ["invalid_args", "tool_error"]},
                },
            ],
        }
    )
    step = result.steps["use"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.INVALID_ARGS
    assert step.attempts <= 1
    assert calls == []


async def test_retry_on_in_a_yaml_plan_lists_failure_modes(
    tools: ToolRegistry, settings: Settings
) -> None:
    # `on` is a YAML 1.1 boolean; a plan file must still be able to say `on: [...]`.
    flaky = Flaky(1, lambda: ToolError("try again", retryable=True))
    result = await Executor(registry(tools, flaky.tool()), settings=settings).run("""
name: retry-on
steps:
  - id: f
    tool: probe.flaky
    retry: {attempts: 3, backoff: 10ms, on: [tool_error]}
""")
    assert result.steps["f"].status is StepStatus.SUCCEEDED
    assert result.steps["f"].attempts == 2


async def test_step_timeouts_are_retried(tools: ToolRegistry, settings: Settings) -> None:
    flaky = Flaky(2, hang=True)
    result = await Executor(registry(tools, flaky.tool()), settings=settings).run(FLAKY_PLAN)

    step = result.steps["f"]
    assert step.status is StepStatus.SUCCEEDED, step.error
    assert step.output == "ok on call 3"
    assert step.attempts == 3


async def test_backoff_between_attempts_grows(tools: ToolRegistry, settings: Settings) -> None:
    flaky = Flaky(10, lambda: ToolError("again", retryable=True))
    result = await Executor(registry(tools, flaky.tool()), settings=settings).run("""
name: backoff
steps:
  - id: f
    tool: probe.flaky
    retry: {attempts: 4, backoff: 100ms}
""")
    assert result.steps["f"].status is StepStatus.FAILED
    assert result.steps["f"].attempts == 4
    gaps = [later - earlier for earlier, later in zip(flaky.calls, flaky.calls[1:], strict=False)]
    # Delays are 0.1 s, 0.2 s, 0.4 s with up to half taken off by jitter.
    assert len(gaps) == 3
    assert gaps[0] >= 0.05 - 0.01
    assert gaps[1] >= 0.10 - 0.01
    assert gaps[2] >= 0.20 - 0.01
    assert gaps[2] > gaps[0]


@pytest.mark.parametrize(("idempotent", "calls"), [(True, 3), (False, 1)])
async def test_plain_exception_is_retried_only_for_idempotent_tools(
    tools: ToolRegistry, settings: Settings, idempotent: bool, calls: int
) -> None:
    flaky = Flaky(10, lambda: RuntimeError("half done"))
    result = await Executor(
        registry(tools, flaky.tool(idempotent=idempotent)), settings=settings
    ).run("""
name: side-effects
steps:
  - {id: f, tool: probe.flaky, retry: {attempts: 3, backoff: 10ms}}
""")
    step = result.steps["f"]
    assert step.status is StepStatus.FAILED
    assert step.attempts == calls
    assert len(flaky.calls) == calls


async def test_non_idempotent_tool_is_retried_when_its_error_says_retryable(
    tools: ToolRegistry, settings: Settings
) -> None:
    flaky = Flaky(1, lambda: ToolError("nothing was written", retryable=True))
    result = await Executor(registry(tools, flaky.tool(idempotent=False)), settings=settings).run(
        FLAKY_PLAN
    )
    assert result.steps["f"].status is StepStatus.SUCCEEDED
    assert result.steps["f"].attempts == 2


# --------------------------------------------------------------------------- when


async def test_false_when_skips_the_step_and_its_dependents_without_a_failure_mode(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: conditional
steps:
  - {id: flag, tool: test.echo, args: {value: false}}
  - {id: maybe, tool: test.echo, args: {value: 1}, when: "${{ steps.flag.output }}"}
  - {id: after, tool: test.echo, args: {value: "${{ steps.maybe.output }}"}}
  - {id: later, tool: test.echo, args: {value: "${{ steps.after.output }}"}}
""")
    assert result.status is RunStatus.SUCCEEDED
    assert result.error is None
    for sid in ("maybe", "after", "later"):
        step = result.steps[sid]
        assert step.status is StepStatus.SKIPPED, sid
        assert step.error is None, sid
        assert step.output is None, sid
    assert result.steps["after"].started_at is None


async def test_true_when_runs_the_step(tools: ToolRegistry, settings: Settings) -> None:
    result = await Executor(tools, settings=settings).run("""
name: conditional
inputs: {go: {type: boolean, default: true}}
steps:
  - {id: maybe, tool: test.echo, args: {value: 1}, when: "${{ inputs.go }}"}
""")
    assert result.steps["maybe"].status is StepStatus.SUCCEEDED
    assert result.steps["maybe"].output == 1


async def test_dependent_with_run_if_skipped_runs_and_sees_null_output(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: opt-in
steps:
  - {id: maybe, tool: test.echo, args: {value: 1}, when: false}
  - id: anyway
    tool: test.echo
    args: {value: "${{ steps.maybe.output }}"}
    run_if_skipped: true
""")
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["maybe"].status is StepStatus.SKIPPED
    anyway = result.steps["anyway"]
    assert anyway.status is StepStatus.SUCCEEDED
    assert anyway.output is None


async def test_default_gives_the_fallback_for_a_skipped_steps_output(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: defaults
steps:
  - {id: maybe, tool: test.echo, args: {value: {name: Ada}}, when: false}
  - id: greet
    tool: test.echo
    args: {value: "Hello, ${{ default(steps.maybe.output.name, 'stranger') }}"}
    run_if_skipped: true
outputs:
  name: "${{ default(steps.maybe.output.name, 'nobody') }}"
""")
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["greet"].output == "Hello, stranger"
    assert result.outputs == {"name": "nobody"}


# --------------------------------------------------------------------------- foreach


async def test_foreach_results_keep_input_order_when_items_finish_in_reverse(
    tools: ToolRegistry, settings: Settings
) -> None:
    finished: list[float] = []

    @tool(name="probe.nap", side_effects="none")
    async def nap(seconds: float) -> float:
        """Sleep, then report the seconds slept.

        Args:
            seconds: How long to sleep.
        """
        await anyio.sleep(seconds)
        finished.append(seconds)
        return seconds

    result = await Executor(registry(tools, nap), settings=settings).run("""
name: ordered
steps:
  - {id: each, tool: probe.nap, foreach: [0.3, 0.2, 0.1, 0.0], args: {seconds: "${{ item }}"}}
""")
    assert finished == [0.0, 0.1, 0.2, 0.3]
    step = result.steps["each"]
    assert step.status is StepStatus.SUCCEEDED
    assert step.output == [0.3, 0.2, 0.1, 0.0]
    assert step.attempts == 4
    assert result.usage.tool_calls == 4


async def test_foreach_runs_items_in_parallel_up_to_max_parallel(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    result = await Executor(registry(tools, gauge_tool(gauge)), settings=settings).run("""
name: bounded
steps:
  - id: each
    tool: probe.gauge
    foreach: "${{ [1, 2, 3, 4, 5, 6, 7, 8] }}"
    max_parallel: 3
    args: {seconds: 0.05, value: "${{ item * 10 }}"}
""")
    assert result.steps["each"].output == [10, 20, 30, 40, 50, 60, 70, 80]
    assert (gauge.calls, gauge.peak) == (8, 3)


async def test_foreach_width_defaults_to_the_foreach_concurrency_setting(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    executor = Executor(
        registry(tools, gauge_tool(gauge)), settings=tuned(settings, foreach_concurrency=2)
    )
    result = await executor.run("""
name: bounded
steps:
  - {id: each, tool: probe.gauge, foreach: [1, 2, 3, 4, 5], args: {value: "${{ item }}"}}
""")
    assert result.steps["each"].output == [1, 2, 3, 4, 5]
    assert gauge.peak == 2


async def test_foreach_over_an_empty_list_gives_an_empty_list(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: nothing
steps:
  - {id: items, tool: test.echo, args: {value: []}}
  - {id: each, tool: test.fail, foreach: "${{ steps.items.output }}"}
""")
    step = result.steps["each"]
    assert step.status is StepStatus.SUCCEEDED
    assert step.output == []
    assert result.status is RunStatus.SUCCEEDED


async def test_foreach_over_a_non_list_fails_with_a_clear_message(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: not-a-list
steps:
  - {id: items, tool: test.echo, args: {value: just one}}
  - {id: each, tool: test.echo, foreach: "${{ steps.items.output }}", args: {value: "${{ item }}"}}
""")
    step = result.steps["each"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.message == "step 'each': foreach must give a list, got string"
    assert step.attempts == 0


async def test_one_failing_foreach_item_fails_the_step_naming_the_item_index(
    tools: ToolRegistry, settings: Settings
) -> None:
    @tool(name="probe.picky", side_effects="none")
    async def picky(value: int) -> int:
        """Refuse the number 3.

        Args:
            value: A number.
        """
        if value == 3:
            raise ToolError(f"cannot take {value}")
        return value

    result = await Executor(registry(tools, picky), settings=settings).run("""
name: one-bad
steps:
  - {id: each, tool: probe.picky, foreach: [1, 2, 3, 4], args: {value: "${{ item }}"}}
""")
    step = result.steps["each"]
    assert step.status is StepStatus.FAILED
    assert step.output is None
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    assert step.error.message == "item 2: cannot take 3"
    assert result.error is not None
    assert result.error.message == "step 'each' failed: item 2: cannot take 3"


async def test_failed_foreach_item_reports_the_type_of_the_items_error(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: item-types
steps:
  - {id: fails, tool: test.fail, foreach: [1], args: {message: "no ${{ item }}"}}
  - {id: crashes, tool: test.crash, foreach: [1], args: {message: "bug ${{ item }}"}}
""")
    fails, crashes = result.steps["fails"].error, result.steps["crashes"].error
    assert fails is not None
    assert crashes is not None
    assert (fails.message, crashes.message) == ("item 0: no 1", "item 0: bug 1")
    # What the item raised, as for a step without foreach; not an internal wrapper class.
    assert (fails.type, crashes.type) == ("ToolError", "RuntimeError")


async def test_foreach_item_keeps_its_failure_mode(tools: ToolRegistry, settings: Settings) -> None:
    result = await Executor(tools, settings=settings).run("""
name: slow-item
steps:
  - {id: each, tool: test.sleep, foreach: [0.01, 5], args: {seconds: "${{ item }}"}, timeout: 0.2}
""")
    error = result.steps["each"].error
    assert error is not None
    assert error.failure_mode is FailureMode.TIMEOUT
    assert error.message == "step 'each': item 1: tool 'test.sleep' did not finish within 0.2s"


# --------------------------------------------------------------------------- failure propagation


async def test_dependents_of_a_failed_step_are_skipped_as_upstream_failed(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: broken-branch
steps:
  - {id: bad, tool: test.fail, args: {message: boom}}
  - {id: child, tool: test.echo, args: {value: "${{ steps.bad.output }}"}}
  - {id: grandchild, tool: test.echo, needs: [child]}
  - {id: other, tool: test.sleep, args: {seconds: 0.1, value: fine}}
  - {id: other_child, tool: test.echo, args: {value: "${{ steps.other.output }}"}}
""")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.failure_mode is FailureMode.TOOL_ERROR
    assert result.error.message == "step 'bad' failed: boom"
    child, grandchild = result.steps["child"], result.steps["grandchild"]
    assert child.status is grandchild.status is StepStatus.SKIPPED
    assert child.error is not None
    assert grandchild.error is not None
    assert child.error.failure_mode is FailureMode.UPSTREAM_FAILED
    assert child.error.message == "skipped because step 'bad' failed"
    assert grandchild.error.failure_mode is FailureMode.UPSTREAM_FAILED
    assert grandchild.error.message == "skipped because step 'child' was skipped after a failure"
    assert result.steps["other"].status is StepStatus.SUCCEEDED
    assert result.steps["other_child"].output == "fine"
    assert [s.id for s in result.failures()] == ["bad"]


async def test_fail_fast_cancels_running_siblings_and_fails_the_run(
    tools: ToolRegistry, settings: Settings
) -> None:
    started = time.perf_counter()
    result = await Executor(tools, settings=settings, fail_fast=True).run("""
name: fail-fast
steps:
  - {id: slow, tool: test.sleep, args: {seconds: 5}}
  - {id: waiting, tool: test.echo, args: {value: "${{ steps.slow.output }}"}}
  - {id: bad, tool: test.fail, args: {message: boom}, needs: [warmup]}
  - {id: warmup, tool: test.sleep, args: {seconds: 0.05}}
""")
    assert time.perf_counter() - started < 2.0
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.message == "step 'bad' failed: boom"
    slow = result.steps["slow"]
    assert slow.status is StepStatus.CANCELLED
    assert slow.error is not None
    assert slow.error.failure_mode is FailureMode.CANCELLED
    assert slow.error.message == "cancelled: step 'bad' failed and fail_fast is on"
    assert result.steps["waiting"].status is StepStatus.CANCELLED
    assert result.steps["waiting"].started_at is None


async def test_without_fail_fast_siblings_of_a_failed_step_finish(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings, fail_fast=False).run("""
name: keep-going
steps:
  - {id: slow, tool: test.sleep, args: {seconds: 0.2, value: done}}
  - {id: bad, tool: test.fail}
""")
    assert result.status is RunStatus.FAILED
    assert result.steps["slow"].output == "done"


# --------------------------------------------------------------------------- cancellation


async def test_cancel_returns_promptly_with_every_running_step_cancelled(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    journal = MemoryJournal()
    executor = Executor(
        registry(tools, gauge_tool(gauge), sync_gauge_tool(gauge)),
        settings=settings,
        journal=journal,
    )
    plan = """
name: cancel-me
steps:
  - {id: nap, tool: probe.gauge, args: {seconds: 10}}
  - {id: block, tool: probe.block, args: {seconds: 10}}
  - {id: sleep, tool: test.sleep, args: {seconds: 10}}
  - {id: after, tool: test.echo, args: {value: "${{ steps.nap.output }}"}}
"""
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await executor.run(plan))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await wait_until(attempted(journal, "nap", "block", "sleep"))
        cancelled_at = time.perf_counter()
        executor.cancel()
    assert time.perf_counter() - cancelled_at < 2.0

    [result] = results
    assert result.status is RunStatus.CANCELLED
    assert result.error is not None
    assert result.error.failure_mode is FailureMode.CANCELLED
    assert result.error.message == "the run was cancelled"
    for sid in ("nap", "block", "sleep", "after"):
        step = result.steps[sid]
        assert step.status is StepStatus.CANCELLED, sid
        assert step.error is not None, sid
        assert step.error.failure_mode is FailureMode.CANCELLED, sid
    assert result.steps["after"].started_at is None
    assert gauge.now == 0  # no tool call, async or in a thread, outlives the run
    assert gauge.finished == gauge.calls == 2
    recorded = len(journal.events)
    await anyio.sleep(0.1)
    assert len(journal.events) == recorded  # nothing of the run is still going on
    assert journal.events[-1].kind == "run_finished"


async def test_cancel_by_run_id_leaves_other_runs_alone(
    tools: ToolRegistry, settings: Settings
) -> None:
    journal = MemoryJournal()
    executor = Executor(tools, settings=settings, journal=journal)
    plan = """
name: twins
steps:
  - {id: nap, tool: test.sleep, args: {seconds: 0.5, value: done}}
"""
    results: dict[str, RunResult] = {}

    async def run(run_id: str) -> None:
        results[run_id] = await executor.run(plan, run_id=run_id)

    async with anyio.create_task_group() as group:
        group.start_soon(run, "keep")
        group.start_soon(run, "drop")
        await wait_until(lambda: sum(e.kind == "attempt" for e in journal.events) == 2)
        executor.cancel("drop")

    assert results["drop"].status is RunStatus.CANCELLED
    assert results["keep"].status is RunStatus.SUCCEEDED
    assert results["keep"].steps["nap"].output == "done"


async def test_cancelling_the_callers_scope_cancels_the_run_promptly(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    executor = Executor(
        registry(tools, gauge_tool(gauge), sync_gauge_tool(gauge)), settings=settings
    )
    started = time.perf_counter()
    with anyio.move_on_after(0.3) as scope:
        await executor.run("""
name: abandoned
steps:
  - {id: nap, tool: probe.gauge, args: {seconds: 10}}
  - {id: block, tool: probe.block, args: {seconds: 10}}
  - {id: sync, tool: test.sync_sleep, args: {seconds: 10}}
""")
    assert scope.cancelled_caught
    assert time.perf_counter() - started < 2.5
    # Both tool calls began and none is still running, in a thread or on the loop.
    assert gauge.calls == 2
    assert gauge.now == 0
    assert gauge.finished == 2


async def test_cancelled_sync_tool_leaves_no_thread_running_it(
    tools: ToolRegistry, settings: Settings
) -> None:
    # Worker threads are pooled (they idle after a call), so counting threads says
    # little; what matters is that no thread is still inside tool code.
    gauge = Gauge()
    threads: list[int] = []
    executor = Executor(registry(tools, sync_gauge_tool(gauge, threads)), settings=settings)
    before = threading.active_count()
    with anyio.move_on_after(0.2):
        await executor.run("""
name: threads
steps:
  - {id: b0, tool: probe.block, args: {seconds: 10}}
  - {id: b1, tool: probe.block, args: {seconds: 10}}
  - {id: b2, tool: probe.block, args: {seconds: 10}}
""")
    assert len(threads) == 3
    assert threading.get_ident() not in threads
    assert gauge.now == 0
    # At most one idle pooled thread per call may linger; none runs our code.
    assert threading.active_count() <= before + 3


async def test_sync_tool_runs_in_a_worker_thread_without_blocking_the_loop(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    threads: list[int] = []
    executor = Executor(registry(tools, sync_gauge_tool(gauge, threads)), settings=settings)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat)
        result = await executor.run("""
name: sync
steps:
  - {id: block, tool: probe.block, args: {seconds: 0.4}}
""")
        group.cancel_scope.cancel()

    assert result.steps["block"].status is StepStatus.SUCCEEDED
    assert result.steps["block"].output == 0.4
    assert threads != [threading.get_ident()]
    assert ticks >= 10  # ~40 expected; a blocked loop would tick once or twice


# --------------------------------------------------------------------------- failure modes


async def test_invalid_args_when_a_resolved_value_does_not_fit_the_schema(
    tools: ToolRegistry, settings: Settings
) -> None:
    @tool(name="probe.repeat", side_effects="none")
    async def repeat(text: str, times: int) -> str:
        """Repeat a text.

        Args:
            text: What to repeat.
            times: How often.
        """
        return text * times

    result = await Executor(registry(tools, repeat), settings=settings).run("""
name: bad-int
steps:
  - {id: word, tool: test.echo, args: {value: many}}
  - {id: rep, tool: probe.repeat, args: {text: ab, times: "${{ steps.word.output }}"}}
""")
    error = result.steps["rep"].error
    assert result.steps["rep"].status is StepStatus.FAILED
    assert error is not None
    assert error.failure_mode is FailureMode.INVALID_ARGS
    assert error.type == "InvalidArgsError"
    assert error.message == (
        "step 'rep': tool 'probe.repeat' rejected its arguments: times: Input should be a "
        "valid integer, unable to parse string as an integer (got 'many')"
    )


@pytest.mark.parametrize(
    ("tool_name", "message", "error_type"),
    [
        ("test.fail", "it broke", "ToolError"),
        ("test.crash", "it broke", "RuntimeError"),
    ],
)
async def test_tool_error_when_tool_code_raises(
    tools: ToolRegistry, settings: Settings, tool_name: str, message: str, error_type: str
) -> None:
    result = await Executor(tools, settings=settings).run(f"""
name: raising
steps:
  - {{id: t, tool: {tool_name}, args: {{message: {message}}}}}
""")
    step = result.steps["t"]
    assert step.status is StepStatus.FAILED
    assert step.attempts == 1
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    assert step.error.message == message
    assert step.error.type == error_type


async def test_policy_blocked_when_approval_is_required_and_no_approver_nor_journal(
    tools: ToolRegistry, settings: Settings
) -> None:
    # With a durable journal the step would wait instead (tests/runtime/test_durable.py).
    gauge = Gauge()
    executor = Executor(registry(tools, gauge_tool(gauge)), settings=settings, journal=None)
    result = await executor.run("""
name: approval
steps:
  - {id: risky, tool: probe.gauge, approval: required}
""")
    error = result.steps["risky"].error
    assert error is not None
    assert error.failure_mode is FailureMode.POLICY_BLOCKED
    assert error.message == (
        "step 'risky' requires approval and no approver is configured "
        "(CLI: --yes approves every step)"
    )
    assert gauge.calls == 0


async def test_policy_blocked_when_the_approver_refuses(
    tools: ToolRegistry, settings: Settings
) -> None:
    gauge = Gauge()
    asked: list[tuple[str, str, dict[str, Any]]] = []

    async def approver(step_id: str, tool: Tool, args: dict[str, Any]) -> bool:
        asked.append((step_id, tool.name, args))
        return step_id == "allowed"

    result = await Executor(
        registry(tools, gauge_tool(gauge)), settings=settings, approver=approver
    ).run("""
name: approval
steps:
  - {id: base, tool: test.echo, args: {value: 7}}
  - {id: risky, tool: probe.gauge, approval: required, args: {value: "${{ steps.base.output }}"}}
  - {id: allowed, tool: probe.gauge, approval: required, args: {value: 8}}
""")
    error = result.steps["risky"].error
    assert error is not None
    assert error.failure_mode is FailureMode.POLICY_BLOCKED
    assert error.message == "step 'risky': approval was denied"
    assert result.steps["allowed"].status is StepStatus.SUCCEEDED
    assert result.steps["allowed"].output == 8
    assert gauge.calls == 1
    # The approver sees the resolved arguments of the call it decides on.
    assert sorted(asked) == [
        ("allowed", "probe.gauge", {"seconds": 0.05, "value": 8}),
        ("risky", "probe.gauge", {"seconds": 0.05, "value": 7}),
    ]


async def test_policy_blocked_when_untrusted_data_flows_into_a_write_tool(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: injection
steps:
  - {id: page, tool: test.untrusted}
  - {id: save, tool: test.write, args: {text: "${{ steps.page.output.text }}"}}
""")
    save = result.steps["save"]
    assert save.status is StepStatus.FAILED
    assert save.output is None
    assert save.error is not None
    assert save.error.failure_mode is FailureMode.POLICY_BLOCKED
    assert save.error.message == (
        "step 'save': tool 'test.write' writes, and its arguments carry untrusted data from "
        "test.untrusted; set 'allow_untrusted: true' on the step if that is intended"
    )


async def test_allow_untrusted_lets_untrusted_data_into_a_write_tool(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: injection-ok
steps:
  - {id: page, tool: test.untrusted, args: {text: hi}}
  - id: save
    tool: test.write
    args: {text: "${{ steps.page.output.text }}"}
    allow_untrusted: true
""")
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["save"].output == {"written": "hi"}


async def test_trusted_data_flows_into_a_write_tool(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: trusted
steps:
  - {id: page, tool: test.echo, args: {value: hi}}
  - {id: save, tool: test.write, args: {text: "${{ steps.page.output }}"}}
""")
    assert result.steps["save"].output == {"written": "hi"}


CHECKED = """
name: checked
steps:
  - {{id: a, tool: test.echo, args: {{value: 1}}}}
  - {{id: slow, tool: test.sleep, args: {{seconds: {slow}, value: done}}}}
  - id: verify
    check: {{assert: "${{{{ steps.a.output == 2 }}}}", on_fail: {on_fail}}}
  - {{id: after, tool: test.echo, args: {{value: "${{{{ steps.verify.output }}}}"}}}}
"""


async def test_check_assert_false_with_abort_fails_the_run(
    tools: ToolRegistry, settings: Settings
) -> None:
    started = time.perf_counter()
    result = await Executor(tools, settings=settings).run(CHECKED.format(on_fail="abort", slow=5))
    assert time.perf_counter() - started < 2.0
    verify = result.steps["verify"]
    assert verify.status is StepStatus.FAILED
    assert verify.error is not None
    assert verify.error.failure_mode is FailureMode.CHECK_FAILED
    assert (
        verify.error.message == "step 'verify': check failed: assert steps.a.output == 2 is false"
    )
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.failure_mode is FailureMode.CHECK_FAILED
    assert result.replan_requested == []
    assert result.steps["slow"].status is StepStatus.CANCELLED
    assert result.steps["after"].status is StepStatus.CANCELLED
    assert result.steps["after"].started_at is None


async def test_check_abort_marks_the_steps_it_cancels_with_failure_mode_cancelled(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run(CHECKED.format(on_fail="abort", slow=5))
    slow = result.steps["slow"]
    assert slow.status is StepStatus.CANCELLED
    assert slow.error is not None
    # The check failed; 'slow' itself was only cancelled because of it.
    assert slow.error.failure_mode is FailureMode.CANCELLED, slow.error


async def test_check_assert_false_with_replan_requests_a_replan(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run(
        CHECKED.format(on_fail="replan", slow=0.1)
    )
    verify = result.steps["verify"]
    assert verify.status is StepStatus.FAILED
    assert verify.error is not None
    assert verify.error.failure_mode is FailureMode.CHECK_FAILED
    assert (
        verify.error.message == "step 'verify': check failed: assert steps.a.output == 2 is false"
    )
    assert result.replan_requested == ["verify"]
    assert result.status is RunStatus.FAILED
    assert result.steps["slow"].output == "done"  # replan does not stop the run
    after = result.steps["after"]
    assert after.status is StepStatus.SKIPPED
    assert after.error is not None
    assert after.error.failure_mode is FailureMode.UPSTREAM_FAILED


async def test_check_assert_false_with_continue_records_it_and_goes_on(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run(
        CHECKED.format(on_fail="continue", slow=0.01)
    )
    assert result.status is RunStatus.SUCCEEDED
    verify = result.steps["verify"]
    assert verify.status is StepStatus.SUCCEEDED
    expected = {"passed": False, "reasons": ["assert steps.a.output == 2 is false"]}
    assert verify.output == expected
    assert result.steps["after"].output == expected
    assert result.replan_requested == []


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def tool(self) -> Tool:
        @tool(name="probe.counter", side_effects="none")
        async def counter() -> int:
            """Return how often it has been called."""
            self.calls += 1
            return self.calls

        return counter


async def test_check_retry_reruns_the_checked_steps_until_the_assert_holds(
    tools: ToolRegistry, settings: Settings
) -> None:
    counter = Counter()
    result = await Executor(registry(tools, counter.tool()), settings=settings).run("""
name: retry-check
steps:
  - {id: count, tool: probe.counter}
  - id: verify
    check: {assert: "${{ steps.count.output >= 3 }}", on_fail: retry}
  - {id: after, tool: test.echo, args: {value: "${{ steps.count.output }}"}, needs: [verify]}
""")
    assert result.status is RunStatus.SUCCEEDED
    assert counter.calls == 3
    assert result.steps["count"].output == 3
    assert result.steps["verify"].output == {"passed": True}
    assert result.steps["verify"].attempts == 3
    assert result.steps["after"].output == 3


async def test_check_retry_gives_up_after_its_rounds(
    tools: ToolRegistry, settings: Settings
) -> None:
    counter = Counter()
    result = await Executor(registry(tools, counter.tool()), settings=settings).run("""
name: retry-check
steps:
  - {id: count, tool: probe.counter}
  - id: verify
    check: {assert: "${{ steps.count.output >= 10 }}", on_fail: retry}
    retry: 2
""")
    verify = result.steps["verify"]
    assert verify.status is StepStatus.FAILED
    assert verify.error is not None
    assert verify.error.failure_mode is FailureMode.CHECK_FAILED
    assert (
        verify.error.message
        == "step 'verify': check failed: assert steps.count.output >= 10 is false"
    )
    assert counter.calls == 2
    assert result.status is RunStatus.FAILED


async def test_check_that_holds_passes(tools: ToolRegistry, settings: Settings) -> None:
    result = await Executor(tools, settings=settings).run(
        CHECKED.format(on_fail="abort", slow=0.01).replace("== 2", "== 1")
    )
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["verify"].output == {"passed": True}


async def test_cancelled_is_the_failure_mode_of_steps_a_cancel_stops(
    tools: ToolRegistry, settings: Settings
) -> None:
    journal = MemoryJournal()
    executor = Executor(tools, settings=settings, journal=journal)
    results: list[RunResult] = []

    async def run() -> None:
        results.append(
            await executor.run("""
name: stop
steps:
  - {id: nap, tool: test.sleep, args: {seconds: 10}}
""")
        )

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await wait_until(attempted(journal, "nap"))
        executor.cancel()
    error = results[0].steps["nap"].error
    assert error is not None
    assert error.failure_mode is FailureMode.CANCELLED
    assert error.message == "the run was cancelled"


async def test_expression_error_at_run_time_names_the_step_and_the_expression(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: bad-expression
steps:
  - {id: a, tool: test.echo, args: {value: {x: 1}}}
  - {id: b, tool: test.echo, args: {value: "${{ steps.a.output.missing }}"}}
  - {id: c, tool: test.echo, when: "${{ steps.a.output.x > 'y' }}"}
""")
    b, c = result.steps["b"], result.steps["c"]
    assert b.status is c.status is StepStatus.FAILED
    assert b.error is not None
    assert c.error is not None
    assert b.error.type == "EvaluationError"
    assert b.error.message == (
        "step 'b': args: 'steps.a.output' has no key 'missing' "
        "(keys: x) (in '${{ steps.a.output.missing }}')"
    )
    assert c.error.message == (
        "step 'c': when: cannot compare number with string in "
        "'steps.a.output.x > 'y'' (in '${{ steps.a.output.x > 'y' }}')"
    )


# --------------------------------------------------------------------------- results


async def test_run_result_has_run_id_status_steps_outputs_and_usage(
    tools: ToolRegistry, settings: Settings
) -> None:
    # Built from models; 'total' is listed before the step it reads.
    plan = Plan(
        name="shape",
        goal="add things",
        steps=[
            Step(id="total", tool="test.echo", args={"value": "${{ steps.nums.output[0] + 2 }}"}),
            Step(id="nums", tool="test.sleep", args={"seconds": 0.05, "value": [40]}),
            Step(id="never", tool="test.echo", when=False),
            Step(
                id="flaky",
                tool="test.fail",
                args={"retryable": True},
                retry=Retry(attempts=2, backoff=0.01),
            ),
        ],
        outputs={"answer": "${{ steps.total.output }}", "label": "total=${{ steps.total.output }}"},
    )
    result = await Executor(tools, settings=settings).run(plan, run_id="run-42")

    assert result.run_id == "run-42"
    assert result.plan == "shape"
    assert result.goal == "add things"
    assert result.status is RunStatus.FAILED
    assert list(result.steps) == ["total", "nums", "never", "flaky"]
    total, nums, never, flaky = result.steps.values()
    assert (total.id, total.tool, total.status, total.output, total.attempts) == (
        "total",
        "test.echo",
        StepStatus.SUCCEEDED,
        42,
        1,
    )
    assert total.error is None
    assert nums.output == [40]
    assert nums.started_at is not None
    assert nums.finished_at is not None
    assert nums.started_at <= nums.finished_at <= total.started_at  # type: ignore[operator]
    assert nums.duration is not None
    assert 0.04 <= nums.duration < 1.0
    assert nums.duration == pytest.approx(
        seconds_between(nums.started_at, nums.finished_at), abs=0.002
    )
    assert never.status is StepStatus.SKIPPED
    assert never.attempts == 0
    assert flaky.attempts == 2
    assert flaky.error is not None
    assert flaky.error.message == "boom"
    assert result.outputs == {"answer": 42, "label": "total=42"}
    assert result.usage.steps == 3  # 'never' was skipped
    assert result.usage.tool_calls == 4  # total, nums and two attempts of flaky
    assert result.usage.model_calls == 0
    assert result.usage.wall_time >= nums.duration
    assert result.started_at <= result.finished_at
    assert [s.id for s in result.failures()] == ["flaky"]
    assert not result.succeeded

    data = json.loads(result.model_dump_json())
    assert data["status"] == "failed"
    assert data["steps"]["flaky"]["error"]["failure_mode"] == "tool_error"
    assert RunResult.model_validate(data).steps["total"].output == 42


class Point(pydantic.BaseModel):
    x: int
    when: datetime


async def test_pydantic_model_output_is_stored_as_json_data(
    tools: ToolRegistry, settings: Settings
) -> None:
    @tool(name="probe.point", side_effects="none")
    async def point() -> Point:
        """Return a model."""
        return Point(x=1, when=datetime(2024, 1, 2, tzinfo=UTC))

    result = await Executor(registry(tools, point), settings=settings).run("""
name: models
steps:
  - {id: p, tool: probe.point}
  - {id: x, tool: test.echo, args: {value: "${{ steps.p.output.x + 1 }}"}}
""")
    assert result.steps["p"].output == {"x": 1, "when": "2024-01-02T00:00:00Z"}
    assert result.steps["x"].output == 2


async def test_inputs_are_converted_to_their_declared_types_and_defaulted(
    tools: ToolRegistry, settings: Settings, tmp_path: Path
) -> None:
    plan = tmp_path / "inputs.yaml"
    plan.write_text(
        """
name: inputs
inputs:
  n: {type: integer, required: true}
  tags: {type: array, default: [a]}
steps:
  - {id: n, tool: test.echo, args: {value: "${{ inputs.n * 2 }}"}}
  - {id: tags, tool: test.echo, args: {value: "${{ inputs.tags }}"}}
""",
        encoding="utf-8",
    )
    executor = Executor(tools, settings=settings)
    result = await executor.run(plan, {"n": "21"})
    assert result.steps["n"].output == 42
    assert result.steps["tags"].output == ["a"]

    with pytest.raises(PlanError) as caught:
        await executor.run(plan, {"m": "1"})
    assert [p.message for p in caught.value.problems] == [
        "unknown input 'm' (plan 'inputs' declares: n, tags)",
        "input 'n' is required (give it with -i n=VALUE)",
    ]


async def test_run_id_is_generated_when_not_given(tools: ToolRegistry, settings: Settings) -> None:
    executor = Executor(tools, settings=settings)
    plan = "name: ids\nsteps:\n  - {id: a, tool: test.echo}\n"
    first, second = await executor.run(plan), await executor.run(plan)
    assert first.run_id
    assert first.run_id != second.run_id
    assert first.succeeded


async def test_provenance_marks_untrusted_output_and_the_steps_fed_by_it(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: provenance
steps:
  - {id: page, tool: test.untrusted}
  - {id: quote, tool: test.echo, args: {value: "said: ${{ steps.page.output.text }}"}}
  - {id: requote, tool: test.echo, args: {value: "${{ steps.quote.output }}"}}
  - {id: own, tool: test.echo, args: {value: mine}, needs: [page]}
""")
    assert result.status is RunStatus.SUCCEEDED

    def provenance(sid: str) -> dict[str, Any]:
        return result.steps[sid].provenance.model_dump(mode="json")

    assert provenance("page") == {
        "trusted": False,
        "source": "tool:test.untrusted",
        "untrusted_from": ["test.untrusted"],
    }
    assert provenance("quote") == {
        "trusted": False,
        "source": "tool:test.echo",
        "untrusted_from": ["test.untrusted"],
    }
    assert provenance("requote")["trusted"] is False
    # Ordering alone ('needs') carries no data, so no taint.
    assert provenance("own") == {"trusted": True, "source": "tool:test.echo", "untrusted_from": []}


async def test_journal_receives_run_and_step_events_in_order(
    tools: ToolRegistry, settings: Settings
) -> None:
    flaky = Flaky(1, lambda: ToolError("again", retryable=True))
    journal = MemoryJournal()
    executor = Executor(registry(tools, flaky.tool()), settings=settings, journal=journal)
    result = await executor.run(
        """
name: journal
steps:
  - {id: f, tool: probe.flaky, retry: {attempts: 2, backoff: 10ms}}
  - {id: g, tool: test.echo, args: {value: "${{ steps.f.output }}"}}
  - {id: quiet, tool: test.echo, when: false}
  - {id: after_quiet, tool: test.echo, needs: [quiet]}
""",
        run_id="j1",
    )
    assert result.succeeded
    events = journal.events
    assert events[0].kind == "run_started"
    assert events[-1].kind == "run_finished"
    assert events[-1].status == "succeeded"
    assert {e.run_id for e in events} == {"j1"}
    assert journal.kinds("f") == ["scheduled", "started", "attempt", "attempt", "finished"]
    assert [e.attempt for e in events if e.step_id == "f" and e.kind == "attempt"] == [1, 2]
    assert journal.kinds("g") == ["scheduled", "started", "attempt", "finished"]
    assert journal.kinds("quiet") == ["scheduled", "started", "skipped"]
    assert journal.kinds("after_quiet") == ["skipped"]
    finished_f = next(e for e in events if e.step_id == "f" and e.kind == "finished")
    assert (finished_f.status, finished_f.output, finished_f.error) == (
        "succeeded",
        "ok on call 2",
        None,
    )
    position = {(e.kind, e.step_id): i for i, e in enumerate(events)}
    assert position[("finished", "f")] < position[("scheduled", "g")]
    assert position[("finished", "g")] < len(events) - 1


async def test_journal_finished_event_carries_the_error(
    tools: ToolRegistry, settings: Settings
) -> None:
    journal = MemoryJournal()
    await Executor(tools, settings=settings, journal=journal).run("""
name: journal-error
steps:
  - {id: bad, tool: test.fail, args: {message: nope}}
""")
    finished = next(e for e in journal.events if e.kind == "finished")
    assert finished.status == "failed"
    assert finished.error is not None
    assert finished.error.failure_mode is FailureMode.TOOL_ERROR
    assert finished.error.message == "nope"
    assert journal.events[-1].status == "failed"


async def test_tool_context_names_the_run_step_and_attempt(
    tools: ToolRegistry, settings: Settings
) -> None:
    seen: list[ToolContext] = []

    @tool(name="probe.context", side_effects="none")
    async def context_probe(context: ToolContext) -> None:
        """Record the context it is given."""
        seen.append(context)
        if context.attempt == 1:
            raise ToolError("first attempt fails", retryable=True)

    await Executor(registry(tools, context_probe), settings=settings).run(
        """
name: ctx
steps:
  - {id: probe, tool: probe.context, retry: {attempts: 2, backoff: 10ms}}
""",
        run_id="ctx-run",
    )
    assert [(c.run_id, c.step_id, c.attempt) for c in seen] == [
        ("ctx-run", "probe", 1),
        ("ctx-run", "probe", 2),
    ]
    assert seen[0].settings is settings
