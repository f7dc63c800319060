"""``dagentic trace`` and ``dagentic report`` on the run files of real, traced runs."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import Executor, Settings, ToolError, ToolRegistry, tool
from dagentic.agent import Agent
from dagentic.models import ScriptedModel
from dagentic.result import RunResult
from dagentic.runfiles import find_run, read_spans
from dagentic.traceview import analyse
from dagentic.tracing import tracing_from_settings

from tests.cli import invoke

PNG = b"\x89PNG\r\n\x1a\n"
DAY = 86_400 * 10**9


@pytest.fixture(autouse=True)
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run files go to a fresh folder; nothing else from around the tests reaches the CLI."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DAGENTIC_"):
            monkeypatch.delenv(name)
    runs = tmp_path / "runs"
    monkeypatch.setenv("DAGENTIC_RUNS_DIR", str(runs))
    monkeypatch.setenv("DAGENTIC_TRACING__METRICS", "false")
    return runs


def run_plan(tools: ToolRegistry, plan: dict[str, Any], run_id: str | None = None) -> RunResult:
    """Run ``plan``, traced as the settings say, and write its file."""
    settings = Settings()
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    executor = Executor(tools, settings=settings, tracing=tracing)
    result = anyio.run(partial(executor.run, plan, run_id=run_id))
    tracing.flush()
    return result


def trace_json(run_id: str) -> dict[str, Any]:
    result = invoke("trace", run_id, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sleep(sid: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "test.sleep", "args": {"seconds": seconds}, **extra}


def echo(sid: str, value: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "test.echo", "args": {"value": value}}


def bar_columns(stdout: str, label: str) -> set[int]:
    """The columns of the timeline bar on the row of ``label``."""
    line = next(line for line in stdout.splitlines() if line.startswith(label + " "))
    return {i for i, char in enumerate(line) if char == "█"}


# A failing run: a number that is not one (invalid_args), a step past its timeout, and
# what is skipped after the first.
BROKEN = {
    "name": "broken",
    "steps": [
        echo("word", "soon"),
        sleep("bad", "${{ steps.word.output }}"),
        sleep("slow", 5, timeout=0.05),
        echo("after", "${{ steps.bad.output }}"),
        echo("last", "${{ steps.after.output }}"),
    ],
}
BAD_ARGS = (
    "step 'bad': tool 'test.sleep' rejected its arguments: seconds: Input should be a "
    "valid number, unable to parse string as a number (got 'soon')"
)
TIMED_OUT = "step 'slow': tool 'test.sleep' did not finish within 0.05s"

# --------------------------------------------------------------------------- dagentic trace


def test_parallel_steps_overlap_on_the_timeline(tools: ToolRegistry) -> None:
    result = run_plan(
        tools,
        {
            "name": "parallel",
            "steps": [
                sleep("left", 0.1),
                sleep("right", 0.1),
                echo("join", "${{ [steps.left.output, steps.right.output] }}"),
            ],
        },
    )
    assert result.succeeded

    shown = invoke("trace", result.run_id)

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert re.fullmatch(rf"run parallel {result.run_id} succeeded in 0\.1\ds", lines[0])
    left, right, join = (bar_columns(shown.stdout, s) for s in ("left", "right", "join"))
    assert len(left & right) >= 40  # the bars lie on top of each other
    assert min(join) >= max(left & right)  # join starts once both ended
    rows = {row["label"]: row for row in trace_json(result.run_id)["timeline"]}
    assert list(rows) == ["left", "right", "join"]
    assert rows["left"]["start"] < rows["right"]["end"]
    assert rows["right"]["start"] < rows["left"]["end"]
    assert rows["join"]["waited_for"] in ("left", "right")
    assert {r["status"] for r in rows.values()} == {"succeeded"}


def test_the_critical_path_follows_the_dependency_each_step_waited_for(tools: ToolRegistry) -> None:
    # a (0.1) -> c (0.1) -> d; b (0.05) -> d; e (0.01) after a: d waits for c, c for a.
    result = run_plan(
        tools,
        {
            "name": "dag",
            "steps": [
                sleep("a", 0.1),
                sleep("b", 0.05),
                sleep("c", 0.1, needs=["a"]),
                sleep("e", 0.01, needs=["a"]),
                echo("d", "${{ [steps.b.output, steps.c.output] }}"),
            ],
        },
    )
    assert result.succeeded

    paths = trace_json(result.run_id)["critical_paths"]

    assert len(paths) == 1
    path = paths[0]
    assert [s["step_id"] for s in path["steps"]] == ["a", "c", "d"]
    assert path["total"] == pytest.approx(sum(s["duration"] for s in path["steps"]))
    assert 0.2 <= path["total"] <= path["wall_time"]
    assert path["run_id"] == result.run_id
    text = invoke("trace", result.run_id).stdout
    assert re.search(
        r"^critical path: a 0\.1\ds → c 0\.1\ds → d 0\.00s = 0\.2\ds "
        r"\(the run took 0\.2\ds\)$",
        text,
        re.MULTILINE,
    ), text


def test_failures_are_listed_with_step_mode_and_message(tools: ToolRegistry) -> None:
    result = run_plan(tools, BROKEN)
    assert result.steps["bad"].error.message == BAD_ARGS
    assert result.steps["slow"].error.message == TIMED_OUT

    shown = invoke("trace", result.run_id)

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert re.fullmatch(rf"run broken {result.run_id} failed in 0\.\d\ds", lines[0])
    assert lines[1] == f"invalid_args: {BAD_ARGS}"
    failures = lines[lines.index("failures") + 1 :]
    assert sorted(failures[:2]) == [
        f"  bad (test.sleep) invalid_args: {BAD_ARGS}",
        f"  slow (test.sleep) timeout: {TIMED_OUT}",
    ]
    assert failures[2] == (
        "  2 skipped because a step before them failed (upstream_failed): after, last"
    )
    row = next(line for line in lines if line.startswith("slow "))
    assert row.split()[2] == "failed" and row.rstrip().endswith(" timeout")

    analysis = trace_json(result.run_id)
    assert sorted(
        (f["step_id"], f["failure_mode"], f["message"]) for f in analysis["failures"]
    ) == [("bad", "invalid_args", BAD_ARGS), ("slow", "timeout", TIMED_OUT)]
    assert [(s["step_id"], s["message"]) for s in analysis["upstream_failed"]] == [
        ("after", "skipped because step 'bad' failed"),
        ("last", "skipped because step 'after' was skipped after a failure"),
    ]
    assert analysis["root"]["failure_mode"] == "invalid_args"
    assert analysis["usage"]["steps"] == 3  # what ran; the two skipped steps did not


def test_a_run_failing_because_its_step_did_is_listed_once(tools: ToolRegistry) -> None:
    result = run_plan(
        tools,
        {"name": "boom", "steps": [{"id": "x", "tool": "test.fail", "args": {"message": "boom"}}]},
    )
    assert result.error.message == "step 'x' failed: boom"  # the step's own says "boom"

    lines = invoke("trace", result.run_id).stdout.splitlines()

    assert lines[1] == "tool_error: step 'x' failed: boom"
    failures = lines.index("failures")
    assert lines[failures + 1] == "  x (test.fail) tool_error: boom"
    assert lines[failures + 2].startswith("usage: 1 step, 0 model calls, ")


def test_an_agent_trace_shows_plans_model_calls_runs_and_usage(
    tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGENTIC_MODEL__PRICES", '{"scripted": {"input": 1, "output": 2}}')

    def plan(value: str) -> dict[str, Any]:
        return {
            "steps": [
                echo("a", value),
                {
                    "id": "ok",
                    "check": {"assert": "${{ steps.a.output == 'good' }}", "on_fail": "replan"},
                },
            ]
        }

    settings = Settings()
    tracing = tracing_from_settings(settings)
    model = ScriptedModel(
        [
            plan("bad"),
            plan("good"),
            {"answer": "Good [a].", "cited_steps": ["a"], "complete": True},
            {"passed": True, "reason": "it is"},
        ]
    )
    agent = Agent(
        model,
        ToolRegistry([t for t in tools if not t.planning_context]),
        settings=settings,
        tracing=tracing,
    )
    result = anyio.run(agent.run, "Is it good?")
    assert tracing is not None
    tracing.flush()
    assert result.succeeded

    # The id of a plan run inside the agent run finds the agent run's file.
    analysis = trace_json(result.run_ids[0])

    assert analysis["root"]["kind"] == "agent"
    assert analysis["root"]["run_id"] == result.agent_run_id
    assert [(r["kind"], r["label"], r["depth"]) for r in analysis["timeline"]] == [
        ("plan", "plan v1", 0),
        ("chat", "chat plan", 1),
        ("run", "run is-it-good v1", 0),
        ("step", "a", 0),
        ("step", "ok", 0),
        ("plan", "plan v2", 0),
        ("chat", "chat plan", 1),
        ("run", "run is-it-good v2", 0),
        ("step", "a", 0),
        ("step", "ok", 0),
        ("chat", "chat answer", 0),
        ("chat", "chat verify", 0),
    ]
    assert [p["run_id"] for p in analysis["critical_paths"]] == result.run_ids
    assert [(f["step_id"], f["failure_mode"]) for f in analysis["failures"]] == [
        ("ok", "check_failed")
    ]
    usage = result.usage
    assert analysis["usage"] == {
        "steps": usage.steps,
        "model_calls": 4,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost": pytest.approx(usage.cost),
        "wall_time": pytest.approx(usage.wall_time, abs=0.05),
    }
    assert usage.cost == pytest.approx((usage.input_tokens + 2 * usage.output_tokens) / 1e6)

    text = invoke("trace", result.agent_run_id).stdout
    assert text.startswith(f"agent {result.agent_run_id} succeeded in ")
    assert re.search(
        rf"^usage: {usage.steps} steps, 4 model calls, {usage.input_tokens} input "
        rf"\+ {usage.output_tokens} output tokens, \${usage.cost:.4f}, "
        r"[\d.]+s wall time$",
        text,
        re.MULTILINE,
    ), text
    assert "critical path of run is-it-good v2: a " in text


def test_a_run_file_cut_short_shows_what_it_holds(tools: ToolRegistry, runs: Path) -> None:
    result = run_plan(tools, BROKEN)
    path = runs / f"{result.run_id}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text(
        "\n".join(line for line in lines if '"dagentic.root":true' not in line)
        + '\n{"name": "execute_tool',
        encoding="utf-8",
    )  # and a line cut off

    shown = invoke("trace", result.run_id)

    assert shown.exit_code == 0, shown.output
    assert re.match(
        r"incomplete trace in 0\.\d\ds\nthe root span is missing: the run did "
        r"not end \(or its spans were not all written\)\n",
        shown.stdout,
    )
    assert len(shown.stdout.split("\nfailures\n")[1].splitlines()) == 4
    data = json.loads(invoke("report", "--json").stdout)
    assert (data["by_status"], data["by_kind"]) == ({"incomplete": 1}, {"incomplete": 1})


def test_an_unknown_run_id_is_an_error_naming_the_runs_dir(runs: Path) -> None:
    result = invoke("trace", "nope")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no trace of run 'nope' in {runs}: runs are traced there "
        "when tracing.exporter is 'jsonl' (the default)\n"
    )


def test_an_id_that_starts_two_run_files_is_ambiguous(tools: ToolRegistry, runs: Path) -> None:
    for run_id in ("abc111", "abc222"):
        run_plan(tools, {"name": "p", "steps": [echo("a", 1)]}, run_id=run_id)
    then = time.time() - 60
    os.utime(runs / "abc111.jsonl", (then, then))  # the older one
    message = "run id 'abc' is ambiguous: 2 runs start with it (abc222, abc111); give more of it"
    with pytest.raises(ValueError) as raised:
        find_run(runs, "abc")
    assert str(raised.value) == message

    result = invoke("trace", "abc")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"
    for run_id in ("abc111", "abc222"):  # more of it finds each
        assert trace_json(run_id[:4])["root"]["run_id"] == run_id


def test_a_run_id_is_found_by_its_run_span_not_by_another_attribute(
    tools: ToolRegistry, runs: Path
) -> None:
    settings = Settings()
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    executor = Executor(tools, settings=settings, tracing=tracing)

    async def main() -> None:  # a plan run filed under the run around it
        with tracing.span("outer", {"dagentic.run_id": "outer-run"}, root_run_id="outer-run"):
            await executor.run(
                {"name": "p", "steps": [echo("a", 1)]},
                run_id="inner-run",
                trace_attributes={"app.ticket": "feedface"},
            )

    anyio.run(main)
    tracing.flush()
    path = runs / "outer-run.jsonl"
    assert [r["name"] for r in read_spans(path)] == ["execute_tool test.echo", "run p", "outer"]

    assert find_run(runs, "inner-run") == path
    assert find_run(runs, "feedface") is None  # only the value of app.ticket
    result = invoke("trace", "feedface")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no trace of run 'feedface' in {runs}: runs are traced "
        "there when tracing.exporter is 'jsonl' (the default)\n"
    )


def test_lines_cut_mid_character_and_records_that_are_no_spans_are_skipped(
    tools: ToolRegistry, runs: Path
) -> None:
    result = run_plan(tools, {"name": "p", "steps": [echo("a", 1), echo("b", 2)]})
    path = runs / f"{result.run_id}.jsonl"
    before = trace_json(result.run_id)
    lines = path.read_bytes().splitlines()
    span = json.loads(lines[0])
    cut = json.dumps({**span, "message": "coûte 3 €"}, ensure_ascii=False).encode()
    cut = cut[: cut.index("€".encode()) + 1]  # in the middle of the euro sign's three bytes
    assert cut.startswith(b"{") and not cut.decode("utf-8", "ignore").endswith("€")
    without = [{k: v for k, v in span.items() if k != key} for key in ("name", "start", "end")]
    wrong = [
        {**span, "name": 3},
        {**span, "start": str(span["start"])},
        {**span, "end": None},
        {**span, "span_id": 7},
        {**span, "attributes": ["a"]},
    ]
    others = [[], "execute_tool", 1, None, {"span_id": "0" * 16}]
    junk = [json.dumps(r).encode() for r in [*without, *wrong, *others]]
    path.write_bytes(b"\n".join([cut, *lines[:1], *junk, *lines[1:], cut]))  # the last cut

    assert list(read_spans(path)) == [json.loads(line) for line in lines]
    assert trace_json(result.run_id) == before
    shown = invoke("trace", result.run_id)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"run p {result.run_id} succeeded in ")


def test_a_span_written_twice_is_shown_once(tools: ToolRegistry, runs: Path) -> None:
    result = run_plan(tools, {"name": "p", "steps": [echo("a", 1), echo("b", 2)]})
    path = runs / f"{result.run_id}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([*lines, *lines]) + "\n", encoding="utf-8")  # an export again

    shown = invoke("trace", result.run_id)

    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"run p {result.run_id} succeeded in ")
    analysis = trace_json(result.run_id)
    assert [row["label"] for row in analysis["timeline"]] == ["a", "b"]
    assert analysis["root"]["run_id"] == result.run_id


# A file name with bytes that are not UTF-8, as os.fsdecode gives it: lone surrogates.
UNREADABLE = os.fsdecode(b"data-\xe9t\xe9.csv")


@tool(name="probe.unreadable", side_effects="none")
async def unreadable() -> None:
    """Fail on a file whose name is not UTF-8."""
    raise ToolError(f"cannot read {UNREADABLE}")


def test_a_message_that_is_not_utf8_is_shown_and_reported(tools: ToolRegistry) -> None:
    # Lone surrogates are written as "?", so `dagentic trace` and `dagentic report` (text
    # and --json) print on a strict UTF-8 stdout (CliRunner's; a terminal's).
    result = run_plan(
        ToolRegistry([*tools, unreadable]),
        {"name": "p", "steps": [{"id": "x", "tool": "probe.unreadable", "args": {}}]},
    )
    assert result.error is not None

    shown = invoke("trace", result.run_id)

    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[1].startswith("tool_error: step 'x' failed: cannot read data-")
    failure = trace_json(result.run_id)["failures"][0]
    assert (failure["step_id"], failure["message"][:17]) == ("x", "cannot read data-")
    assert invoke("report").exit_code == 0
    data = json.loads(invoke("report", "--json").stdout)
    assert data["failure_modes"][0]["example"]["message"].startswith("cannot read data-")


def span_record(
    span_id: str,
    parent_id: str | None,
    name: str,
    start: int,
    end: int,
    message: str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "trace_id": "7" * 32,
        "span_id": span_id,
        "parent_id": parent_id,
        "start": start,
        "end": end,
        "status": "ERROR" if message else "UNSET",
        "message": message,
        "attributes": {k.replace("__", "."): v for k, v in attributes.items()},
        "events": [],
        "scope": "dagentic",
    }


@pytest.mark.timeout(60)  # a loop would never end: far above the second this takes
def test_a_span_id_written_twice_under_its_own_child_does_not_loop(runs: Path) -> None:
    # A span id written twice can make a cycle of parents (s -> t -> s): walking the tree,
    # looking for a step's run and for what is below a run must all stop.
    run = span_record(
        "a1" * 8,
        None,
        "run p",
        0,
        100,
        "step 'b' failed: boom",
        dagentic__run_id="cycle",
        dagentic__plan="p",
        dagentic__root=True,
        dagentic__status="failed",
        dagentic__failure_mode="tool_error",
    )
    step = {
        "dagentic__step__id": "a",
        "gen_ai__tool__name": "test.echo",
        "dagentic__status": "succeeded",
    }
    first = span_record("b2" * 8, "a1" * 8, "execute_tool test.echo", 10, 20, **step)
    child = span_record(
        "c3" * 8,
        "b2" * 8,
        "execute_tool test.fail",
        12,
        18,
        "boom",
        dagentic__step__id="b",
        gen_ai__tool__name="test.fail",
        dagentic__status="failed",
        dagentic__failure_mode="tool_error",
    )
    again = span_record("b2" * 8, "c3" * 8, "execute_tool test.echo", 13, 17, **step)
    spans = [run, first, child, again]
    runs.mkdir()
    (runs / "cycle.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in spans), encoding="utf-8"
    )

    analysis = analyse(spans)

    assert [row["label"] for row in analysis["timeline"]] == ["a", "b"]
    assert analysis["root"]["status"] == "failed"
    shown = invoke("trace", "cycle")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("run p cycle failed in 0.00s\n")


def test_the_run_command_writes_the_whole_trace_and_names_it(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent("""\
        name: hello
        steps:
          - id: one
            tool: notify.log
            args: {message: hi}
        """),
        encoding="utf-8",
    )

    done = invoke("run", plan, "--json")

    assert done.exit_code == 0, done.output
    run_id = json.loads(done.stdout)["run_id"]
    assert done.stderr.splitlines()[-1] == f"trace: dagentic trace {run_id}"
    # Flushed before the command returned: the root span is there.
    analysis = trace_json(run_id)
    assert analysis["root"]["run_id"] == run_id
    assert analysis["root"]["status"] == "succeeded"
    assert [r["label"] for r in analysis["timeline"]] == ["one"]


def test_a_trace_the_exporter_could_not_finish_is_a_warning_not_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A collector slower than the wait cannot be made on purpose: the flush says it.
    from dagentic.tracing import Tracing

    monkeypatch.setattr(Tracing, "flush", lambda self, timeout_millis=0: False)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "name: hello\nsteps:\n  - {id: one, tool: notify.log, args: {message: hi}}\n",
        encoding="utf-8",
    )

    done = invoke("run", plan, "--json")

    assert done.exit_code == 0, done.output
    assert done.stderr.splitlines()[-1] == (
        "warning: the trace was not all exported within 30 s (tracing.exporter is 'jsonl')"
    )


def test_the_ask_command_names_the_agent_runs_trace(
    tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.cli
    import dagentic.models

    model = ScriptedModel(
        [
            {"steps": [echo("a", 42)]},
            {"answer": "42 [a]", "cited_steps": ["a"], "complete": True},
            {"passed": True, "reason": "yes"},
        ]
    )
    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model)
    monkeypatch.setattr(
        dagentic.cli, "_tools", lambda: ToolRegistry([t for t in tools if not t.planning_context])
    )

    done = invoke("ask", "What is it?", "--no-memory", "--json")

    assert done.exit_code == 0, done.output
    agent_run_id = json.loads(done.stdout)["agent_run_id"]
    assert done.stderr.splitlines()[-1] == f"trace: dagentic trace {agent_run_id}"
    root = trace_json(agent_run_id)["root"]
    assert (root["kind"], root["run_id"], root["status"]) == ("agent", agent_run_id, "succeeded")


# --------------------------------------------------------------------------- dagentic report


def age(path: Path, days: float) -> None:
    """Move a run file's spans (and the file's time) ``days`` into the past."""
    shift = int(days * DAY)
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        span = json.loads(line)
        span["start"] -= shift
        span["end"] -= shift
        lines.append(json.dumps(span))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    then = time.time() - days * 86_400
    os.utime(path, (then, then))


@pytest.fixture
def three_runs(runs: Path, tools: ToolRegistry) -> list[RunResult]:
    """Two that succeed (one of them two days old) and the broken one."""
    done = [
        run_plan(tools, {"name": "ok", "steps": [sleep("nap", 0.01), echo("say", 1)]})
        for _ in range(2)
    ]
    done.append(run_plan(tools, BROKEN))
    age(runs / f"{done[0].run_id}.jsonl", 2)
    return done


def test_report_aggregates_every_run(three_runs: list[RunResult], runs: Path) -> None:
    result = invoke("report", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runs_dir"] == str(runs)
    assert data["since"] is None
    assert (data["runs"], data["by_status"], data["by_kind"]) == (
        3,
        {"succeeded": 2, "failed": 1},
        {"plan": 3},
    )
    broken = three_runs[2].run_id
    assert data["failure_modes"] == [
        {
            "mode": "upstream_failed",
            "count": 2,
            "stages": {"run": 2},
            "example": {
                "run_id": broken,
                "step": "after",
                "message": "skipped because step 'bad' failed",
            },
        },
        {
            "mode": "invalid_args",
            "count": 1,
            "stages": {"run": 1},
            "example": {"run_id": broken, "step": "bad", "message": BAD_ARGS},
        },
        {
            "mode": "timeout",
            "count": 1,
            "stages": {"run": 1},
            "example": {"run_id": broken, "step": "slow", "message": TIMED_OUT},
        },
    ]
    tools = {t["tool"]: t for t in data["tools"]}
    assert {name: (t["count"], t["failures"]) for name, t in tools.items()} == {
        "test.sleep": (4, 2),
        "test.echo": (3, 0),
    }
    sleeps = tools["test.sleep"]
    assert sleeps["p50"] <= sleeps["p95"] <= sleeps["max"]
    assert 0.05 <= sleeps["max"] < 5  # the step that timed out, well before its 5 s sleep

    text = invoke("report").stdout
    assert text.startswith(f"3 runs (3 plan) in {runs}\n")
    assert re.search(
        r"│ timeout +│ 1 +│ slow +│ step 'slow': tool 'test\.sleep' did not "
        rf"finish within 0\.05s +│ {broken} +│",
        text,
    ), text
    assert re.search(r"│ test\.sleep +│ 4 +│ [\d.]+s +│ [\d.]+s +│ [\d.]+s +│ 2 +│", text), text


def test_report_since_leaves_out_older_runs(three_runs: list[RunResult]) -> None:
    for since in ("1d", "36h", "90m", (datetime.now() - timedelta(days=1)).isoformat()):
        data = json.loads(invoke("report", "--since", since, "--json").stdout)
        assert (data["runs"], data["by_status"]) == (2, {"succeeded": 1, "failed": 1}), since
        assert data["since"] is not None
    assert json.loads(invoke("report", "--since", "3d", "--json").stdout)["runs"] == 3
    tomorrow = (datetime.now() + timedelta(days=1)).date().isoformat()
    later = invoke("report", "--since", tomorrow)
    assert later.exit_code == 0
    assert later.stdout.startswith("0 runs in ")


@pytest.mark.parametrize("since", ["yesterday", "5x", "1 hour", "-2d"])
def test_a_bad_since_is_an_error_naming_the_accepted_forms(since: str) -> None:
    result = invoke("report", "--since", since)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --since takes a duration like 30m, 1h or 2d, or an ISO "
        "date like 2026-01-31 or 2026-01-31T09:00; got "
        f"{since!r}\n"
    )


def test_report_png_writes_a_chart(three_runs: list[RunResult], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "report.png"

    result = invoke("report", "--png", chart, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == 3
    assert result.stderr == f"chart: {chart}\n"
    assert chart.read_bytes()[:8] == PNG
    assert chart.stat().st_size > 5_000


def test_report_png_that_cannot_be_written_is_an_error(
    three_runs: list[RunResult], tmp_path: Path
) -> None:
    chart = tmp_path / "no such folder" / "report.png"

    result = invoke("report", "--png", chart)

    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: cannot write {chart}: [Errno 2] No such file or directory"
    )
    assert result.stdout == ""


def test_a_run_file_without_spans_is_an_error(runs: Path) -> None:
    runs.mkdir()
    (runs / "empty.jsonl").write_text('not json\n{"no": "span"}\n', encoding="utf-8")

    result = invoke("trace", "empty")

    assert result.exit_code == 2
    assert result.stderr == f"error: {runs / 'empty.jsonl'} holds no spans\n"


def test_report_png_without_matplotlib_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    result = invoke("report", "--png", tmp_path / "report.png")
    assert result.exit_code == 2
    assert result.stderr == "error: --png needs matplotlib: pip install 'dagentic[charts]'\n"
    assert not (tmp_path / "report.png").exists()


def test_an_otlp_exporter_that_is_not_installed_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def without_otlp(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.exporter.otlp"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_otlp)
    monkeypatch.setenv("DAGENTIC_TRACING__EXPORTER", "otlp")
    monkeypatch.setenv("DAGENTIC_TRACING__OTLP__ENDPOINT", "http://127.0.0.1:9")  # not used
    result = invoke("run", "plans/hello.yaml")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: tracing.exporter is 'otlp' (http/protobuf) but its exporter is not "
        "installed (opentelemetry.exporter.otlp.proto.http.metric_exporter); install it "
        "with: pip install 'dagentic[otlp]'\n"
    )


# --------------------------------------------------------------------------- hostile run files

# A run file is outside text: tool errors, span names and attributes may hold what a
# terminal acts on (OSC 8 hyperlinks, OSC 52 clipboard writes, C1 controls, bidi
# overrides) or what Rich acts on (markup, an unmatched closing tag).
HOSTILE = "[/bold][link=https://evil.example]x \x1b]8;;https://evil.example\x1b\\y \x1b]52;c;eA==\x07\x9bK\u202e"
SHOWN = r"[/bold][link=https://evil.example]x \x1b]8;;https://evil.example\x1b\y \x1b]52;c;eA==\x07\x9bK\u202e"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_a_hostile_error_is_shown_as_text_in_the_trace_and_the_report(
    tools: ToolRegistry,
) -> None:
    result = run_plan(
        tools,
        {"name": "p", "steps": [{"id": "x", "tool": "test.fail", "args": {"message": HOSTILE}}]},
    )

    shown = invoke("trace", result.run_id)

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[1] == f"tool_error: step 'x' failed: {SHOWN}"
    assert f"  x (test.fail) tool_error: {SHOWN}" in lines
    assert RAW.search(shown.stdout) is None
    report = invoke("report")
    assert report.exit_code == 0, report.output
    assert SHOWN in report.stdout
    assert RAW.search(report.stdout) is None


def test_hostile_span_names_and_attributes_are_shown_as_text(runs: Path) -> None:
    run = span_record(
        "a1" * 8,
        None,
        f"run {HOSTILE}",
        0,
        100,
        HOSTILE,
        dagentic__run_id="hostile",
        dagentic__plan=HOSTILE,
        dagentic__root=True,
        dagentic__status=HOSTILE,
        dagentic__failure_mode=HOSTILE,
    )
    step = span_record(
        "b2" * 8,
        "a1" * 8,
        f"execute_tool {HOSTILE}",
        10,
        20,
        HOSTILE,
        dagentic__step__id=HOSTILE,
        gen_ai__tool__name=HOSTILE,
        dagentic__status="failed",
        dagentic__failure_mode=HOSTILE,
    )
    runs.mkdir()
    (runs / "hostile.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in (run, step)), encoding="utf-8"
    )

    shown = invoke("trace", "hostile")

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == f"run {SHOWN} hostile {SHOWN} in 0.00s"
    assert lines[1] == f"{SHOWN}: {SHOWN}"
    assert f"  {SHOWN} ({SHOWN}) {SHOWN}: {SHOWN}" in lines
    assert lines[-1].startswith("usage: 1 step, 0 model calls, 0 input + 0 output tokens")
    assert RAW.search(shown.stdout) is None
    report = invoke("report")
    assert report.exit_code == 0, report.output
    assert RAW.search(report.stdout) is None


def test_a_call_on_ray_shows_its_node_and_a_lost_worker_its_rerun() -> None:
    from dagentic.traceview import analyse, render_trace
    from rich.console import Console

    run = span_record(
        "a1" * 8,
        None,
        "run p",
        0,
        3_000_000_000,
        dagentic__run_id="r",
        dagentic__plan="p",
        dagentic__root=True,
        dagentic__status="succeeded",
    )
    step = span_record(
        "b2" * 8,
        "a1" * 8,
        "execute_tool probe.hold",
        0,
        3_000_000_000,
        dagentic__step__id="long",
        gen_ai__tool__name="probe.hold",
        dagentic__status="succeeded",
    )
    step["events"] = [
        {"name": "dagentic.ray.lost", "time": 1, "attributes": {"dagentic.ray.rerun": 1}}
    ]
    task = span_record(
        "c3" * 8,
        "b2" * 8,
        "ray.task probe.hold",
        1_000_000_000,
        2_900_000_000,
        dagentic__ray__node_id="83630e2e" + "0" * 48,
        dagentic__ray__pid=4242,
    )
    console = Console(width=120, record=True)
    render_trace(analyse([run, step, task], "r"), console)
    text = console.export_text()
    assert "run again 1 time: its Ray worker was lost" in text
    assert re.search(r"\n  ray task +node 83630e2e pid 4242 ", text), text
