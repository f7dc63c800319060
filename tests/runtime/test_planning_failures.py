"""Planning failures named as the failure taxonomy names them: an unknown tool is
``invalid_tool``, arguments that do not fit a tool's schema are ``invalid_args``, anything
else ``plan_invalid``; each rejected attempt is an event on the planning span that ``dagentic
trace`` shows (escaped); ``dagentic report`` tells planning failures from plans that were
valid but wrong for the goal, and so does the agent's failure report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    FailureMode,
    LLMPlanner,
    PlanError,
    PlanningError,
    ScriptedModel,
    ToolRegistry,
    compile_plan,
    load_tools,
)
from dagentic.agent import _failure_report
from dagentic.planner import REJECTED_EVENT, attempt_mode
from dagentic.result import ErrorInfo, RunResult, RunStatus, StepResult, StepStatus
from dagentic.runfiles import read_spans, run_files
from dagentic.traceview import analyse, render_trace, report
from dagentic.tracing import tracing_from_settings
from rich.console import Console

from tests.blind import blind_settings
from tests.tools import TEST_TOOLS

pytestmark = pytest.mark.anyio

GOAL = "Echo a value"
UNKNOWN_TOOL = {"steps": [{"id": "a", "tool": "test.ech", "args": {"value": 1}}]}
BAD_ARGS = {"steps": [{"id": "a", "tool": "test.sleep", "args": {"seconds": "soon"}}]}
MISSING_ARG = {"steps": [{"id": "a", "tool": "test.sleep", "args": {}}]}
NOT_A_DICT = {"steps": [{"id": "a", "tool": "test.echo", "args": "value=1"}]}
STRUCTURE = {
    "steps": [{"id": "a", "tool": "test.echo", "args": {"value": "${{ steps.b.output }}"}}]
}
VALID = {"steps": [{"id": "a", "tool": "test.echo", "args": {"value": 1}}]}
BOTH = {
    "steps": [
        {"id": "a", "tool": "test.ech", "args": {}},
        {"id": "b", "tool": "test.sleep", "args": {}},
    ]
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def tools() -> ToolRegistry:
    """The built-in tools and the tests' own, loaded once for the module."""
    return ToolRegistry([*load_tools(), *TEST_TOOLS])


@pytest.mark.parametrize(
    ("reply", "mode"),
    [
        (UNKNOWN_TOOL, FailureMode.INVALID_TOOL),
        (BAD_ARGS, FailureMode.INVALID_ARGS),
        (MISSING_ARG, FailureMode.INVALID_ARGS),
        (NOT_A_DICT, FailureMode.INVALID_ARGS),
        (STRUCTURE, FailureMode.PLAN_INVALID),
        ("not json at all", FailureMode.PLAN_INVALID),
        (BOTH, FailureMode.INVALID_TOOL),  # the most serious of an attempt's problems
    ],
)
async def test_a_failed_planning_is_named_by_its_last_attempts_class(
    tools: ToolRegistry, reply: Any, mode: FailureMode
) -> None:
    with pytest.raises(PlanningError) as caught:
        await LLMPlanner(ScriptedModel([reply]), tools, max_repairs=0).plan(GOAL)
    error = caught.value
    assert isinstance(error, PlanError)  # `except PlanError` keeps catching it
    assert error.failure_mode is mode
    assert error.to_dict()["failure_mode"] == mode.value
    assert error.problems and all(
        "still invalid after 0 repairs" in p.message for p in error.problems
    )


async def test_every_rejected_attempt_keeps_its_problems_and_class(tools: ToolRegistry) -> None:
    model = ScriptedModel([UNKNOWN_TOOL, BAD_ARGS, STRUCTURE])
    with pytest.raises(PlanningError) as caught:
        await LLMPlanner(model, tools, max_repairs=2).plan(GOAL)
    error = caught.value
    assert error.failure_mode is FailureMode.PLAN_INVALID  # the last attempt's
    assert [attempt_mode(a) for a in error.attempts] == [
        FailureMode.INVALID_TOOL,
        FailureMode.INVALID_ARGS,
        FailureMode.PLAN_INVALID,
    ]
    assert [[p.message for p in a] for a in error.attempts] == [
        [
            "step 'a': unknown tool 'test.ech' (did you mean 'test.echo'?); `dagentic tools` "
            "lists the installed ones"
        ],
        [
            "step 'a': argument 'seconds' of tool 'test.sleep': Input should be a valid "
            "number, unable to parse string as a number (got 'soon')"
        ],
        ["step 'a' references unknown step 'b'"],
    ]


async def test_a_plan_reached_after_repairs_says_what_each_rejected_attempt_was(
    tools: ToolRegistry,
) -> None:
    planned = await LLMPlanner(ScriptedModel([UNKNOWN_TOOL, MISSING_ARG, VALID]), tools).plan(GOAL)
    assert planned.attempts == 3
    assert planned.failure_modes == [FailureMode.INVALID_TOOL, FailureMode.INVALID_ARGS]
    assert planned.problems[1] == ["step 'a': tool 'test.sleep' needs argument 'seconds'"]


