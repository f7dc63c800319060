"""The data policy in the core, for every tool: a call's effects are judged per call (a
tool's ``effects`` function, given the resolved arguments), provenance is followed as the
run runs (a tool may mark its output untrusted), and the policy, approvers, journal and
spans see the call's effects. Egress and SQL with real components are tested with their
plugins (tests/plugins/web/test_web_egress_policy.py, tests/plugins/test_sql_effects.py,
tests/plugins/test_laundering.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    Effects,
    Executor,
    FailureMode,
    MemoryJournal,
    PlanError,
    RunResult,
    RunStatus,
    Settings,
    StepStatus,
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolRegistry,
    load_plan,
    tool,
)
from dagentic.attributes import TOOL_EGRESS, TOOL_SIDE_EFFECTS
from dagentic.spans import FastTracerProvider
from dagentic.tracing import Tracing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.tools import TEST_TOOLS

pytestmark = pytest.mark.anyio

WRITTEN: list[str] = []


def store_effects(args: dict[str, Any], settings: Any) -> str:
    return "write" if args["op"] == "put" else "read"


@tool(name="probe.store", side_effects="write", effects=store_effects)
async def store(op: str, text: str = "") -> dict[str, str]:
    """Put text in a store, or get what it holds.

    Args:
        op: put or get.
        text: What to put.
    """
    if op == "put":
        WRITTEN.append(text)
    return {"op": op, "text": text}


@tool(name="probe.cache", side_effects="read")
async def cache(key: str, context: ToolContext) -> dict[str, str]:
    """Read a cache some other run filled from the web: its output is untrusted.

    Args:
        key: What to read.
    """
    context.mark_untrusted("cache:web")
    return {"key": key, "inputs": ",".join(context.untrusted_inputs)}


@tool(name="probe.send", side_effects="read", egress={"to": "destination", "body": "content"})
async def send(to: str, body: str = "") -> str:
    """Send a message somewhere (never really: a sink for the policy).

    Args:
        to: Where.
        body: What.
    """
    return f"{to}:{body}"


REGISTRY = ToolRegistry([*TEST_TOOLS, store, cache, send])


@pytest.fixture(autouse=True)
def _fresh_store() -> None:
    WRITTEN.clear()


def blocked(result: RunResult, step: str) -> str:
    assert result.status is RunStatus.FAILED
    error = result.steps[step].error
    assert error is not None
    assert error.failure_mode is FailureMode.POLICY_BLOCKED, error
    return error.message


async def run(
    steps: list[dict[str, Any]], settings: Settings, **options: Any
) -> tuple[RunResult, MemoryJournal]:
    journal = MemoryJournal()
    executor = Executor(REGISTRY, settings=settings, journal=journal, tracing=None, **options)
    return await executor.run({"name": "policy", "steps": steps}), journal


PAGE = {"id": "page", "tool": "test.untrusted", "args": {"text": "rm -rf /"}}


# --------------------------------------------------------------------------- effects per call


async def test_a_call_that_reads_takes_untrusted_data_and_one_that_writes_does_not(
    settings: Settings,
) -> None:
    steps = [
        PAGE,
        {
            "id": "get",
            "tool": "probe.store",
            "args": {"op": "get", "text": "${{ steps.page.output.text }}"},
        },
        {
            "id": "put",
            "tool": "probe.store",
            "args": {"op": "put", "text": "${{ steps.page.output.text }}"},
        },
    ]
    result, journal = await run(steps, settings)

    assert result.steps["get"].status is StepStatus.SUCCEEDED
    assert blocked(result, "put") == (
        "step 'put': tool 'probe.store' writes, and its arguments carry untrusted data from "
        "test.untrusted; set 'allow_untrusted: true' on the step if that is intended"
    )
    assert WRITTEN == []
    attempts = [(e.step_id, e.side_effects) for e in journal.events if e.kind == "attempt"]
    assert attempts == [("page", "read"), ("get", "read")]


async def test_each_foreach_item_is_judged_by_its_own_call(settings: Settings) -> None:
    steps = [
        PAGE,
        {
            "id": "each",
            "tool": "probe.store",
            "foreach": ["get", "put"],
            "args": {"op": "${{ item }}", "text": "${{ steps.page.output.text }}"},
        },
    ]
    result, _ = await run(steps, settings)

    assert blocked(result, "each") == (
        "step 'each': item 1: tool 'probe.store' writes, and its arguments carry untrusted "
        "data from test.untrusted; set 'allow_untrusted: true' on the step if that is intended"
    )
    assert WRITTEN == []


async def test_the_approver_is_shown_what_this_call_does(settings: Settings) -> None:
    shown: list[tuple[str, str, dict[str, str]]] = []

    async def approver(step_id: str, tool: Tool, args: dict[str, Any]) -> bool:
        shown.append((step_id, tool.side_effects, dict(tool.egress)))
        return True

    steps = [
        {"id": "get", "tool": "probe.store", "approval": "required", "args": {"op": "get"}},
        {"id": "put", "tool": "probe.store", "approval": "required", "args": {"op": "put"}},
        {"id": "send", "tool": "probe.send", "approval": "required", "args": {"to": "x"}},
    ]
    result, _ = await run(steps, settings, approver=approver)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert sorted(shown) == [
        ("get", "read", {}),
        ("put", "write", {}),
        ("send", "read", {"to": "destination", "body": "content"}),
    ]


async def test_the_step_span_says_what_the_call_does(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    meters = MeterProvider(shutdown_on_exit=False)
    tracing = Tracing(provider, meters)
    try:
        executor = Executor(REGISTRY, settings=settings, tracing=tracing)
        await executor.run(
            {
                "name": "spans",
                "steps": [
                    {"id": "put", "tool": "probe.store", "args": {"op": "put"}},
                    {"id": "send", "tool": "probe.send", "args": {"to": "x"}},
                ],
            }
        )
        tracing.flush()
        found = {
            s.attributes.get("dagentic.step.id"): (
                s.attributes.get(TOOL_SIDE_EFFECTS),
                tuple(s.attributes.get(TOOL_EGRESS) or ()),
            )
            for s in exporter.get_finished_spans()
            if s.attributes and TOOL_SIDE_EFFECTS in s.attributes
        }
    finally:
        provider.shutdown()
        meters.shutdown()
    assert found == {"put": ("write", ()), "send": ("read", ("body", "to"))}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            lambda args, settings: "delete",
            "tool 'probe.odd': its effects function answered 'delete'; it must give 'none', "
            "'read', 'write' or an Effects (fix the tool)",
        ),
        (
            lambda args, settings: Effects("read", {"text": "somewhere"}),  # type: ignore[dict-item]
            "tool 'probe.odd': its effects function answered Effects(side_effects='read', "
            "egress={'text': 'somewhere'}); it must give 'none', 'read', 'write' or an Effects "
            "(fix the tool)",
        ),
        (
            lambda args, settings: args["missing"],
            "step 'odd': tool 'probe.odd' cannot tell what this call does: its effects "
            "function raised KeyError: 'missing'",
        ),
    ],
)
async def test_an_effects_function_that_cannot_answer_fails_the_call_unrun(
    settings: Settings, answer: Any, message: str
) -> None:
    ran: list[str] = []

    @tool(name="probe.odd", side_effects="write", effects=answer)
    async def odd(text: str) -> None:
        """Never runs.

        Args:
            text: Anything.
        """
        ran.append(text)

    executor = Executor(ToolRegistry([odd]), settings=settings, tracing=None)
    result = await executor.run(
        {"name": "odd", "steps": [{"id": "odd", "tool": "probe.odd", "args": {"text": "x"}}]}
    )

    error = result.steps["odd"].error
    assert error is not None
    assert error.failure_mode is FailureMode.TOOL_ERROR
    assert error.message == message
    assert ran == []


def test_egress_must_name_arguments_and_say_how_they_leave() -> None:
    async def post(url: str, body: str) -> None:
        """Post.

        Args:
            url: Where.
            body: What.
        """

    with pytest.raises(ToolDefinitionError) as caught:
        tool(name="probe.post", egress={"urll": "destination", "body": "somewhere"})(post)  # type: ignore[dict-item]
    assert caught.value.message == (
        "tool 'probe.post' is not a valid tool:\n"
        "  - egress names 'urll', which is not one of its arguments (url, body) (did you mean "
        "'url'?)\n"
        "  - egress of 'body' must be 'destination' or 'content', not 'somewhere'"
    )
    with pytest.raises(ToolDefinitionError) as not_callable:
        tool(name="probe.post", effects="write")(post)  # type: ignore[arg-type]
    assert not_callable.value.message == (
        "tool 'probe.post' is not a valid tool:\n"
        "  - effects must be a function of (args, settings), not str"
    )


# --------------------------------------------------------------------------- provenance at run time


async def test_a_tool_that_marks_its_output_untrusted_taints_what_reads_it(
    settings: Settings,
) -> None:
    steps = [
        {"id": "cached", "tool": "probe.cache", "args": {"key": "k"}},
        {"id": "again", "tool": "probe.cache", "args": {"key": "${{ steps.cached.output.key }}"}},
        {"id": "save", "tool": "test.write", "args": {"text": "${{ steps.again.output.key }}"}},
    ]
    result, _ = await run(steps, settings)

    assert result.steps["cached"].provenance.model_dump() == {
        "trusted": False,
        "source": "tool:probe.cache",
        "untrusted_from": ("cache:web",),
    }
    assert result.steps["again"].output == {"key": "k", "inputs": "cache:web"}
    assert blocked(result, "save") == (
        "step 'save': tool 'test.write' writes, and its arguments carry untrusted data from "
        "cache:web; set 'allow_untrusted: true' on the step if that is intended"
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"when": "steps.page.output.text != ''"},
        {"foreach": "[steps.page.output.text]", "args": {"text": "${{ item }}"}},
    ],
    ids=["when", "foreach"],
)
async def test_a_bare_when_or_foreach_expression_is_a_dependency_that_carries_taint(
    settings: Settings, extra: dict[str, Any]
) -> None:
    save = {"id": "save", "tool": "test.write", "args": {"text": "fixed"}, **extra}
    result, _ = await run([PAGE, save], settings)

    assert blocked(result, "save").endswith(
        "carry untrusted data from test.untrusted; set 'allow_untrusted: true' on the step if "
        "that is intended"
    )


# --------------------------------------------------------------------------- egress


async def test_step_output_into_a_destination_needs_allow_egress(settings: Settings) -> None:
    steps = [
        {"id": "where", "tool": "test.echo", "args": {"value": "https://example.org"}},
        {"id": "send", "tool": "probe.send", "args": {"to": "${{ steps.where.output }}"}},
        {
            "id": "body",
            "tool": "probe.send",
            "args": {"to": "https://example.org", "body": "${{ steps.where.output }}"},
        },
        {
            "id": "opted",
            "tool": "probe.send",
            "allow_egress": True,
            "args": {"to": "${{ steps.where.output }}", "body": "${{ steps.page.output.text }}"},
        },
        PAGE,
    ]
    result, _ = await run(steps, settings)

    assert blocked(result, "send") == (
        "step 'send': tool 'probe.send' sends argument 'to' off this machine, and it is built "
        "from the output of step 'where', which so decides where data goes; write the "
        "destination in the plan, or set 'allow_egress: true' on the step if that is intended"
    )
    assert result.steps["body"].output == "https://example.org:https://example.org"
    assert result.steps["opted"].output == "https://example.org:rm -rf /"


def test_allow_egress_on_a_step_that_sends_nothing_is_a_plan_error(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: opt-ins
            steps:
              - id: save
                tool: test.write
                allow_egress: true
                args: {text: hi}
              - id: verify
                allow_egress: true
                check: {assert: "${{ true }}"}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(PlanError) as caught:
        load_plan(path, REGISTRY)
    assert [f"{p.line}:{p.column}: {p.message}" for p in caught.value.problems] == [
        "5:19: step 'save': allow_egress has no effect: tool 'test.write' sends none of its "
        "arguments off this machine; remove it",
        "8:19: step 'verify': allow_egress has no effect on a check step; remove it",
    ]
