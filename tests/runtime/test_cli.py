"""The ``dagentic`` command line, through typer's CliRunner and as the installed script."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagentic import (
    ErrorInfo,
    Executor,
    FailureMode,
    Plan,
    ScriptedModel,
    Step,
    StepEvent,
    ToolError,
    ToolRegistry,
    compile_plan,
    tool,
)
from dagentic.plan import plan_json_schema
from dagentic.progress import LiveProgress, render_result, tries
from rich.console import Console
from typer.testing import Result

from tests.cli import invoke, isolate, run_script

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "plans" / "hello.yaml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dagentic.toml or DAGENTIC_* variables from around the tests reach the CLI.
    (conftest resets the structlog configuration the CLI sets up on every call.)"""
    isolate(tmp_path, monkeypatch)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


INPUTS_PLAN = """\
    name: counted
    goal: Say how many
    inputs:
      limit: {type: integer, default: 3}
      names: {type: array, default: []}
    steps:
      - id: say
        tool: notify.log
        args: {message: "limit is ${{ inputs.limit }}"}
    outputs:
      limit: ${{ inputs.limit }}
      names: ${{ inputs.names }}
      said: ${{ steps.say.output.message }}
    """

FAILING_PLAN = """\
    name: failing
    steps:
      - id: say
        tool: notify.log
        args: {message: hello}
      - id: verify
        check:
          assert: "${{ steps.say.output.message == 'goodbye' }}"
    """

BROKEN_PLAN = """\
    name: broken
    steps:
      - id: fetch
        tool: notify.lgo
        args: {message: "${{ steps.summary.output }}"}
      - id: summary
        tool: notify.log
        args: {message: "${{ steps.fetch.output }}"}
    """

APPROVAL_PLAN = """\
    name: approval
    steps:
      - id: send
        tool: notify.log
        approval: required
        args: {message: sending}
    outputs:
      sent: ${{ steps.send.output.message }}
    """


def broken_problems(path: Path) -> list[str]:
    return [
        f"{path}:3:5: dependency cycle: fetch -> summary -> fetch (each step needs the next)",
        f"{path}:4:11: step 'fetch': unknown tool 'notify.lgo' (did you mean 'notify.log'?); "
        "`dagentic tools` lists the installed ones",
    ]


# --------------------------------------------------------------------------- run


def test_run_of_the_hello_plan_succeeds() -> None:
    result = invoke("run", HELLO)
    assert result.exit_code == 0, result.output
    assert "succeeded in " in result.stdout


def test_run_json_prints_the_run_result(tmp_path: Path) -> None:
    plan = write(tmp_path, "counted.yaml", INPUTS_PLAN)
    result = invoke("run", plan, "--json", "-i", "limit=7", "-i", 'names=["Ada", "Grace"]')
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plan"] == "counted"
    assert data["goal"] == "Say how many"
    assert data["status"] == "succeeded"
    assert data["error"] is None
    assert data["outputs"] == {"limit": 7, "names": ["Ada", "Grace"], "said": "limit is 7"}
    assert data["steps"]["say"]["status"] == "succeeded"
    assert data["steps"]["say"]["attempts"] == 1
    assert data["usage"]["tool_calls"] == 1


