"""The durable journal at the command line: a run that waits for approval (exit 3),
``dagentic approvals``, ``approve`` and ``deny``, ``resume``, and ``runs`` (list, show,
prune). Each test has its own journal: ``.dagentic/runs/journal.sqlite`` in its tmp_path."""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from dagentic import Settings, ToolRegistry, tool
from dagentic.durable import ApprovalRecord, close_journals, open_journal
from dagentic.durable.store import RunStore
from typer.testing import Result

from tests.cli import invoke, isolate, run_script

JOURNAL = Path(".dagentic/runs/journal.sqlite")  # in the test's tmp_path

# Characters a terminal acts on (as tests/runtime/test_cli.py has them): a hyperlink, a
# clipboard write, a C1 CSI, a bidi override, and Rich markup.
HOSTILE = "[/bold][link=https://evil.example]x \x1b]8;;https://evil.example\x1b\\y \x1b]52;c;eA==\x07\x9b2J\u202e"
SHOWN = r"[/bold][link=https://evil.example]x \x1b]8;;https://evil.example\x1b\y \x1b]52;c;eA==\x07\x9b2J\u202e"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """No dagentic.toml or DAGENTIC_* variables from around the tests; the journal is the
    test's own (under tmp_path, the working folder), closed after it."""
    isolate(tmp_path, monkeypatch)
    yield
    close_journals()


@tool(name="test.count", side_effects="write")
async def count(path: str, text: str) -> dict[str, str]:
    """Append a line to a file: each call leaves one, so a test counts the calls.

    Args:
        path: The file.
        text: The line.
    """
    with open(path, "a", encoding="utf-8") as file:
        file.write(text + "\n")
    return {"text": text}


@pytest.fixture(autouse=True)
def with_count(tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch) -> ToolRegistry:
    """The CLI sees test.count besides the built-in and test tools."""
    import dagentic.cli
    import dagentic.cli_runs

    registry = ToolRegistry([*(t for t in tools if not t.planning_context), count])
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: registry)
    monkeypatch.setattr(dagentic.cli_runs, "_tools", lambda: registry)
    return registry


PLAN = """\
    name: approval
    steps:
      - id: prepare
        tool: test.count
        args: {path: CALLS, text: prepared}
      - id: send
        tool: test.count
        approval: required
        args: {path: CALLS, text: "${{ steps.prepare.output.text }} and sent"}
    outputs:
      sent: ${{ steps.send.output.text }}
    """
EXTRA = "  - id: extra\n    tool: test.count\n    args: {path: CALLS, text: extra}\n"