def test_validation_classes_its_problems(tools: ToolRegistry) -> None:
    with pytest.raises(PlanError) as caught:
        compile_plan(
            {
                "name": "p",
                "steps": [
                    {"id": "a", "tool": "nope.tool"},
                    {"id": "b", "tool": "test.echo", "args": {"valeu": 1}},
                    {"id": "c", "tool": "test.echo", "needs": ["zzz"]},
                ],
            },
            tools,
        )
    assert [(p.failure_mode, p.to_dict().get("failure_mode")) for p in caught.value.problems] == [
        (FailureMode.INVALID_TOOL, "invalid_tool"),
        (FailureMode.INVALID_ARGS, "invalid_args"),
        (None, None),
    ]
    assert caught.value.failure_mode is FailureMode.PLAN_INVALID  # a plan file's stays so


async def test_rejected_attempts_are_on_the_planning_span_and_in_the_trace(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    settings = blind_settings(runs_dir=tmp_path, tracing={"metrics": False})
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    hostile = {
        "steps": [{"id": "a", "tool": "x[bold red]\x1b[2J\u202e", "args": {}}],
    }
    model = ScriptedModel([hostile, BAD_ARGS])
    with (
        pytest.raises(PlanningError),
        tracing.span("plan", {"dagentic.plan.version": 1}, root_run_id="r-plan"),
    ):
        await LLMPlanner(model, tools, max_repairs=1).plan(GOAL)
    tracing.flush()
    spans = list(read_spans(next(iter(run_files(tmp_path)))))
    (span,) = [s for s in spans if s["name"] == "plan"]
    events = [e for e in span["events"] if e["name"] == REJECTED_EVENT]
    assert [e["attributes"]["dagentic.failure_mode"] for e in events] == [
        "invalid_tool",
        "invalid_args",
    ]
    assert span["attributes"]["dagentic.failure_mode"] == "invalid_args"  # the last one's

    analysis = analyse(spans)
    assert [(r["attempt"], r["failure_mode"]) for r in analysis["rejected_plans"]] == [
        (1, "invalid_tool"),
        (2, "invalid_args"),
    ]
    console = Console(width=200, record=True, color_system=None)
    render_trace(analysis, console)
    text = console.export_text()
    assert "rejected plans" in text
    assert "plan v1 attempt 1 invalid_tool: 1 problem" in text
    assert "\x1b" not in text and "\u202e" not in text  # a model's text is escaped
    assert "x[bold red]" in text  # shown, not taken for markup


async def test_report_tells_planning_failures_from_wrong_plans(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    settings = blind_settings(runs_dir=tmp_path, tracing={"metrics": False})
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    with (
        pytest.raises(PlanningError),
        tracing.span("plan", {"dagentic.plan.version": 1}, root_run_id="r-planning"),
    ):
        await LLMPlanner(ScriptedModel([UNKNOWN_TOOL]), tools, max_repairs=0).plan(GOAL)
    from dagentic import Executor

    plan = {
        "name": "wrong",
        "steps": [
            {"id": "a", "tool": "test.echo", "args": {"value": 0}},
            {"id": "ok", "check": {"assert": "${{ steps.a.output > 0 }}"}},
        ],
    }
    result = await Executor(tools, settings=settings, tracing=tracing, journal=None).run(plan)
    assert result.error is not None and result.error.failure_mode is FailureMode.CHECK_FAILED
    tracing.flush()

    modes = {m["mode"]: m for m in report(tmp_path)["failure_modes"]}
    assert modes["invalid_tool"]["stages"] == {"planning": 1}
    assert modes["check_failed"]["stages"] == {"goal": 1}


def test_the_failure_report_tells_malformed_calls_from_wrong_ones() -> None:
    def step(sid: str, mode: FailureMode) -> StepResult:
        return StepResult(
            id=sid,
            tool="test.echo" if sid == "a" else None,
            status=StepStatus.FAILED,
            error=ErrorInfo(failure_mode=mode, message=f"{sid} went wrong"),
        )

    result = RunResult(
        run_id="r",
        plan="p",
        status=RunStatus.FAILED,
        steps={
            "a": step("a", FailureMode.INVALID_ARGS),
            "ok": step("ok", FailureMode.CHECK_FAILED),
        },
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
    )
    text = _failure_report(result)
    assert text.splitlines() == [
        "- step 'a' (test.echo) failed [invalid_args]: a went wrong",
        "- step 'ok' (check) failed [check_failed]: ok went wrong",
        "What these failure modes mean:",
        "- invalid_args: a step's arguments did not fit its tool (a name, a type, or a value "
        "the tool refused); fix those arguments",
        "- check_failed: the calls ran and their arguments fit their tools, but the results "
        "failed a check: the arguments (a filter, a value, a column) are likely wrong for the "
        "goal, not malformed",
    ]
    assert json.dumps(text)  # plain text
