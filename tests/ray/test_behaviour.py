"""The executor's behaviour, the same in process and on Ray: each case runs on both
backends (and on asyncio and trio), with the same expected result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    Executor,
    FailureMode,
    RunResult,
    RunStatus,
    Settings,
    StepStatus,
    ToolError,
    ToolRegistry,
    tool,
)
from pydantic import BaseModel

pytestmark = pytest.mark.anyio


@tool(name="probe.flaky", side_effects="none")
def flaky(counter: str, succeed_at: int) -> int:
    """Fail (retryably) until called ``succeed_at`` times; count calls in a file.

    Args:
        counter: The file.
        succeed_at: The call that succeeds.
    """
    path = Path(counter)
    calls = int(path.read_text() or 0) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls < succeed_at:
        raise ToolError(f"not yet ({calls})", retryable=True)
    return calls


class Point(BaseModel):
    x: int
    y: int


@tool(name="probe.point", side_effects="none")
def point(x: int) -> Point:
    """A point on the diagonal.

    Args:
        x: Where.
    """
    return Point(x=x, y=x)


@pytest.fixture(params=["process", "ray"])
def executor(request: pytest.FixtureRequest, tools: ToolRegistry, settings: Settings) -> Executor:
    changed = settings.model_copy(deep=True)
    if request.param == "ray":
        cluster = request.getfixturevalue("ray_cluster")
        changed.execution.backend = "ray"
        changed.ray.address = cluster.address
    return Executor(ToolRegistry([*tools, flaky, point]), settings=changed, journal=None)


async def run(executor: Executor, *steps: dict[str, Any], **inputs: Any) -> RunResult:
    return await executor.run({"version": 1, "name": "behaviour", "steps": list(steps)})


async def test_steps_pass_outputs_through_expressions(executor: Executor) -> None:
    result = await run(
        executor,
        {"id": "a", "tool": "test.echo", "args": {"value": [1, 2, 3]}},
        {"id": "b", "tool": "test.echo", "args": {"value": {"x": 1}}},
        {
            "id": "c",
            "tool": "test.echo",
            "args": {"value": "${{ sum(steps.a.output) + steps.b.output.x }}"},
        },
    )
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["c"].output == 7


async def test_when_false_skips_the_step_and_its_dependents(executor: Executor) -> None:
    result = await run(
        executor,
        {"id": "a", "tool": "test.echo", "args": {"value": 1}, "when": "${{ false }}"},
        {"id": "b", "tool": "test.echo", "args": {"value": "${{ steps.a.output }}"}},
    )
    assert [result.steps[s].status for s in "ab"] == [StepStatus.SKIPPED, StepStatus.SKIPPED]


async def test_foreach_keeps_the_order_of_its_items(executor: Executor) -> None:
    result = await run(
        executor,
        {
            "id": "each",
            "tool": "test.sleep",
            "foreach": [0.3, 0.0, 0.1],
            "args": {"seconds": "${{ item }}", "value": "${{ item * 10 }}"},
        },
    )
    assert result.steps["each"].output == [3.0, 0.0, 1.0]


async def test_a_retryable_error_is_retried_and_attempts_are_counted(
    executor: Executor, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    result = await run(
        executor,
        {
            "id": "f",
            "tool": "probe.flaky",
            "args": {"counter": str(counter), "succeed_at": 3},
            "retry": {"attempts": 3, "backoff": "10ms"},
        },
    )
    step = result.steps["f"]
    assert (step.status, step.output, step.attempts) == (StepStatus.SUCCEEDED, 3, 3)


async def test_a_tool_error_fails_the_step_with_its_message(executor: Executor) -> None:
    result = await run(
        executor,
        {
            "id": "f",
            "tool": "test.fail",
            "args": {"message": "no such table"},
            "retry": {"attempts": 3},
        },
        {"id": "after", "tool": "test.echo", "args": {"value": "${{ steps.f.output }}"}},
    )
    step = result.steps["f"]
    assert (step.error.failure_mode, step.error.message, step.attempts) == (
        FailureMode.TOOL_ERROR,
        "no such table",
        1,
    )
    assert result.steps["after"].error.failure_mode is FailureMode.UPSTREAM_FAILED


async def test_a_plain_exception_is_retried_for_an_idempotent_tool(executor: Executor) -> None:
    result = await run(
        executor,
        {
            "id": "c",
            "tool": "test.crash",
            "args": {"message": "bug"},
            "retry": {"attempts": 2, "backoff": "10ms"},
        },
    )
    step = result.steps["c"]
    assert (step.error.failure_mode, step.attempts) == (FailureMode.TOOL_ERROR, 2)
    assert "bug" in step.error.message


async def test_a_step_timeout_fails_with_timeout(executor: Executor) -> None:
    result = await run(
        executor,
        {"id": "slow", "tool": "test.sync_sleep", "args": {"seconds": 60}, "timeout": "1s"},
    )
    step = result.steps["slow"]
    assert step.error.failure_mode is FailureMode.TIMEOUT
    assert step.error.message == "step 'slow': tool 'test.sync_sleep' did not finish within 1s"


async def test_a_resolved_argument_that_does_not_fit_is_invalid_args(executor: Executor) -> None:
    result = await run(
        executor,
        {"id": "a", "tool": "test.echo", "args": {"value": "many"}},
        {"id": "b", "tool": "test.sleep", "args": {"seconds": "${{ steps.a.output }}"}},
    )
    assert result.steps["b"].error.failure_mode is FailureMode.INVALID_ARGS


async def test_untrusted_data_into_a_write_is_blocked(executor: Executor) -> None:
    result = await run(
        executor,
        {"id": "page", "tool": "test.untrusted"},
        {"id": "save", "tool": "test.write", "args": {"text": "${{ steps.page.output.text }}"}},
    )
    assert result.steps["page"].provenance.trusted is False
    assert result.steps["save"].error.failure_mode is FailureMode.POLICY_BLOCKED


async def test_a_model_output_is_kept_as_json_data(executor: Executor) -> None:
    result = await run(executor, {"id": "p", "tool": "probe.point", "args": {"x": 2}})
    assert result.steps["p"].output == {"x": 2, "y": 2}