def plan_file(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "plan.yaml"
    calls = json.dumps(str(tmp_path / "calls.txt"))
    path.write_text(textwrap.dedent(text).replace("CALLS", calls), encoding="utf-8")
    return path


def add_step(plan: Path) -> None:
    """Add step ``extra`` to the plan file (before its outputs)."""
    text = plan.read_text(encoding="utf-8")
    calls = json.dumps(str(plan.parent / "calls.txt"))
    plan.write_text(text.replace("outputs:", EXTRA.replace("CALLS", calls) + "outputs:"), "utf-8")


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def run_id_of(result: Result) -> str:
    return re.search(r"\(run ([0-9a-f]{32})\)", result.stdout)[1]  # type: ignore[index]


def waiting_run(tmp_path: Path, text: str = PLAN) -> tuple[Path, str]:
    """Run the plan that asks for approval: it waits (exit 3). Its file and run id."""
    plan = plan_file(tmp_path, text)
    result = invoke("run", plan)
    assert result.exit_code == 3, result.output
    return plan, run_id_of(result)


def store() -> RunStore:
    journal = open_journal(Settings())
    assert journal is not None
    return journal.store


def stderr_lines(result: Result) -> list[str]:
    """Standard error without the log lines."""
    return [line for line in result.stderr.splitlines() if not re.match(r"\d\d:\d\d:\d\d ", line)]


# --------------------------------------------------------------------------- run waits


def test_a_step_that_asks_without_a_terminal_waits_and_exits_3(tmp_path: Path) -> None:
    plan = plan_file(tmp_path)

    result = invoke("run", plan)

    assert result.exit_code == 3, result.output
    rid = run_id_of(result)
    assert "waiting in " in result.stdout
    assert stderr_lines(result)[:4] == [
        f"waiting: run {rid} waits for a decision on step send; next:",
        "  dagentic approvals",
        f"  dagentic approve {rid} send    (or: dagentic deny {rid} send --reason TEXT)",
        f"  dagentic resume {rid}",
    ]
    assert calls(tmp_path) == ["prepared"]
    record = store().run(rid)
    assert record is not None
    assert (record.status, record.plan_file) == ("waiting", str(plan.resolve()))


def test_run_json_of_a_waiting_run_says_what_waits(tmp_path: Path) -> None:
    result = invoke("run", plan_file(tmp_path), "--json")

    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "waiting"
    assert data["waiting"] == ["send"]
    assert data["steps"]["prepare"]["status"] == "succeeded"
    assert data["steps"]["send"]["status"] == "waiting"
    assert f"waiting: run {data['run_id']} waits for a decision on step send; next:" in (
        result.stderr
    )


def test_without_the_journal_a_step_that_asks_is_refused_and_nothing_can_be_listed(
    tmp_path: Path,
) -> None:
    off = {"DAGENTIC_JOURNAL__ENABLED": "false"}
    result = invoke("run", plan_file(tmp_path), "--json", env=off)
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["steps"]["send"]["error"]["failure_mode"] == ("policy_blocked")

    listed = invoke("approvals", env=off)
    assert listed.exit_code == 1
    assert listed.stderr == (
        "error: the run journal is off (journal.enabled is false): no run is kept to list, "
        "decide or resume\n"
    )


# --------------------------------------------------------------------------- approvals


def test_approvals_lists_the_waiting_call_with_its_resolved_arguments(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)

    result = invoke("approvals")

    assert result.exit_code == 0, result.output
    path = json.dumps(str(tmp_path / "calls.txt"))
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"  requested \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", lines.pop(5))
    assert lines == [
        "1 call waits for a decision",
        "",
        f"run {rid} (plan approval)",
        "  step send: test.count (side effects: write)",
        "  asked for approval: the step requires it",
        "  arguments:",
        "    {",
        f'      "path": {path},',
        '      "text": "prepared and sent"',
        "    }",
        f"  decide: dagentic approve {rid} send  |  dagentic deny {rid} send --reason TEXT",
    ]


def test_approvals_json(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)

    result = invoke("approvals", "--json")

    assert result.exit_code == 0, result.output
    [request] = json.loads(result.stdout)
    assert request.pop("requested_at").endswith("+00:00")
    assert request == {
        "run_id": rid,
        "plan": "approval",
        "step": "send",
        "item": None,
        "tool": "test.count",
        "side_effects": "write",
        "asked_for": "approval",
        "args": {"path": str(tmp_path / "calls.txt"), "text": "prepared and sent"},
        "decision": None,
        "decided_by": None,
        "decided_at": None,
        "reason": None,
    }


def test_approvals_when_nothing_waits() -> None:
    result = invoke("approvals")
    assert (result.exit_code, result.stdout) == (0, "nothing waits for a decision\n")
    assert json.loads(invoke("approvals", "--json").stdout) == []


# --------------------------------------------------------------------------- approve, deny


def test_approve_then_resume_runs_only_what_waited(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)

    approved = invoke("approve", rid[:8], "send", "--by", "alice", "--reason", "checked")

    assert approved.exit_code == 0, approved.output
    assert approved.stdout == (
        f"approved step 'send' of run {rid} (1 call) as alice: checked\n"
        f"next: dagentic resume {rid}\n"
    )
    assert invoke("approvals").stdout == "nothing waits for a decision\n"

    resumed = invoke("resume", rid[:8], "--json")

    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert (data["run_id"], data["status"]) == (rid, "succeeded")
    assert data["outputs"] == {"sent": "prepared and sent"}
    assert calls(tmp_path) == ["prepared", "prepared and sent"]  # prepare ran once
    events = store().events(rid)
    started = [e["step_id"] for e in events if e["kind"] == "started"]
    assert started == ["prepare", "send", "send"]  # send: once to wait, once to run
    assert [e["step_id"] for e in events if e["kind"] == "reused"] == ["prepare"]
    [decision] = store().approvals(rid, waiting=False)
    assert (decision.decision, decision.decided_by, decision.reason) == (
        "approved",
        "alice",
        "checked",
    )
    assert decision.decided_at is not None


def test_approve_is_recorded_as_the_os_user_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    _, rid = waiting_run(tmp_path)

    result = invoke("approve", rid, "send")

    assert result.stdout.splitlines()[0] == f"approved step 'send' of run {rid} (1 call) as carol"
    assert store().approvals(rid, waiting=False)[0].decided_by == "carol"


