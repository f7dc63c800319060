"""The ``dagentic`` command line, through typer's CliRunner and as the installed script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dagentic.cli import app
from dagentic.plan import plan_json_schema
from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "plans" / "hello.yaml"
DAGENTIC = Path(sys.executable).parent / "dagentic"

# Rich must not colour or wrap what the tests read.
_ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None, "COLUMNS": "400"}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dagentic.toml or DAGENTIC_* variables from around the tests reach the CLI.
    (conftest resets the structlog configuration the CLI sets up on every call.)"""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DAGENTIC_"):
            monkeypatch.delenv(name)


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args], env=_ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


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


def test_approval_step_without_yes_and_without_a_terminal_is_policy_blocked(tmp_path: Path) -> None:
    plan = write(tmp_path, "approval.yaml", APPROVAL_PLAN)
    result = invoke("run", plan, "--json")
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


def run_script(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAGENTIC_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    return subprocess.run(
        [str(DAGENTIC), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


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