def test_run_of_a_failing_plan_exits_1(tmp_path: Path) -> None:
    plan = write(tmp_path, "failing.yaml", FAILING_PLAN)
    result = invoke("run", plan, "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert data["steps"]["say"]["status"] == "succeeded"
    assert data["steps"]["verify"]["status"] == "failed"
    assert data["steps"]["verify"]["error"]["failure_mode"] == "check_failed"
    assert data["error"]["failure_mode"] == "check_failed"


def test_run_of_a_failing_plan_without_json_names_the_failure_mode(tmp_path: Path) -> None:
    plan = write(tmp_path, "failing.yaml", FAILING_PLAN)
    result = invoke("run", plan)
    assert result.exit_code == 1, result.output
    assert "check_failed: " in result.stdout
    assert "failed in " in result.stdout


def test_run_of_an_invalid_plan_exits_2_and_lists_every_problem(tmp_path: Path) -> None:
    plan = write(tmp_path, "broken.yaml", BROKEN_PLAN)
    result = invoke("run", plan)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [*broken_problems(plan), "2 problems; nothing was run"]


@pytest.mark.parametrize("pair", ["limit", "=3"])
def test_run_with_an_input_that_is_not_key_value_exits_2(tmp_path: Path, pair: str) -> None:
    plan = write(tmp_path, "counted.yaml", INPUTS_PLAN)
    result = invoke("run", plan, "-i", pair)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: -i expects key=value, got {pair!r}\n"


def test_run_with_an_unknown_input_exits_2(tmp_path: Path) -> None:
    plan = write(tmp_path, "counted.yaml", INPUTS_PLAN)
    result = invoke("run", plan, "-i", "limt=4")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "unknown input 'limt' (plan 'counted' declares: limit, names)",
        "1 problem; nothing was run",
    ]


def test_run_with_an_input_of_the_wrong_type_exits_2(tmp_path: Path) -> None:
    plan = write(tmp_path, "counted.yaml", INPUTS_PLAN)
    result = invoke("run", plan, "-i", "limit=abc")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "input 'limit' must be integer, got 'abc': Input should be a valid integer, unable "
        "to parse string as an integer",
        "1 problem; nothing was run",
    ]