def test_deny_then_resume_fails_the_step_with_policy_blocked_and_the_reason(
    tmp_path: Path,
) -> None:
    _, rid = waiting_run(tmp_path)

    denied = invoke("deny", rid, "send", "--reason", "not today", "--by", "bob")

    assert denied.exit_code == 0, denied.output
    assert denied.stdout == (
        f"denied step 'send' of run {rid} (1 call) as bob: not today\nnext: dagentic resume {rid}\n"
    )
    resumed = invoke("resume", rid, "--json")
    assert resumed.exit_code == 1, resumed.output
    error = json.loads(resumed.stdout)["steps"]["send"]["error"]
    assert error["failure_mode"] == "policy_blocked"
    assert error["message"] == "step 'send': approval was denied by bob: not today"
    assert calls(tmp_path) == ["prepared"]  # send never ran


def test_deny_needs_a_reason(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)
    result = invoke("deny", rid, "send")
    assert result.exit_code == 2
    assert "Missing option '--reason'" in result.stderr
    assert store().approvals(rid)[0].decision is None


def test_deciding_a_step_that_does_not_wait_names_what_waits(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)

    result = invoke("approve", rid, "prepare")

    assert result.exit_code == 2
    assert result.stderr == (
        f"error: nothing of step 'prepare' waits for a decision in run {rid}; what waits "
        "there: send\n"
    )
    assert invoke("approve", rid, "send").exit_code == 0
    again = invoke("deny", rid, "send", "--reason", "too late")
    assert again.exit_code == 2
    assert again.stderr == (f"error: nothing waits for a decision in run {rid} (it is waiting)\n")
    assert store().approvals(rid, waiting=False)[0].decision == "approved"


# --------------------------------------------------------------------------- resume


def test_resume_of_an_unknown_run(tmp_path: Path) -> None:
    result = invoke("resume", "0123abcd")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: there is no run '0123abcd' in the journal {tmp_path / JOURNAL}\n"
    )


def test_resume_of_an_ambiguous_prefix_lists_the_runs(tmp_path: Path) -> None:
    runs = store()
    for rid in ("abc1", "abc2"):
        runs.add_run(
            {
                "run_id": rid,
                "kind": "plan",
                "plan_name": "p",
                "plan_json": "{}",
                "plan_hash": "",
                "inputs_json": "{}",
                "at": time.time(),
                "owner": None,
                "lease_until": None,
            }
        )
    runs.flush()

    result = invoke("resume", "abc")

    assert result.exit_code == 2
    assert result.stderr == "error: 'abc' starts the ids of 2 runs: abc1, abc2; give more of it\n"


def test_resume_of_a_finished_run(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)
    invoke("approve", rid, "send")
    assert invoke("resume", rid).exit_code == 0

    result = invoke("resume", rid)

    assert result.exit_code == 1
    assert stderr_lines(result) == [
        f"error: run '{rid}' succeeded already: there is nothing to resume (start the plan "
        "again to run it again)"
    ]
    assert calls(tmp_path) == ["prepared", "prepared and sent"]


def test_resume_of_a_run_whose_plan_file_changed_is_refused_unless_rerun(
    tmp_path: Path,
) -> None:
    plan, rid = waiting_run(tmp_path)
    add_step(plan)
    invoke("approve", rid, "send")

    refused = invoke("resume", rid)

    assert refused.exit_code == 1
    assert stderr_lines(refused) == [
        f"error: the plan of run '{rid}' changed since it started (steps: extra); resume "
        "with plan_changed='rerun' (CLI: --plan-changed rerun) to run the changed steps and "
        "reuse the rest"
    ]
    assert calls(tmp_path) == ["prepared"]

    rerun = invoke("resume", rid, "--plan-changed", "rerun", "--json")

    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["status"] == "succeeded"
    done = calls(tmp_path)
    assert done[0] == "prepared"
    assert sorted(done[1:]) == ["extra", "prepared and sent"]  # prepare was reused


def test_resume_that_waits_again_exits_3(tmp_path: Path) -> None:
    _, rid = waiting_run(tmp_path)

    result = invoke("resume", rid)

    assert result.exit_code == 3, result.output
    assert f"waiting: run {rid} waits for a decision on step send; next:" in result.stderr
    assert calls(tmp_path) == ["prepared"]


