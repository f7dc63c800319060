"""Every command over hostile data: nothing a terminal acts on reaches it.

Each test runs one command, end to end, over text that carries an OSC 52 clipboard write,
an OSC 8 hyperlink, a screen clear (CSI 2J), a C1 CSI (0x9b), a bidi override (U+202E)
and Rich markup (``[link=...]``, an unmatched ``[/bold]``), from wherever that command
reads outside text: plan files, tool outputs and errors, logs, model replies, run files,
memory, tool descriptions, settings, sandboxed code, file names and the command line.
It checks that no raw control or bidi character reaches standard output or error, that
the markup is printed as text, and that ``--json`` is printable ASCII that reads back to
the exact text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from dagentic import ScriptedModel, ToolRegistry, tool
from dagentic.memory import MemoryStore, MiniLMEmbedder
from dagentic.memory import store as memory_store
from typer.testing import Result

from tests.cli import invoke, isolate, run_script

HOSTILE = (
    "[/bold][link=http://x]x\x1b]52;c;eA==\x07 \x1b]8;;http://x\x1b\\y\x1b]8;;\x1b\\ "
    "\x1b[2J \u202e \x9b[/link]"
)
SHOWN = (
    r"[/bold][link=http://x]x\x1b]52;c;eA==\x07 \x1b]8;;http://x\x1b\y\x1b]8;;\x1b\ "
    r"\x1b[2J \u202e \x9b[/link]"
)
# The same as a JSON string: C0 controls escaped by JSON, the rest by --json's ASCII.
AS_JSON = (
    r'"[/bold][link=http://x]x\u001b]52;c;eA==\u0007 \u001b]8;;http://x\u001b\\y'
    r'\u001b]8;;\u001b\\ \u001b[2J \u202e \u009b[/link]"'
)
# A JSON string in human output (a plan's arguments, a setting): JSON escapes C0, the
# display escapes the rest.
SHOWN_JSON = AS_JSON.replace(r"\u009b", r"\x9b")
FILE_NAME = "x\x1b[2J\u202e[bold].yaml"
FILE_SHOWN = r"x\x1b[2J\u202e[bold].yaml"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
ASCII = re.compile(r"[\x20-\x7e\n]*")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


@tool(name="test.hostile", side_effects="none")
async def hostile_tool(value: Any = None) -> Any:
    """[/bold][link=http://x]x\x1b]52;c;eA==\x07 \x1b]8;;http://x\x1b\\y\x1b]8;;\x1b\\ \x1b[2J \u202e \x9b[/link]

    Args:
        value: Returned as it is.
    """
    return value


@pytest.fixture
def with_test_tools(tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch) -> ToolRegistry:
    """The CLI sees the test tools (test.echo, test.fail, test.hostile, ...)."""
    import dagentic.cli

    registry = ToolRegistry([*(t for t in tools if not t.planning_context), hostile_tool])
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: registry)
    return registry


def shown(result: Result | Any) -> tuple[str, str]:
    """Standard output and error of a command, checked for raw controls and bidi."""
    out, err = result.stdout, result.stderr
    assert RAW.search(out) is None, out
    assert RAW.search(err) is None, err
    return out, err


def json_of(out: str) -> Any:
    assert ASCII.fullmatch(out), out
    return json.loads(out)


def plan_file(path: Path, plan: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


HOSTILE_PLAN = {
    "name": f"plan {HOSTILE}",
    "steps": [
        {"id": "say", "tool": "notify.log", "args": {"message": HOSTILE, "data": {HOSTILE: 1}}},
        {"id": "echo", "tool": "test.echo", "args": {"value": {HOSTILE: HOSTILE}}},
        {"id": "bad", "tool": "test.fail", "args": {"message": HOSTILE}},
    ],
    "outputs": {"text": "${{ steps.say.output.message }}"},
}


def run_id_of(out: str) -> str:
    return re.search(r"\(run ([0-9a-f]{32})\)", out)[1]  # type: ignore[index]


def test_run_shows_the_plan_tool_outputs_errors_and_logs_escaped(
    tmp_path: Path, with_test_tools: ToolRegistry
) -> None:
    plan = plan_file(tmp_path / "plan.yaml", HOSTILE_PLAN)

    out, err = shown(invoke("run", plan))

    lines = out.splitlines()
    assert lines[0] == f"run {run_id_of(out)} of plan plan {SHOWN}"
    assert f"  text: {SHOWN}" in lines
    assert lines[-1] == f"tool_error: step 'bad' failed: {SHOWN}"
    # What notify.log logged (a field named by the plan too), and the journal's failure.
    [said] = [line for line in err.splitlines() if line.endswith(" step_id=say")]
    assert said.endswith(f"] {SHOWN} {SHOWN}=1 run_id={run_id_of(out)} step_id=say")
    assert "failure_mode=tool_error" in err


def test_run_json_is_ascii_and_reads_back_exactly(
    tmp_path: Path, with_test_tools: ToolRegistry
) -> None:
    plan = plan_file(tmp_path / "plan.yaml", HOSTILE_PLAN)

    out, _ = shown(invoke("run", plan, "--json"))

    data = json_of(out)
    assert data["plan"] == f"plan {HOSTILE}"
    assert data["steps"]["echo"]["output"] == {HOSTILE: HOSTILE}
    assert data["steps"]["bad"]["error"]["message"] == HOSTILE
    assert data["error"]["message"] == f"step 'bad' failed: {HOSTILE}"
    assert f'"text": {AS_JSON}' in out


def test_trace_and_report_show_run_files_escaped(
    tmp_path: Path, with_test_tools: ToolRegistry
) -> None:
    plan = plan_file(tmp_path / "plan.yaml", HOSTILE_PLAN)
    run_id = run_id_of(invoke("run", plan).stdout)

    out, _ = shown(invoke("trace", run_id))
    lines = out.splitlines()
    assert lines[0].startswith(f"run plan {SHOWN} {run_id} failed in ")
    assert lines[1] == f"tool_error: step 'bad' failed: {SHOWN}"
    assert f"  bad (test.fail) tool_error: {SHOWN}" in lines
    out, _ = shown(invoke("trace", run_id, "--json"))
    failures = json_of(out)["failures"]
    assert [f["message"] for f in failures] == [HOSTILE]

    out, _ = shown(invoke("report"))
    assert SHOWN in out
    out, _ = shown(invoke("report", "--json"))
    modes = json_of(out)["failure_modes"]
    assert modes[0]["example"]["message"] == HOSTILE


def test_trace_of_a_hostile_run_id_names_it_escaped() -> None:
    result = invoke("trace", HOSTILE)

    _, err = shown(result)
    assert result.exit_code == 2
    assert err.startswith(f"error: no trace of run '{SHOWN}' in ")


def test_ask_shows_plans_answers_and_errors_escaped(
    with_test_tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.models

    def model() -> ScriptedModel:
        return ScriptedModel(
            [
                {"steps": [{"id": "a", "tool": "test.echo", "args": {"value": HOSTILE}}]},
                {"answer": HOSTILE, "cited_steps": ["a"], "complete": True},
                {"passed": False, "reason": HOSTILE},
            ]
        )

    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model())
    result = invoke("ask", "What does it say?", "--no-memory", "--show-plan")

    out, _ = shown(result)
    assert result.exit_code == 1
    lines = out.splitlines()
    assert f'        "value": {SHOWN_JSON}' in lines  # the plan's argument
    assert SHOWN in lines  # the answer
    assert f"  [a] test.echo (succeeded): {SHOWN}" in lines
    assert lines.count(f"goal_not_met: verification: {SHOWN}") == 1

    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model())
    out, _ = shown(invoke("ask", "What does it say?", "--no-memory", "--json"))
    data = json_of(out)
    assert data["answer"] == HOSTILE
    assert data["error"]["message"] == f"verification: {HOSTILE}"


def seed_memory(path: Path, text: str, provenance: str) -> None:
    """One item in a memory file made for the default embedder (the model never loads)."""
    store = MemoryStore(path, MiniLMEmbedder())

    async def work() -> None:
        vector = [0.0] * store.embedder.dimensions
        vector[0] = 1.0
        await store.insert(text, provenance=provenance, embedding=vector)

    anyio.run(work)
    entry = memory_store._OPEN.pop(str(path.resolve()), None)
    if entry is not None:
        entry[0].close()


def test_memory_list_shows_remembered_text_escaped(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    seed_memory(path, HOSTILE, f"untrusted:{HOSTILE}")
    env = {"DAGENTIC_MEMORY__PATH": str(path), "COLUMNS": "400"}

    out, _ = shown(run_script("memory", "list", cwd=tmp_path, env=env))
    [row] = [line for line in out.splitlines() if "untrusted:" in line]
    assert f"untrusted:{SHOWN}" in row
    assert SHOWN in row.split("│")[5]

    out, _ = shown(run_script("memory", "list", "--json", cwd=tmp_path, env=env))
    [item] = json_of(out)
    assert (item["text"], item["provenance"]) == (HOSTILE, f"untrusted:{HOSTILE}")


def test_tools_show_a_tool_description_escaped(with_test_tools: ToolRegistry) -> None:
    out, _ = shown(invoke("tools"))
    [row] = [line for line in out.splitlines() if "test.hostile" in line]
    assert SHOWN in row

    out, _ = shown(invoke("tools", "--json"))
    [spec] = [t for t in json_of(out) if t["name"] == "test.hostile"]
    assert spec["description"] == hostile_tool.description


def test_config_show_shows_a_setting_from_the_environment_escaped() -> None:
    env = {"DAGENTIC_MEMORY__AGENT": HOSTILE}

    out, _ = shown(invoke("config", "show", env=env))
    assert f"agent = {SHOWN_JSON}  # DAGENTIC_MEMORY__AGENT" in out.splitlines()

    out, _ = shown(invoke("config", "show", "--json", env=env))
    [entry] = [e for e in json_of(out) if e["key"] == "memory.agent"]
    assert entry["value"] == HOSTILE


def test_sandbox_run_shows_what_the_code_printed_escaped(tmp_path: Path) -> None:
    code = tmp_path / FILE_NAME.replace(".yaml", ".py")
    code.write_text(
        f"import sys\nprint({HOSTILE!r})\nprint({HOSTILE!r}, file=sys.stderr)\n"
        f"result = {HOSTILE!r}\n",
        encoding="utf-8",
    )

    result = invoke("sandbox", "run", "--backend", "process", code)
    out, err = shown(result)
    assert result.exit_code == 0, err
    assert out == SHOWN + "\n"
    assert err.startswith(SHOWN + "\n")
    assert f"result={SHOWN}" in err

    out, _ = shown(invoke("sandbox", "run", "--backend", "process", code, "--json"))
    data = json_of(out)
    assert (data["stdout"], data["stderr"], data["result"]) == (
        HOSTILE + "\n",
        HOSTILE + "\n",
        HOSTILE,
    )

    missing = tmp_path / FILE_NAME.replace(".yaml", "-missing.py")
    result = invoke("sandbox", "run", missing)
    _, err = shown(result)
    assert result.exit_code == 2
    assert err.startswith(
        f"error: cannot read {tmp_path}/{FILE_SHOWN.replace('.yaml', '-missing.py')}: "
    )


def test_validate_and_graph_show_a_file_name_and_plan_name_escaped(tmp_path: Path) -> None:
    good = plan_file(
        tmp_path / FILE_NAME,
        {"name": HOSTILE, "steps": [{"id": "a", "tool": "notify.log", "args": {"message": "hi"}}]},
    )
    bad = plan_file(
        tmp_path / FILE_NAME.replace(".yaml", "-bad.yaml"),
        {"name": "bad", "steps": [{"id": "a", "tool": HOSTILE}]},
    )

    result = invoke("validate", good, bad)
    out, err = shown(result)
    assert result.exit_code == 2
    assert out == f"{tmp_path}/{FILE_SHOWN}: ok (1 step)\n"
    assert err.startswith(f"{tmp_path}/{FILE_SHOWN.replace('.yaml', '-bad.yaml')}:4:")

    out, _ = shown(invoke("graph", good, "--format", "dot"))
    assert out.splitlines()[0] == f'digraph "{SHOWN}" {{'


def test_index_search_shows_what_documents_hold_escaped(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "otters.md").write_text(
        f"---\ntitle: {json.dumps(HOSTILE)}\nurl: {json.dumps('http://x/' + HOSTILE)}\n---\n"
        f"Otters {HOSTILE} were seen near the mill.\n",
        encoding="utf-8",
    )
    index = tmp_path / "index"
    shown(invoke("index", "build", docs, "--index", index, plugins=True))

    out, _ = shown(invoke("index", "search", "otters", "--index", index, plugins=True))
    assert f"   http://x/{SHOWN}" in out.splitlines()
    out, _ = shown(invoke("index", "search", "otters", "--index", index, "--json", plugins=True))
    [found] = json_of(out)
    assert found["url"] == f"http://x/{HOSTILE}"


OPTION = "--x\x1b[2J\u202e\x9b[bold]"  # no '=': click would cut the name there


@pytest.mark.parametrize(
    ("args", "usage", "message"),
    [
        (
            ["run", OPTION],
            "dagentic run [OPTIONS] {plan}",
            r"No such option: --x\x1b[2J\u202e\x9b[bold]",
        ),
        (
            ["tools", HOSTILE],
            "dagentic tools [OPTIONS]",
            f"Got unexpected extra argument(s) ({SHOWN})",
        ),
        (
            ["graph", "p.yaml", "--format", HOSTILE],
            "dagentic graph [OPTIONS] {plan}",
            f"Invalid value for '--format' / '-f': Value error, {HOSTILE!r} is not one of "
            "'mermaid', 'dot', 'png'.",
        ),
        ([HOSTILE], "dagentic [OPTIONS] COMMAND [ARGS]...", f"No such command {HOSTILE!r}."),
    ],
)
def test_a_usage_error_shows_what_was_typed_escaped(
    tmp_path: Path, args: list[str], usage: str, message: str
) -> None:
    result = run_script(*args, cwd=tmp_path)

    out, err = shown(result)
    assert result.returncode == 2
    assert out == ""
    command = usage.split(" [OPTIONS]")[0]
    assert err.splitlines() == [
        f"Usage: {usage}",
        f"Try '{command} --help' for help.",
        f"error: {message}",
    ]
