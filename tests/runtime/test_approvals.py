"""Approvals: one prompt at a time, each answer bound to the prompt it answers, arguments
shown whole; and ``agent.approve``, which gates the calls of plans a model wrote.

The terminal tests drive the installed ``dagentic run`` on a real pseudo-terminal (standard
input and error on it, as a person's shell has them), read each prompt as it appears and
answer it, and tell which calls ran from rows the calls wrote to a real DuckDB file.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest
import yaml
from dagentic import Executor, ScriptedModel, Settings, StepStatus, ToolRegistry, tool
from dagentic.agent import Agent, Budgets
from dagentic.approvals import TerminalApprover
from rich.console import Console

from tests.cli import DAGENTIC, invoke, isolate, script_env

SAFETY = 120  # seconds: a safety net far above what a run takes
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\r")
QUESTION = re.compile(r"Run step '(\w+)'(?:, item (\d+) \(of \d+, numbered from 0\))?\? \[y/n\]: ")
HEADER = re.compile(r"approval: step '(\w+)'(?:, item (\d+) \(of \d+, numbered from 0\))? wants")
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


# --------------------------------------------------------------------------- a terminal


@dataclass
class Session:
    """What a run on the pseudo-terminal did: exit code, standard output, what the
    terminal showed (ANSI sequences removed) and each prompt's (step, item, answer)."""

    code: int
    stdout: str
    screen: str
    prompts: list[tuple[str, int | None, str]] = field(default_factory=list)


Answer = Callable[[str, int | None, list[tuple[str, int | None, str]]], str]