def test_run_approve_and_resume_in_processes_of_their_own(tmp_path: Path) -> None:
    """What another process (or machine) sharing the journal does: the installed script,
    one process per command."""
    plan = tmp_path / "notify.yaml"
    plan.write_text(
        textwrap.dedent("""\
            name: notify
            steps:
              - id: hello
                tool: notify.log
                args: {message: hello}
              - id: send
                tool: notify.log
                approval: required
                args: {message: "${{ steps.hello.output.message }} again"}
            outputs:
              sent: ${{ steps.send.output.message }}
            """),
        encoding="utf-8",
    )
    ran = run_script("run", plan, "--json", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    rid = json.loads(ran.stdout)["run_id"]

    approved = run_script("approve", rid[:10], "send", "--by", "dana", cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    resumed = run_script("resume", rid[:10], "--json", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"sent": "hello again"}
    events = store().events(rid)
    assert [e["step_id"] for e in events if e["kind"] == "started"] == ["hello", "send", "send"]
    assert [e["step_id"] for e in events if e["kind"] == "reused"] == ["hello"]


# --------------------------------------------------------------------------- runs


HELLO = """\
    name: hello
    steps:
      - id: say
        tool: notify.log
        args: {message: hi}
    """


def test_runs_lists_each_run_with_its_status_and_what_waits(tmp_path: Path) -> None:
    _, waits = waiting_run(tmp_path)
    hello = tmp_path / "hello.yaml"
    hello.write_text(textwrap.dedent(HELLO), encoding="utf-8")
    done = run_id_of(invoke("run", hello))

    table = invoke("runs")

    assert table.exit_code == 0, table.output
    rows = {
        cells[0]: cells[1:]
        for line in table.stdout.splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 6
    }
    assert rows[waits[:12]][:2] == ["approval", "waiting"]
    assert rows[waits[:12]][-1] == "send"
    assert rows[done[:12]][:2] == ["hello", "succeeded"]
    assert rows[done[:12]][-1] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[done[:12]][2])
    assert table.stdout.startswith("2 runs\n")

    listed = json.loads(invoke("runs", "--status", "waiting", "--json").stdout)
    assert [(r["run_id"], r["status"], r["waits"]) for r in listed] == [
        (waits, "waiting", ["send"])
    ]
    both = json.loads(invoke("runs", "-s", "waiting", "-s", "succeeded", "--json").stdout)
    assert [r["run_id"] for r in both] == [done, waits]  # newest first
    assert len(json.loads(invoke("runs", "--since", "1d", "--json").stdout)) == 2
    assert len(json.loads(invoke("runs", "--limit", "1", "--json").stdout)) == 1
    later = invoke("runs", "--since", "2999-01-01")
    assert later.stdout == f"no runs in the journal {tmp_path / JOURNAL} that match\n"


def test_runs_tells_an_interrupted_run_from_a_running_one(tmp_path: Path) -> None:
    runs = store()
    runs.add_run(
        {
            "run_id": "crashed",
            "kind": "plan",
            "plan_name": "p",
            "plan_json": "{}",
            "plan_hash": "",
            "inputs_json": "{}",
            "at": time.time(),
            "owner": "elsewhere:1:x",
            "lease_until": time.time() - 1,  # its owner stopped renewing it
        }
    )
    runs.flush()

    assert json.loads(invoke("runs", "--json").stdout)[0]["status"] == "interrupted"
    assert json.loads(invoke("runs", "-s", "running", "--json").stdout) == []
    assert len(json.loads(invoke("runs", "-s", "interrupted", "--json").stdout)) == 1


def test_runs_with_a_bad_since() -> None:
    result = invoke("runs", "--since", "yesterday")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --since takes ")


def test_runs_show_prints_the_stored_state_of_every_step(tmp_path: Path) -> None:
    plan, rid = waiting_run(tmp_path)

    result = invoke("runs", "show", rid[:6], "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run"]["run_id"] == rid
    assert data["run"]["status"] == "waiting"
    assert data["run"]["plan"] == "approval"
    assert data["run"]["plan_file"] == str(plan.resolve())
    assert data["steps"]["prepare"]["status"] == "succeeded"
    assert data["steps"]["prepare"]["output"] == {"text": "prepared"}
    assert data["steps"]["send"]["status"] == "waiting"
    assert [(a["step"], a["decision"]) for a in data["approvals"]] == [("send", None)]
    assert [s["id"] for s in data["plan"]["steps"]] == ["prepare", "send"]

    invoke("deny", rid, "send", "--reason", "no", "--by", "bob")
    invoke("resume", rid)
    text = invoke("runs", "show", rid)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[:2] == [f"run {rid} (plan approval)", "  status:    failed"]
    assert f"  plan file: {plan.resolve()}" in lines
    assert any(
        re.fullmatch(r"│ send +│ test\.count +│ failed +│ +│ [\d.]+s +│ policy_blocked: .*│", line)
        for line in lines
    ), text.stdout
    assert re.search(
        r"│ send +│ test\.count +│ approval +│ .* │ denied +│ bob +│ .* │ no +│", text.stdout
    )
    assert lines[-1] != ""


def test_runs_show_of_an_unknown_run(tmp_path: Path) -> None:
    result = invoke("runs", "show", "feed")
    assert result.exit_code == 2
    assert result.stderr == f"error: there is no run 'feed' in the journal {tmp_path / JOURNAL}\n"


def test_runs_prune_removes_finished_runs_older_than_asked(tmp_path: Path) -> None:
    _, waits = waiting_run(tmp_path)
    hello = tmp_path / "hello.yaml"
    hello.write_text(textwrap.dedent(HELLO), encoding="utf-8")
    done = run_id_of(invoke("run", hello))
    where = tmp_path / JOURNAL

    kept = invoke("runs", "prune")  # journal.keep_days: 30 by default

    assert kept.stdout == f"removed 0 runs that finished more than 30 days ago from {where}\n"
    pruned = invoke("runs", "prune", "--older-than", "0")
    assert pruned.stdout == f"removed 1 run that finished more than 0 days ago from {where}\n"
    assert [r["run_id"] for r in json.loads(invoke("runs", "--json").stdout)] == [waits]
    assert store().run(done) is None
    assert store().events(done) == []


def test_runs_prune_takes_keep_days_from_the_settings(tmp_path: Path) -> None:
    (tmp_path / "dagentic.toml").write_text("[journal]\nkeep_days = 0.000001\n", "utf-8")
    hello = tmp_path / "hello.yaml"
    hello.write_text(textwrap.dedent(HELLO), encoding="utf-8")
    invoke("run", hello)
    time.sleep(0.2)

    result = invoke("runs", "prune")

    assert result.stdout.startswith("removed 1 run that finished more than 1e-06 days ago")


# --------------------------------------------------------------------------- hostile


def test_what_the_journal_holds_is_printed_escaped(tmp_path: Path) -> None:
    hostile = f"""\
        name: "plan {json.dumps(HOSTILE)[1:-1]}"
        steps:
          - id: send
            tool: test.count
            approval: required
            args: {{path: CALLS, text: {json.dumps(HOSTILE)}}}
        """
    _, rid = waiting_run(tmp_path, hostile)
    # a step id no plan file may have, as a journal written by something else could
    store().ask(ApprovalRecord(rid, f"odd{HOSTILE}", None, "rerun", "test.count", {}, "write", 0))
    store().flush()

    listed = invoke("approvals")
    runs = invoke("runs")
    shown = invoke("runs", "show", rid)
    denied = invoke("deny", rid, "send", "--reason", HOSTILE, "--by", "mallory")
    resumed = invoke("resume", rid)

    for result in (listed, runs, shown, denied, resumed):
        assert RAW.search(result.stdout) is None, result.stdout
        assert RAW.search(result.stderr) is None, result.stderr
    assert f"run {rid} (plan plan {SHOWN})" in listed.stdout
    assert f'      "text": {json.dumps(HOSTILE, ensure_ascii=True)}' in listed.stdout
    assert f"  step odd{SHOWN}: test.count (side effects: write)" in listed.stdout
    assert "  asked for rerun: it was running when the run stopped, and may not be safe to " in (
        listed.stdout
    )
    assert f"plan {SHOWN}" in shown.stdout.splitlines()[0]
    assert denied.stdout.splitlines()[0] == (
        f"denied step 'send' of run {rid} (1 call) as mallory: {SHOWN}"
    )
    assert resumed.exit_code == 1
    assert resumed.stdout.splitlines()[-1] == (
        f"policy_blocked: step 'send': approval was denied by mallory: {SHOWN}"
    )


# --------------------------------------------------------------------------- agent runs


def test_an_agent_run_that_waits_is_resumed_through_its_agent(
    tmp_path: Path, with_count: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio
    import dagentic.models
    from dagentic import Agent, ScriptedModel

    calls_file = str(tmp_path / "calls.txt")
    the_plan = {
        "steps": [
            {"id": "a", "tool": "test.echo", "args": {"value": "seven"}},
            {
                "id": "w",
                "tool": "test.count",
                "args": {"path": calls_file, "text": "${{ steps.a.output }}"},
            },
        ]
    }
    answer = {"answer": "Wrote seven [w].", "cited_steps": ["w"], "complete": True}
    # `dagentic ask` keeps no durable journal (yet): the agent run starts through the API,
    # with the journal of the settings (the test's own), as another process would
    agent = Agent(ScriptedModel([the_plan]), with_count, settings=Settings(), tracing=None)
    first = anyio.run(agent.run, "Write seven.")
    assert first.status.value == "waiting"
    agent_id, plan_id = first.agent_run_id, first.run_id
    [request] = json.loads(invoke("approvals", "--json").stdout)
    assert (request["run_id"], request["step"]) == (plan_id, "w")
    assert request["args"] == {"path": calls_file, "text": "seven"}
    approved = invoke("approve", plan_id, "w")
    assert approved.stdout.splitlines()[-1] == f"next: dagentic resume {agent_id}"
    model = ScriptedModel([answer, {"passed": True}])
    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model)

    resumed = invoke("resume", plan_id)  # the plan run's agent goes on

    assert resumed.exit_code == 0, resumed.output
    assert f"run {plan_id} is a plan run of agent run {agent_id}: resuming that" in (resumed.stderr)
    assert "Wrote seven [w]." in resumed.stdout.splitlines()
    assert calls(tmp_path) == ["seven"]
    listed = {r["run_id"]: r for r in json.loads(invoke("runs", "--json").stdout)}
    assert (listed[agent_id]["kind"], listed[agent_id]["status"]) == ("agent", "succeeded")
    shown = json.loads(invoke("runs", "show", agent_id, "--json").stdout)
    assert [r["run_id"] for r in shown["runs"]] == [plan_id]


def test_keep_days_0_keeps_every_run(tmp_path: Path) -> None:
    (tmp_path / "dagentic.toml").write_text("[journal]\nkeep_days = 0\n", "utf-8")
    hello = tmp_path / "hello.yaml"
    hello.write_text(textwrap.dedent(HELLO), encoding="utf-8")
    invoke("run", hello)

    result = invoke("runs", "prune")

    assert result.stdout == (
        "journal.keep_days is 0: every run is kept, none was removed (--older-than DAYS "
        "removes older ones)\n"
    )


# --------------------------------------------------------------------------- as a user would


def test_the_publish_plan_waits_in_one_process_and_is_approved_and_resumed_in_others(
    tmp_path: Path,
) -> None:
    plan = Path(__file__).resolve().parents[2] / "plans" / "publish.yaml"

    waits = run_script("run", plan, "--json", cwd=tmp_path)

    assert waits.returncode == 3, waits.stderr
    data = json.loads(waits.stdout)
    assert (data["status"], data["waiting"], data["outputs"]) == ("waiting", ["post"], {})
    assert data["usage"]["steps"] == 1  # the query ran; the post waits
    rid = data["run_id"]
    listed = run_script("approvals", "--json", cwd=tmp_path)
    [asked] = json.loads(listed.stdout)
    assert asked["args"]["message"] == "West led 2026Q3 with 38326.53 in revenue"
    approved = run_script("approve", rid[:8], "post", "--reason", "checked", cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr

    done = run_script("resume", rid[:8], "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outputs"] == {"posted": "West led 2026Q3 with 38326.53 in revenue"}
    assert result["steps"]["leader"]["attempts"] == 0  # not queried again


def test_processes_in_other_folders_share_a_postgresql_journal(
    tmp_path: Path, postgres_server: Any
) -> None:
    url = postgres_server.new_database("cli_shared")
    env = {"DAGENTIC_JOURNAL__URL": url}
    plan = Path(__file__).resolve().parents[2] / "plans" / "publish.yaml"
    here, there = tmp_path / "machine_a", tmp_path / "machine_b"
    here.mkdir()
    there.mkdir()

    waits = run_script("run", plan, "--json", cwd=here, env=env)

    assert waits.returncode == 3, waits.stderr
    rid = json.loads(waits.stdout)["run_id"]
    assert not (here / ".dagentic" / "runs" / "journal.sqlite").exists()
    listed = run_script("runs", "--status", "waiting", "--json", cwd=there, env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [rid]
    decided = run_script("approve", rid, "post", "--by", "ann", cwd=there, env=env)
    assert decided.returncode == 0, decided.stderr
    done = run_script("resume", rid, "--json", cwd=there, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["posted"].startswith("West led 2026Q3")