def test_approval_step_runs_with_yes(tmp_path: Path) -> None:
    plan = write(tmp_path, "approval.yaml", APPROVAL_PLAN)
    result = invoke("run", plan, "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "succeeded"
    assert data["outputs"] == {"sent": "sending"}


def test_approval_step_without_yes_and_without_a_terminal_waits(tmp_path: Path) -> None:
    plan = write(tmp_path, "approval.yaml", APPROVAL_PLAN)
    result = invoke("run", plan, "--json")
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "waiting"
    assert data["waiting"] == ["send"]
    assert data["steps"]["send"]["status"] == "waiting"
    assert data["steps"]["send"]["attempts"] == 0


def test_approval_step_without_a_terminal_nor_journal_is_policy_blocked(tmp_path: Path) -> None:
    plan = write(tmp_path, "approval.yaml", APPROVAL_PLAN)
    result = invoke("run", plan, "--json", env={"DAGENTIC_JOURNAL__ENABLED": "false"})
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    send = data["steps"]["send"]
    assert send["status"] == "failed"
    assert send["attempts"] == 0
    assert send["error"]["failure_mode"] == "policy_blocked"
    assert send["error"]["message"] == (
        "step 'send' requires approval and no approver is "
        "configured (CLI: --yes approves every step)"
    )


# --------------------------------------------------------------------------- validate


def test_validate_reports_each_file_and_exits_2_if_any_is_invalid(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", INPUTS_PLAN)
    bad = write(tmp_path, "broken.yaml", BROKEN_PLAN)
    result = invoke("validate", good, bad)
    assert result.exit_code == 2, result.output
    assert result.stdout == f"{good}: ok (1 step)\n"
    assert result.stderr.splitlines() == broken_problems(bad)


def test_validate_of_valid_files_exits_0(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", INPUTS_PLAN)
    result = invoke("validate", good, good)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{good}: ok (1 step)\n" * 2


# --------------------------------------------------------------------------- tools


def test_tools_lists_each_tool_with_its_plugin() -> None:
    result = invoke("tools")
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if " notify.log " in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[:4] == [
        "notify.log",
        "notify",
        "write",
        "message: string, level?: string, data?: object|null",
    ]


def test_tools_json_lists_each_tool_with_its_plugin_and_argument_schema() -> None:
    result = invoke("tools", "--json")
    assert result.exit_code == 0, result.output
    specs = {spec["name"]: spec for spec in json.loads(result.stdout)}
    log = specs["notify.log"]
    assert log["plugin"] == "notify"
    assert log["side_effects"] == "write"
    assert log["description"] == "Write a message to the run log, for people watching the run."
    args = log["args"]
    assert args["required"] == ["message"]
    assert args["additionalProperties"] is False
    assert list(args["properties"]) == ["message", "level", "data"]
    assert args["properties"]["message"]["type"] == "string"
    assert args["properties"]["message"]["description"] == "The text to log."
    assert args["properties"]["level"]["enum"] == ["info", "warning", "error"]
    assert args["properties"]["level"]["default"] == "info"


# --------------------------------------------------------------------------- graph


GRAPH_PLAN = """\
    name: drawn
    steps:
      - id: fetch
        tool: notify.log
        foreach: [1, 2]
        args: {message: "item ${{ item }}"}
      - id: alert
        tool: notify.log
        when: ${{ len(steps.fetch.output) > 1 }}
        args: {message: many}
      - id: verify
        check:
          assert: ${{ steps.alert.status == 'succeeded' }}
    """


def test_graph_draws_mermaid_by_default(tmp_path: Path) -> None:
    plan = write(tmp_path, "drawn.yaml", GRAPH_PLAN)
    for args in ([], ["--format", "mermaid"]):
        result = invoke("graph", plan, *args)
        assert result.exit_code == 0, result.output
        assert result.stdout == (
            "flowchart TD\n"
            '    fetch["fetch<br/>notify.log (foreach)"]\n'
            '    alert["alert<br/>notify.log"]\n'
            '    verify{{"verify<br/>check"}}\n'
            "    fetch -.-> alert\n"
            "    alert --> verify\n"
        )


def test_graph_draws_graphviz_dot(tmp_path: Path) -> None:
    plan = write(tmp_path, "drawn.yaml", GRAPH_PLAN)
    result = invoke("graph", plan, "--format", "dot")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        'digraph "drawn" {\n'
        "    rankdir=TB;\n"
        '    node [shape=box, fontname="Helvetica"];\n'
        '    "fetch" [label="fetch\\nnotify.log (foreach)"];\n'
        '    "alert" [label="alert\\nnotify.log"];\n'
        '    "verify" [label="verify\\ncheck", shape=diamond];\n'
        '    "fetch" -> "alert" [style=dashed];\n'
        '    "alert" -> "verify";\n'
        "}\n"
    )


def test_graph_writes_text_formats_to_a_file_with_output(tmp_path: Path) -> None:
    plan = write(tmp_path, "drawn.yaml", GRAPH_PLAN)
    target = tmp_path / "drawn.mmd"
    result = invoke("graph", plan, "--output", target)
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8").startswith("flowchart TD\n")


def test_graph_png_needs_an_output_file(tmp_path: Path) -> None:
    plan = write(tmp_path, "drawn.yaml", GRAPH_PLAN)
    result = invoke("graph", plan, "--format", "png")
    assert result.exit_code == 2
    assert result.stderr == "error: --format png needs --output FILE.png\n"


def test_graph_png_without_graphviz_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = write(tmp_path, "drawn.yaml", GRAPH_PLAN)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    result = invoke("graph", plan, "--format", "png", "--output", tmp_path / "g.png")
    assert result.exit_code == 2
    assert result.stderr.replace("\n", " ") == (
        "error: --format png needs Graphviz's `dot` program (Debian: apt-get install "
        "graphviz); --format dot prints the graph as text instead "
    )
    assert not (tmp_path / "g.png").exists()


def test_graph_of_an_invalid_plan_exits_2(tmp_path: Path) -> None:
    plan = write(tmp_path, "broken.yaml", BROKEN_PLAN)
    result = invoke("graph", plan)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [*broken_problems(plan), "2 problems; nothing was run"]


# --------------------------------------------------------------------------- schema


def test_schema_prints_the_plan_json_schema() -> None:
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    assert result.stdout == plan_json_schema()
    assert json.loads(result.stdout)["title"] == "Plan"


def test_schema_output_option_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.schema.json"
    result = invoke("schema", "-o", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert target.read_text(encoding="utf-8") == plan_json_schema()


# --------------------------------------------------------------------------- the script


@pytest.mark.slow
def test_installed_script_runs_a_plan_and_prints_json(tmp_path: Path) -> None:
    plan = write(tmp_path, "counted.yaml", INPUTS_PLAN)
    done = run_script("run", plan, "--json", "-i", "limit=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "succeeded"
    assert data["outputs"] == {"limit": 2, "names": [], "said": "limit is 2"}


@pytest.mark.slow
def test_installed_script_exits_2_on_an_invalid_plan(tmp_path: Path) -> None:
    plan = write(tmp_path, "broken.yaml", BROKEN_PLAN)
    done = run_script("run", plan, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [*broken_problems(plan), "2 problems; nothing was run"]


# --------------------------------------------------------------------------- what a person reads

# Outside text a terminal or Rich would act on: an OSC 8 hyperlink, an OSC 52 clipboard
# write, a C1 CSI, a bidi override, and Rich markup (an unmatched closing tag crashed
# `dagentic run` with a MarkupError once).
HOSTILE = "[/bold][link=https://evil.example]x \x1b]8;;https://evil.example\x1b\\y \x1b]52;c;eA==\x07\x9b2J\u202e"
SHOWN = r"[/bold][link=https://evil.example]x \x1b]8;;https://evil.example\x1b\y \x1b]52;c;eA==\x07\x9b2J\u202e"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def with_test_tools(tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch) -> ToolRegistry:
    """The CLI sees the test tools (test.echo, test.fail, ...), without planning-context
    tools."""
    import dagentic.cli

    registry = ToolRegistry([t for t in tools if not t.planning_context])
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: registry)
    return registry


def plan_file(tmp_path: Path, plan: dict[str, Any]) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_a_failure_with_markup_and_escape_sequences_is_printed_as_text(
    tmp_path: Path, with_test_tools: ToolRegistry
) -> None:
    plan = plan_file(
        tmp_path,
        {
            "name": f"plan {HOSTILE}",
            "steps": [{"id": "x", "tool": "test.fail", "args": {"message": HOSTILE}}],
        },
    )

    result = invoke("run", plan)

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"run {json_run_id(result)} of plan plan {SHOWN}"
    assert lines[-1] == f"tool_error: step 'x' failed: {SHOWN}"
    assert f"│ tool_error: {SHOWN} │" in result.stdout
    assert RAW.search(result.stdout) is None


def json_run_id(result: Result) -> str:
    return re.search(r"\(run ([0-9a-f]{32})\)", result.stdout)[1]  # type: ignore[index]


def test_outputs_print_as_tables_and_indented_json_never_python_reprs(
    tmp_path: Path, with_test_tools: ToolRegistry
) -> None:
    rows = [{"region": "EMEA", "revenue": 12}, {"region": "APAC", "revenue": None}]
    plan = plan_file(
        tmp_path,
        {
            "name": "shapes",
            "steps": [
                {"id": "rows", "tool": "test.echo", "args": {"value": rows}},
                {"id": "nested", "tool": "test.echo", "args": {"value": {"a": [1, True]}}},
                {"id": "text", "tool": "test.echo", "args": {"value": HOSTILE}},
            ],
            "outputs": {
                "rows": "${{ steps.rows.output }}",
                "nested": "${{ steps.nested.output }}",
                "text": "${{ steps.text.output }}",
                "count": "${{ len(steps.rows.output) }}",
                "none": None,
            },
        },
    )

    result = invoke("run", plan)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    shown = lines[lines.index("outputs") :]
    assert shown[:-1] == [
        "outputs",
        "  rows:",
        "    ┏━━━━━━━━┳━━━━━━━━━┓",
        "    ┃ region ┃ revenue ┃",
        "    ┡━━━━━━━━╇━━━━━━━━━┩",
        "    │ EMEA   │ 12      │",
        "    │ APAC   │ null    │",
        "    └────────┴─────────┘",
        "  nested:",
        "    {",
        '      "a": [',
        "        1,",
        "        true",
        "      ]",
        "    }",
        f"  text: {SHOWN}",
        "  count: 2",
        "  none: null",
    ]
    assert shown[-1].startswith("succeeded in ")
    assert RAW.search(result.stdout) is None


def test_the_tries_of_a_foreach_step_are_those_of_one_item(
    tmp_path: Path, with_test_tools: ToolRegistry
) -> None:
    plan = plan_file(
        tmp_path,
        {
            "name": "fan",
            "steps": [
                {"id": "one", "tool": "test.echo", "args": {"value": 1}},
                {"id": "each", "foreach": [1, 2, 3], "tool": "test.echo", "args": {}},
            ],
        },
    )

    result = invoke("run", plan)

    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")
        for line in result.stdout.splitlines()
        if line.startswith("│")
    }
    assert rows["one"][4].strip() == "1"
    assert rows["each"][4].strip() == "1"  # three items, each ran once: not 3


@pytest.mark.parametrize(
    ("step", "attempts", "output", "shown"),
    [
        ({}, 0, None, ""),
        ({}, 2, None, "2"),
        ({"foreach": [1, 2, 3]}, 3, [1, 2, 3], "1"),
        ({"foreach": "${{ inputs.xs }}"}, 2, None, "1"),  # no retry: one try per item
        ({"foreach": [1, 2, 3], "retry": {"attempts": 3}}, 3, [1, 2, 3], "1"),
        ({"foreach": [1, 2, 3], "retry": {"attempts": 3}}, 9, [1, 2, 3], "3"),
        ({"foreach": [1, 2, 3], "retry": {"attempts": 3}}, 4, [1, 2, 3], "4 calls, 3 items"),
        ({"foreach": [1, 2, 3], "retry": {"attempts": 3}}, 5, None, "5 calls, 3 items"),
        ({"foreach": "${{ inputs.xs }}", "retry": {"attempts": 2}}, 1, None, "1 call"),
        ({"foreach": [7], "retry": {"attempts": 2}}, 2, [7], "2"),
    ],
)
def test_tries_counts_attempts_per_foreach_item(
    step: dict[str, Any], attempts: int, output: Any, shown: str
) -> None:
    spec = Step.model_validate({"id": "s", "tool": "test.echo", **step})
    assert tries(spec, attempts, output) == shown


@pytest.mark.anyio
async def test_the_summary_of_a_run_with_retried_items(tools: ToolRegistry) -> None:
    failed_once: set[int] = set()

    @tool(name="test.flaky", side_effects="none")
    async def flaky(n: int) -> int:
        """Fail the first call for 2, succeed otherwise.

        Args:
            n: The item.
        """
        if n == 2 and n not in failed_once:
            failed_once.add(n)
            raise ToolError("not yet", retryable=True)
        return n

    plan = Plan.model_validate(
        {
            "name": "retried",
            "steps": [
                {
                    "id": "each",
                    "foreach": [1, 2, 3],
                    "tool": "test.flaky",
                    "args": {"n": "${{ item }}"},
                    "retry": {"attempts": 3, "backoff": 0.01},
                }
            ],
        }
    )
    result = await Executor(ToolRegistry([*tools, flaky]), tracing=None).run(plan, {})
    out = io.StringIO()

    render_result(result, Console(file=out, width=200, color_system=None), plan=plan)

    assert result.steps["each"].attempts == 4
    row = next(line for line in out.getvalue().splitlines() if "│ each" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]][:4] == [
        "each",
        "test.flaky",
        "succeeded",
        "4 calls, 3 items",
    ]


def test_the_live_table_shows_tries_per_item_and_failures_as_text(tools: ToolRegistry) -> None:
    compiled = compile_plan(
        {
            "name": f"live {HOSTILE}",
            "steps": [
                {"id": "each", "foreach": [1, 2, 3], "tool": "test.echo", "args": {}},
                {"id": "bad", "tool": "test.fail", "args": {}},
            ],
        },
        tools,
    )
    out = io.StringIO()
    console = Console(file=out, width=300, color_system=None)
    progress = LiveProgress(compiled, console)
    for n in (1, 2, 3):
        progress.record(StepEvent("attempt", "r", "each", attempt=n))
    progress.record(
        StepEvent("finished", "r", "each", attempt=3, status="succeeded", output=[1, 2, 3])
    )
    error = ErrorInfo(failure_mode=FailureMode.TOOL_ERROR, message=HOSTILE)
    progress.record(StepEvent("finished", "r", "bad", attempt=1, status="failed", error=error))

    console.print(progress._table())

    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].rstrip() == f"plan live {SHOWN}"
    cells = {
        row[0]: row for row in ([c.strip() for c in line.split("│")[1:-1]] for line in lines) if row
    }
    assert cells["each"][:4] == ["each", "test.echo", "succeeded", "1"]
    assert cells["bad"][2:4] == ["failed", "1"]
    assert cells["bad"][5] == f"tool_error: {SHOWN}"
    assert RAW.search(text) is None


def test_ask_prints_the_answer_plans_and_cited_outputs_as_text(
    with_test_tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.models

    answer = "It says [/bold] \x1b[m\x9bK\u202e [a]"  # no digit: no number to verify
    model = ScriptedModel(
        [
            {"steps": [{"id": "a", "tool": "test.echo", "args": {"value": {"said": HOSTILE}}}]},
            {"answer": answer, "cited_steps": ["a"], "complete": True},
            {"passed": True, "reason": "yes"},
        ]
    )
    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model)

    result = invoke("ask", "What does it say?", "--no-memory", "--show-plan")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # JSON escapes C0 controls itself; what is left (C1, bidi) is shown escaped
    said = r'"[/bold][link=https://evil.example]x \u001b]8;;https://evil.example\u001b\\y \u001b]52;c;eA==\u0007\x9b2J\u202e"'
    plan = next(i for i, line in enumerate(lines) if line.startswith("─") and " plan 1 " in line)
    assert lines[plan + 1 : plan + 6] == [
        "  a test.echo",
        "      {",
        '        "value": {',
        f'          "said": {said}',
        "        }",
    ]
    assert r"It says [/bold] \x1b[m\x9bK\u202e [a]" in lines
    assert f'  [a] test.echo (succeeded): {{"said": {said}}}' in lines
    assert RAW.search(result.stdout) is None


def test_validate_prints_a_path_with_brackets_as_it_is(tmp_path: Path) -> None:
    plan = write(tmp_path, "[bold]plan[red].yaml", INPUTS_PLAN)
    result = invoke("validate", plan)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{plan}: ok (1 step)\n"


def test_ask_prints_the_runs_error_once_after_the_answer(
    with_test_tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.models

    model = ScriptedModel(
        [
            {"steps": [{"id": "a", "tool": "test.echo", "args": {"value": "north"}}]},
            {"answer": "The region is north [a].", "cited_steps": ["a"], "complete": True},
            {"passed": False, "reason": "the goal asked for the south"},
        ]
    )
    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model)

    result = invoke("ask", "Which region?", "--no-memory")

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    error = "goal_not_met: verification: the goal asked for the south"
    assert lines.count(error) == 1
    answer = lines.index("The region is north [a].")
    assert lines[answer + 1 : answer + 3] == ["  [a] test.echo (succeeded): north", error]