def drive(args: list[str], answer: Answer, cwd: Path, typed_ahead: bytes = b"") -> Session:
    """``dagentic ARGS`` with standard input and error on a new pseudo-terminal, 200 columns
    by 50 rows; each prompt gets ``answer(step, item, prompts so far)``, typed after the
    prompt appeared. ``typed_ahead`` is typed before the command starts."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    if typed_ahead:
        os.write(master, typed_ahead)
    process = subprocess.Popen(
        [str(DAGENTIC), *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=cwd,
        env=script_env({"COLUMNS": "200", "LINES": "50"}),
    )
    os.close(slave)
    raw, seen = b"", 0
    session = Session(0, "", "")
    deadline = time.monotonic() + SAFETY
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the command ended: the terminal is gone
                break
            if not chunk:
                break
            raw += chunk
            screen = ANSI.sub("", raw.decode(errors="replace"))
            for match in QUESTION.finditer(screen, seen):
                seen = match.end()
                step, item = match[1], int(match[2]) if match[2] is not None else None
                reply = answer(step, item, session.prompts)
                session.prompts.append((step, item, reply))
                os.write(master, reply.encode() + b"\n")
        assert process.stdout is not None
        session.stdout = process.stdout.read().decode()
        session.code = process.wait(timeout=SAFETY)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
        os.close(master)
    session.screen = ANSI.sub("", raw.decode(errors="replace"))
    return session


def ledger(tmp_path: Path) -> Path:
    """A DuckDB file the plans may write (a source with allow_write), and the settings
    that make it so; each call of the plans below writes one row naming itself."""
    path = tmp_path / "ledger.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE entries (call VARCHAR)")
    (tmp_path / "dagentic.toml").write_text(
        '[sql.sources.ledger]\npath = "ledger.duckdb"\nallow_write = true\n', encoding="utf-8"
    )
    return path


def rows(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return sorted(r[0] for r in con.execute("SELECT call FROM entries").fetchall())


def insert(call: str) -> dict[str, Any]:
    return {"sql": f"INSERT INTO ledger.entries VALUES ('{call}')"}


def write_plan(tmp_path: Path, steps: list[dict[str, Any]]) -> Path:
    path = tmp_path / "plan.yaml"
    plan = {"name": "approvals", "steps": steps}
    path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    return path


def approved(step: dict[str, Any]) -> dict[str, Any]:
    return {**step, "tool": "sql.query", "approval": "required"}


PARALLEL = [
    approved({"id": "a", "args": insert("a")}),
    approved({"id": "b", "args": insert("b")}),
    approved({"id": "c", "args": insert("c")}),
    approved({"id": "each", "foreach": [0, 1, 2], "args": insert("each ${{ item }}")}),
]


def call_name(step: str, item: int | None) -> str:
    return step if item is None else f"{step} {item}"


def asked_one_at_a_time(screen: str) -> list[tuple[str, int | None]]:
    """The calls the screen asked about, in order, checking that each prompt's question
    came before the next prompt began."""
    events = sorted(
        [(m.start(), "header", m[1], m[2]) for m in HEADER.finditer(screen)]
        + [(m.start(), "question", m[1], m[2]) for m in QUESTION.finditer(screen)]
    )
    calls = []
    for n in range(0, len(events), 2):
        header, question = events[n], events[n + 1]  # "Please answer y or n." re-asks: none here
        assert (header[1], question[1]) == ("header", "question"), events
        assert header[2:] == question[2:], events
        calls.append((header[2], int(header[3]) if header[3] is not None else None))
    return calls


@pytest.mark.parametrize("attempt", range(4))
def test_parallel_steps_and_foreach_items_ask_in_turn_and_each_answer_binds_to_its_prompt(
    tmp_path: Path, attempt: int
) -> None:
    path = ledger(tmp_path)
    plan = write_plan(tmp_path, PARALLEL)

    def answer(step: str, item: int | None, prompts: list[tuple[str, int | None, str]]) -> str:
        if item is not None:
            return "y"
        steps_asked = sum(1 for s, i, _ in prompts if i is None)
        return "yny"[steps_asked]  # the parallel steps get y, n, y in the order they ask

    session = drive(["run", str(plan)], answer, tmp_path)

    assert session.code == 1, session.screen
    calls = {call_name(s, i): reply for s, i, reply in session.prompts}
    assert sorted(calls) == ["a", "b", "c", "each 0", "each 1", "each 2"]
    assert asked_one_at_a_time(session.screen) == [(s, i) for s, i, _ in session.prompts]
    assert rows(path) == sorted(c for c, reply in calls.items() if reply == "y")
    [refused] = [c for c, reply in calls.items() if reply == "n"]
    assert session.stdout.splitlines()[-1] == (
        f"policy_blocked: step '{refused}': approval was denied"
    )


@pytest.mark.parametrize("attempt", range(3))
def test_a_refused_foreach_item_never_runs(tmp_path: Path, attempt: int) -> None:
    path = ledger(tmp_path)
    plan = write_plan(tmp_path, [PARALLEL[3]])

    session = drive(["run", str(plan)], lambda s, i, prompts: "yny"[len(prompts)], tmp_path)

    assert session.code == 1, session.screen
    [(_, refused, _)] = [p for p in session.prompts if p[2] == "n"]
    said_yes = {f"each {i}" for _, i, reply in session.prompts if reply == "y"}
    assert f"each {refused}" not in rows(path)
    assert set(rows(path)) <= said_yes
    assert session.stdout.splitlines()[-1] == (
        f"policy_blocked: step 'each': item {refused}: approval was denied"
    )


def test_an_answer_typed_before_the_prompt_appeared_does_not_answer_it(tmp_path: Path) -> None:
    path = ledger(tmp_path)
    plan = write_plan(tmp_path, [approved({"id": "a", "args": insert("a")})])

    session = drive(["run", str(plan)], lambda *_: "n", tmp_path, typed_ahead=b"y\n")

    assert session.prompts == [("a", None, "n")]
    assert rows(path) == []
    assert session.code == 1
    assert session.stdout.splitlines()[-1] == "policy_blocked: step 'a': approval was denied"


def test_the_tail_of_a_long_argument_is_shown_in_the_prompt(tmp_path: Path) -> None:
    path = ledger(tmp_path)
    payload = "x" * 5000 + " and then: DROP TABLE entries"  # what a cut prompt would hide
    plan = write_plan(tmp_path, [approved({"id": "a", "args": insert(payload)})])

    session = drive(["run", str(plan)], lambda *_: "n", tmp_path)

    prompt = session.screen[session.screen.index("approval: step 'a'") :]
    prompt = prompt[: prompt.index("Run step 'a'?")]
    assert f'  "sql": "INSERT INTO ledger.entries VALUES (\'{payload}\')",' in prompt.splitlines()
    assert "cut" not in prompt
    assert rows(path) == []


# --------------------------------------------------------------------------- the prompt


@tool(name="test.send", side_effects="write")
async def send(message: str = "", values: list[int] | None = None) -> None:
    """Send.

    Args:
        message: What.
        values: Which.
    """


def prompted(args: dict[str, Any], answers: str, item: Any = None) -> tuple[bool, list[str]]:
    """What the terminal approver said to ``answers`` about a call of test.send with
    ``args``, and what it printed, on a screen 20 lines high."""
    out = io.StringIO()
    console = Console(file=out, width=120, height=20, color_system=None)
    approver = TerminalApprover(console, input=io.StringIO(answers))
    said = anyio.run(lambda: approver("notify", send, args, item=item))
    assert RAW.search(out.getvalue()) is None
    return said, out.getvalue().splitlines()


def test_the_prompt_names_the_item_and_shows_the_arguments_whole_and_escaped() -> None:
    args = {"message": "[/bold][link=http://x]hi\x1b]52;c;eA==\x07\u202e\x9b", "values": [1]}

    said, lines = prompted(args, "maybe\ny\n", item=(1, 3))

    assert said is True
    what = "step 'notify', item 1 (of 3, numbered from 0)"
    assert lines == [
        f"approval: {what} wants to call test.send (side effects: write) with these arguments:",
        "{",
        r'  "message": "[/bold][link=http://x]hi\u001b]52;c;eA==\u0007\u202e\u009b",',
        '  "values": [',
        "    1",
        "  ]",
        "}",
        f"Run {what}? [y/n]: Please answer y or n.",
        f"Run {what}? [y/n]: ",
    ]


def test_arguments_taller_than_the_screen_are_shown_whole_with_their_length() -> None:
    args = {"values": list(range(40)), "message": "the tail"}

    said, lines = prompted(args, "")  # end of input: refused

    assert said is False
    shown = lines[1 : lines.index("}") + 1]
    assert len(shown) == 45
    assert shown[-2:] == ['  "message": "the tail"', "}"]
    chars = len("\n".join(shown))
    assert lines[len(shown) + 1 :] == [
        f"(the arguments above are 45 lines, {chars} characters, all shown: scroll up to read "
        "them)",
        "Run step 'notify'? [y/n]: ",
    ]


# --------------------------------------------------------------------------- the protocol


@pytest.mark.anyio
async def test_an_approver_is_told_the_foreach_item_if_it_takes_item(
    tools: ToolRegistry, settings: Settings
) -> None:
    told: list[Any] = []
    plain: list[Any] = []

    async def with_item(step_id: str, tool: Any, args: dict[str, Any], *, item: Any) -> bool:
        told.append((step_id, args["value"], item))
        return True

    async def without(step_id: str, tool: Any, args: dict[str, Any]) -> bool:
        plain.append((step_id, args["value"]))
        return args["value"] != "b"

    plan = {
        "name": "items",
        "steps": [
            {
                "id": "each",
                "foreach": ["a", "b"],
                "tool": "test.echo",
                "args": {"value": "${{ item }}"},
                "approval": "required",
                "max_parallel": 1,
            },
            {"id": "one", "tool": "test.echo", "args": {"value": "x"}, "approval": "required"},
        ],
    }

    result = await Executor(tools, settings=settings, approver=with_item, tracing=None).run(plan)
    assert result.succeeded
    assert sorted(told) == [("each", "a", (0, 2)), ("each", "b", (1, 2)), ("one", "x", None)]

    result = await Executor(tools, settings=settings, approver=without, tracing=None).run(plan)
    assert result.steps["each"].error.message == "step 'each': item 1: approval was denied"
    assert sorted(plain) == [("each", "a"), ("each", "b"), ("one", "x")]


# --------------------------------------------------------------------------- agent.approve

WRITE_PLAN = {
    "steps": [
        {"id": "look", "tool": "test.echo", "args": {"value": 1}},
        {"id": "save", "tool": "test.write", "args": {"text": "saved"}},
    ]
}
ANSWER = {"answer": "Saved it [save].", "cited_steps": ["save"], "complete": True}
PASS = {"passed": True, "reason": "yes"}


class Recorder:
    """An approver that says ``yes`` and remembers what it was asked."""

    def __init__(self, yes: bool = True) -> None:
        self.asked: list[tuple[str, str, str]] = []
        self.yes = yes

    async def __call__(self, step_id: str, tool: Any, args: dict[str, Any]) -> bool:
        self.asked.append((step_id, tool.name, tool.side_effects))
        return self.yes


def agent(
    replies: list[Any], tools: ToolRegistry, settings: Settings, approve: str, **options: Any
) -> Agent:
    budgets = Budgets(max_replans=0, approve=approve)  # type: ignore[arg-type]
    return Agent(ScriptedModel(replies), tools, settings=settings, budgets=budgets, **options)


def no_context(tools: ToolRegistry) -> ToolRegistry:
    return ToolRegistry([t for t in tools if not t.planning_context])


@pytest.mark.anyio
async def test_a_models_write_step_is_refused_when_nothing_can_approve_it(
    tools: ToolRegistry, settings: Settings
) -> None:
    # Without a durable journal to wait in (with one, the step waits: test_durable.py).
    result = await agent(
        [WRITE_PLAN, ANSWER, PASS], no_context(tools), settings, "writes", journal=None
    ).run("Save it")

    assert result.steps["look"].status is StepStatus.SUCCEEDED
    save = result.steps["save"]
    assert (save.status, save.attempts) == (StepStatus.FAILED, 0)
    assert save.error is not None
    assert save.error.failure_mode.value == "policy_blocked"
    assert save.error.message == (
        "step 'save' of the model's plan needs approval (agent.approve is 'writes' and this "
        "call of test.write has side effects 'write'), and nothing can approve it here: run "
        "`dagentic ask` on a terminal to be asked, pass --yes to approve every step, or set "
        'agent.approve = "none" to run such steps unasked'
    )
    [plan] = result.plans
    assert [s.get("approval") for s in plan["steps"]] == [None, "required"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("approve", "asked"),
    [
        ("writes", [("save", "test.write", "write")]),
        ("all", [("look", "test.echo", "none"), ("save", "test.write", "write")]),
        ("none", []),
    ],
)
async def test_agent_approve_says_which_calls_of_a_models_plan_are_asked(
    tools: ToolRegistry, settings: Settings, approve: str, asked: list[Any]
) -> None:
    approver = Recorder()
    result = await agent(
        [WRITE_PLAN, ANSWER, PASS], no_context(tools), settings, approve, approver=approver
    ).run("Save it")

    assert result.succeeded, result.error
    assert sorted(approver.asked) == asked


@pytest.mark.anyio
async def test_writes_and_egress_are_decided_per_call_from_what_the_call_does(
    tools: ToolRegistry, settings: Settings
) -> None:
    @tool(
        name="test.table",
        side_effects="write",
        effects=lambda args, _: "write" if args["op"] == "insert" else "read",
    )
    async def table(op: str) -> str:
        """Read or insert.

        Args:
            op: read or insert.
        """
        return op

    @tool(name="test.post", side_effects="read", egress={"body": "content"})
    async def post(body: str | None = None) -> str:
        """Send ``body`` out, if there is one.

        Args:
            body: What leaves the machine.
        """
        return body or ""

    plan = {
        "steps": [
            {"id": "read", "tool": "test.table", "args": {"op": "read"}},
            {"id": "insert", "tool": "test.table", "args": {"op": "insert"}},
            {"id": "ping", "tool": "test.post", "args": {}},
            {"id": "send", "tool": "test.post", "args": {"body": "hello"}},
        ]
    }
    approver = Recorder()
    registry = ToolRegistry([*no_context(tools), table, post])
    answer = {"answer": "Done [insert].", "cited_steps": ["insert"], "complete": True}

    result = await agent([plan, answer, PASS], registry, settings, "writes", approver=approver).run(
        "Insert"
    )

    assert result.succeeded, result.error
    assert sorted(approver.asked) == [
        ("insert", "test.table", "write"),
        ("send", "test.post", "read"),
    ]
    assert [s.get("approval") for s in result.plans[0]["steps"]] == ["required"] * 4


@pytest.mark.anyio
async def test_each_plan_is_given_to_on_plan_before_its_steps_run(
    tools: ToolRegistry, settings: Settings
) -> None:
    events: list[str] = []

    @tool(name="test.mark", side_effects="write")
    async def mark(text: str) -> str:
        """Mark.

        Args:
            text: What.
        """
        events.append(f"ran {text}")
        return text

    async def approve(step_id: str, tool: Any, args: dict[str, Any]) -> bool:
        events.append(f"asked {step_id}")
        return True

    plan = {"steps": [{"id": "m", "tool": "test.mark", "args": {"text": "x"}}]}
    answer = {"answer": "Marked [m].", "cited_steps": ["m"], "complete": True}
    registry = ToolRegistry([*no_context(tools), mark])

    def on_plan(shown: dict[str, Any]) -> None:
        events.append(f"plan {shown['version']}: {shown['steps']}")

    result = await agent(
        [plan, answer, PASS], registry, settings, "writes", approver=approve, on_plan=on_plan
    ).run("Mark")

    assert result.succeeded, result.error
    step = {"id": "m", "tool": "test.mark", "args": {"text": "x"}, "approval": "required"}
    assert events == [f"plan 1: {[step]}", "asked m", "ran x"]


# --------------------------------------------------------------------------- dagentic ask


@pytest.fixture
def ask_tools(tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch) -> ToolRegistry:
    import dagentic.cli

    registry = no_context(tools)
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: registry)
    return registry


def scripted(monkeypatch: pytest.MonkeyPatch, replies: list[Any]) -> None:
    import dagentic.models

    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: ScriptedModel(list(replies)))


def test_ask_without_a_terminal_lets_a_models_write_wait_for_approval(
    ask_tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, [WRITE_PLAN, ANSWER, PASS])

    result = invoke("ask", "Save it", "--no-memory", env={"DAGENTIC_AGENT__MAX_REPLANS": "0"})

    assert result.exit_code == 3, result.output
    waits = next(line for line in result.stdout.splitlines() if "│ save " in line)
    assert "waiting" in waits
    assert "dagentic approve" in result.stderr


def test_ask_without_a_terminal_nor_journal_refuses_a_models_write_and_says_how_to_allow_it(
    ask_tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, [WRITE_PLAN, ANSWER, PASS])

    result = invoke(
        "ask",
        "Save it",
        "--no-memory",
        env={"DAGENTIC_AGENT__MAX_REPLANS": "0", "DAGENTIC_JOURNAL__ENABLED": "false"},
    )

    assert result.exit_code == 1, result.output
    failure = next(line for line in result.stdout.splitlines() if "│ save " in line)
    assert "policy_blocked: step 'save' of the model's plan needs approval" in failure


def test_ask_yes_approves_a_models_write(
    ask_tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, [WRITE_PLAN, ANSWER, PASS])

    result = invoke("ask", "Save it", "--no-memory", "--yes", "--json")

    assert result.exit_code == 0, result.output
    assert '"written": "saved"' in result.stdout


def test_ask_show_plan_prints_each_plan_before_its_steps_run(
    tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.cli

    @tool(name="test.shout", side_effects="none")
    def shout(text: str) -> str:
        """Print to standard output.

        Args:
            text: What.
        """
        print(f"the tool ran: {text}")
        return text

    registry = ToolRegistry([*no_context(tools), shout])
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: registry)
    plan = {
        "steps": [
            {"id": "say", "tool": "test.shout", "args": {"text": "hi"}},
            {"id": "save", "tool": "test.write", "args": {"text": "${{ steps.say.output }}"}},
        ]
    }
    answer = {"answer": "Said it [say].", "cited_steps": ["say"], "complete": True}
    scripted(monkeypatch, [plan, answer, PASS])

    result = invoke("ask", "Say hi", "--no-memory", "--show-plan", "--yes")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if " plan 1 (1 attempt) " in line)
    assert lines[start + 1 : start + 9] == [
        "  say test.shout",
        "      {",
        '        "text": "hi"',
        "      }",
        "  save test.write  <- say  (needs approval)",
        "      {",
        '        "text": "${{ steps.say.output }}"',
        "      }",
    ]
    assert lines[start + 9].startswith("estimate of plan 'say-hi' ")  # before it runs
    assert "the tool ran: hi" in lines[start + 10 :]
