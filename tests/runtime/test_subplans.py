"""Sub-plans: a step that runs another plan (``plan:`` with ``inputs:``), validated with its
caller (exact, located messages), run as a child of the same executor (outputs, foreach,
timeout, retry, approval, taint both ways, usage), traced under its step, and resumed."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from dagentic import (
    Executor,
    FailureMode,
    PlanError,
    RunStatus,
    Step,
    StepStatus,
    ToolError,
    ToolRegistry,
    compile_plan,
    load_plan,
    load_tools,
    to_mermaid,
    tool,
)
from dagentic.durable import DurableJournal, open_store
from dagentic.runfiles import read_spans, run_files
from dagentic.subplans import MAX_SUBPLAN_DEPTH
from dagentic.traceview import analyse, render_trace
from dagentic.tracing import tracing_from_settings
from pydantic import ValidationError
from rich.console import Console

from tests.blind import blind_settings
from tests.tools import TEST_TOOLS

pytestmark = pytest.mark.anyio  # the synchronous tests ignore it

CHILD = """\
version: 1
name: child
inputs:
  who: {type: string, required: true}
  times: {type: integer, default: 1}
steps:
  - id: say
    tool: test.echo
    args: {value: "hi ${{ inputs.who }} x${{ inputs.times }}"}
outputs:
  said: ${{ steps.say.output }}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def tools() -> ToolRegistry:
    """The built-in tools and the tests' own, loaded once for the module."""
    return ToolRegistry([*load_tools(), *TEST_TOOLS])


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with plans/child.yaml; plans are named from plans/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "child.yaml").write_text(CHILD, encoding="utf-8")
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path, tools: ToolRegistry) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load_plan(path.relative_to(Path.cwd()), tools)  # named as a user would
    return [str(p) for p in caught.value.problems]


def executor(tools: ToolRegistry, **options: Any) -> Executor:
    options.setdefault("tracing", None)
    options.setdefault("journal", None)
    return Executor(tools, settings=blind_settings(), **options)


# --------------------------------------------------------------------------- validation


def test_a_missing_plan_is_named_with_the_fix(folder: Path, tools: ToolRegistry) -> None:
    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - id: by_name
            plan: chlid
          - id: by_path
            plan: sub/b.yaml
        """,
    )
    assert problems(path, tools) == [
        "a.yaml:5:11: step 'by_name': no plan named 'chlid' in plans/ (did you mean "
        "'child'?); name a plan file there (without .yaml) or give a path relative to this "
        "plan file",
        "a.yaml:7:11: step 'by_path': plan file 'sub/b.yaml' not found (looked for "
        "sub/b.yaml); a path is relative to the folder of the plan file that names it",
    ]


def test_inputs_are_checked_against_the_sub_plan(folder: Path, tools: ToolRegistry) -> None:
    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - id: bad
            plan: child
            inputs: {whom: Ada, times: ten}
          - id: none
            plan: child
        """,
    )
    assert problems(path, tools) == [
        "a.yaml:6:13: step 'bad': plan 'child' needs input 'who' (string); give it under 'inputs:'",
        "a.yaml:6:14: step 'bad': plan 'child' has no input 'whom' (did you mean 'who'?); "
        "it takes times, who",
        "a.yaml:6:32: step 'bad': input 'times' of plan 'child' must be integer: Input "
        "should be a valid integer, unable to parse string as an integer (got 'ten')",
        "a.yaml:8:11: step 'none': plan 'child' needs input 'who' (string); give it under "
        "'inputs:'",
    ]


def test_a_plan_that_runs_itself_is_refused(folder: Path, tools: ToolRegistry) -> None:
    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - id: again
            plan: a.yaml
        """,
    )
    assert problems(path, tools) == [
        "a.yaml:5:11: step 'again': plan 'a.yaml' is this plan itself; a plan cannot run "
        "itself: remove the step or name another plan"
    ]


def test_a_cycle_across_plan_files_is_refused_at_the_callers_step(
    folder: Path, tools: ToolRegistry
) -> None:
    a = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - id: first
            tool: test.echo
          - id: to_b
            plan: sub/b.yaml
        """,
    )
    write(
        folder / "sub" / "b.yaml",
        """\
        version: 1
        name: b
        steps:
          - id: back
            plan: ../a.yaml
        """,
    )
    assert problems(a, tools) == [
        "a.yaml:7:11: step 'to_b': plan 'sub/b.yaml' is invalid: sub/b.yaml:5:11: step "
        "'back': plan '../a.yaml' makes a cycle: a.yaml -> sub/b.yaml -> a.yaml; a plan "
        "cannot run itself, even through other plans: remove one of these steps"
    ]


def test_nesting_is_bounded(folder: Path, tools: ToolRegistry) -> None:
    count = MAX_SUBPLAN_DEPTH + 2
    for n in range(count):
        step = (
            f"  - id: down\n    plan: p{n + 1}\n"
            if n + 1 < count
            else "  - id: leaf\n    tool: test.echo\n"
        )
        (folder / "plans" / f"p{n}.yaml").write_text(
            f"version: 1\nname: p{n}\nsteps:\n{step}", encoding="utf-8"
        )
    found = problems(folder / "plans" / "p0.yaml", tools)
    assert len(found) == 1
    assert found[0].startswith("plans/p0.yaml:5:11: step 'down': plan 'p1' is invalid: ")
    assert "sub-plans nest more than 8 levels deep here" in found[0]
    # one level less is fine
    load_plan(folder / "plans" / "p1.yaml", tools)


def test_the_steps_of_all_sub_plans_are_bounded(
    folder: Path, tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dagentic.subplans.MAX_TOTAL_STEPS", 4)
    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - {id: one, plan: child, inputs: {who: a}}
          - {id: two, plan: child, inputs: {who: b}}
          - {id: three, plan: child, inputs: {who: c}}
        """,
    )
    assert problems(path, tools) == [
        "a.yaml:5:21: step 'two': plan 'child' brings the steps this plan runs, its "
        "sub-plans' included, past 4, the most one plan may run; split the work into "
        "separate runs"
    ]


def test_the_plan_files_one_validation_reads_are_bounded(
    folder: Path, tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dagentic.subplans.MAX_PLAN_FILES", 2)
    for name in ("x", "y", "z"):
        write(
            folder / "plans" / f"{name}.yaml",
            "version: 1\nname: n\nsteps: [{id: e, tool: test.echo}]\n",
        )
    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - {id: one, plan: x}
          - {id: two, plan: y}
          - {id: three, plan: z}
          - {id: again, plan: x}
        """,
    )
    assert problems(path, tools) == [
        "a.yaml:6:23: step 'three': plan 'z' is invalid: plans/z.yaml: the plan and its "
        "sub-plans name more than 2 plan files; merge some of them"
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"tool": "test.echo", "plan": "child"},
            "step 's' has both 'tool' and 'plan'; a step does one thing: make each its own step",
        ),
        (
            {"plan": "child", "args": {"x": 1}},
            "step 's' runs plan 'child' and takes no 'args'; give the sub-plan's values "
            "under 'inputs'",
        ),
        (
            {"tool": "test.echo", "inputs": {"x": 1}},
            "step 's' has 'inputs' but no 'plan'; a tool takes 'args'",
        ),
        (
            {"plan": "child", "allow_untrusted": True},
            "step 's' runs plan 'child': allow_untrusted has no effect here; set it on the "
            "sub-plan's step that needs it",
        ),
        ({"plan": " "}, "step 's': 'plan' must name a plan or a plan file"),
    ],
)
def test_what_a_sub_plan_step_cannot_say(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Step(id="s", **fields)
    assert caught.value.errors()[0]["msg"] == f"Value error, {message}"


def test_an_estimate_counts_the_sub_plans_calls(folder: Path, tools: ToolRegistry) -> None:
    from dagentic.estimate import estimate_plan

    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - {id: greet, plan: child, inputs: {who: Ada}, foreach: [1, 2, 3], max_parallel: 3}
        """,
    )
    found = estimate_plan(load_plan(path.name, tools), {}, settings=blind_settings())
    (step,) = found.steps
    assert (step.tool, step.calls, step.items) == ("plan:child", 3, 3)
    assert found.tool_calls == 3


def test_a_plan_read_from_a_file_names_its_sub_plans_from_there(
    folder: Path, tools: ToolRegistry
) -> None:
    path = write(
        folder / "lib" / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - {id: greet, plan: ../plans/child.yaml, inputs: {who: Ada}}
        """,
    )
    plan = load_plan(path, tools).plan  # as a library holds it: the model, and its file
    compiled = compile_plan(plan, tools, source_file=path)
    assert compiled.file == str(path)
    assert compiled.steps["greet"].subplan is not None
    with pytest.raises(PlanError) as caught:
        compile_plan(plan, tools)  # without its file: no path may be followed
    assert [str(p) for p in caught.value.problems] == [NOT_A_FILE.format(ref="../plans/child.yaml")]


NOT_A_FILE = (
    "step 'greet': plan '{ref}' is a path, but this plan is not a file (a plan body, or "
    "one a model made): name a plan of plans/ instead, without .yaml"
)
OUTSIDE = (
    "step 'greet': plan file '{ref}' is outside this plan's folder ({root}/) and the plan "
    "folders (plans/): move it there, or name it from the plan folders"
)


@pytest.mark.parametrize(
    "ref",
    [
        "/etc/passwd",
        "../../../../etc/hostname",
        "~/.bashrc",
        "plans/child.yaml",
        "child.yaml",
        "secret.yaml",
        "/nonexistent/x.yml",
    ],
)
def test_a_plan_that_is_not_a_file_names_sub_plans_only_by_name(
    folder: Path, tools: ToolRegistry, ref: str
) -> None:
    """A plan body (dagentic serve) or a model's plan must not make the machine read a file
    of its choosing: the same refusal whether the file exists or not, and nothing read."""
    write(folder / "secret.yaml", "password: hunter2\n")
    body = {"version": 1, "name": "p", "steps": [{"id": "greet", "plan": ref}]}
    for plan in (body, yaml.safe_dump(body)):
        with pytest.raises(PlanError) as caught:
            compile_plan(plan, tools)
        assert [
            str(p).split(": ", 1)[-1] if isinstance(plan, str) else str(p)
            for p in caught.value.problems
        ] == [NOT_A_FILE.format(ref=ref)]
    named = compile_plan(
        {**body, "steps": [{"id": "greet", "plan": "child", "inputs": {"who": "Ada"}}]}, tools
    )
    assert named.steps["greet"].subplan is not None  # a name of the plan folders is fine


def test_a_plan_name_does_not_follow_a_link_out_of_its_folder(
    folder: Path, tools: ToolRegistry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "x.yaml", CHILD)
    (folder / "plans" / "escape.yaml").symlink_to(outside / "x.yaml")
    body = {"version": 1, "name": "p", "steps": [{"id": "greet", "plan": "escape"}]}
    with pytest.raises(PlanError) as caught:
        compile_plan(body, tools)
    assert str(caught.value.problems[0]).startswith(
        "step 'greet': no plan named 'escape' in plans/"
    )


def test_a_plan_file_names_no_sub_plan_outside_its_folder_and_the_plan_folders(
    folder: Path, tools: ToolRegistry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "x.yaml", CHILD)
    (folder / "work").mkdir()
    (folder / "work" / "link.yaml").symlink_to(outside / "x.yaml")
    for ref in (
        str(outside / "x.yaml"),
        "../../outside/x.yaml",
        "link.yaml",
        "../" * 12 + "etc/passwd",
    ):
        path = write(
            folder / "work" / "a.yaml",
            f"""\
            version: 1
            name: a
            steps:
              - {{id: greet, plan: "{ref}", inputs: {{who: Ada}}}}
            """,
        )
        with pytest.raises(PlanError) as caught:
            load_plan(path, tools)
        assert [p.message for p in caught.value.problems] == [OUTSIDE.format(ref=ref, root="work")]
    write(folder / "work" / "inside" / "b.yaml", CHILD)
    for ref in ("inside/b.yaml", "../plans/child.yaml"):  # its folder, a plan folder
        path.write_text(
            path.read_text().replace("link.yaml", ref).split("plan: ")[0]
            + f'plan: "{ref}", inputs: {{who: Ada}}}}\n'
        )
        assert load_plan(path, tools).steps["greet"].subplan is not None


def test_graph_labels_the_step_with_the_plan(folder: Path, tools: ToolRegistry) -> None:
    path = write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - {id: greet, plan: child, inputs: {who: Ada}}
        """,
    )
    assert '    greet["greet<br/>plan child"]' in to_mermaid(load_plan(path, tools))


def test_validate_and_run_refuse_a_bad_sub_plan_before_anything_runs(folder: Path) -> None:
    from tests.cli import invoke

    write(
        folder / "plans" / "greet.yaml",
        """\
        version: 1
        name: greet
        inputs: {times: {type: integer}}
        steps:
          - {id: say, tool: notify.log, args: {message: "hi x${{ inputs.times }}"}}
        """,
    )
    write(
        folder / "a.yaml",
        """\
        version: 1
        name: a
        steps:
          - id: say
            tool: notify.log
            args: {message: hi}
          - id: sub
            plan: greet
            inputs: {times: many}
        """,
    )
    expected = (
        "a.yaml:9:21: step 'sub': input 'times' of plan 'greet' must be integer: Input "
        "should be a valid integer, unable to parse string as an integer (got 'many')"
    )
    env = {"DAGENTIC_RUNS_DIR": str(folder / "runs"), "DAGENTIC_JOURNAL__ENABLED": "false"}
    validated = invoke("validate", "a.yaml", env=env)
    assert validated.exit_code == 2 and expected in validated.output.replace("\n", "")
    ran = invoke("run", "a.yaml", env=env)
    assert ran.exit_code == 2 and expected in ran.output.replace("\n", "")
    assert "nothing was run" in ran.output


# --------------------------------------------------------------------------- running


async def test_when_and_a_checks_retry_work_on_a_sub_plan_step(
    folder: Path, tools: ToolRegistry
) -> None:
    seen: list[int] = []

    @tool(name="t.count", side_effects="none")
    async def count() -> int:
        """Count the calls.

        Returns:
            How many calls so far.
        """
        seen.append(1)
        return len(seen)

    write(
        folder / "plans" / "counts.yaml",
        """\
        version: 1
        name: counts
        steps:
          - {id: c, tool: t.count}
        outputs: {n: "${{ steps.c.output }}"}
        """,
    )
    plan = {
        "name": "parent",
        "steps": [
            {"id": "never", "plan": "counts", "when": False},
            {"id": "twice", "plan": "counts"},
            {
                "id": "enough",
                "check": {"assert": "${{ steps.twice.output.n >= 2 }}", "on_fail": "retry"},
            },
        ],
    }
    result = await executor(ToolRegistry([*tools, count])).run(plan)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["never"].status is StepStatus.SKIPPED
    assert result.steps["twice"].output == {"n": 2}  # the check ran it again


async def test_outputs_foreach_and_inputs_from_steps(folder: Path, tools: ToolRegistry) -> None:
    plan = {
        "name": "parent",
        "steps": [
            {"id": "name", "tool": "test.echo", "args": {"value": "Ada"}},
            {
                "id": "one",
                "plan": "child",
                "inputs": {"who": "${{ steps.name.output }}", "times": 2},
            },
            {
                "id": "each",
                "plan": "child",
                "foreach": ["x", "y"],
                "inputs": {"who": "${{ item }}"},
            },
        ],
        "outputs": {"said": "${{ steps.one.output.said }}"},
    }
    result = await executor(tools).run(plan)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["one"].output == {"said": "hi Ada x2"}
    assert result.steps["each"].output == [{"said": "hi x x1"}, {"said": "hi y x1"}]
    assert result.outputs == {"said": "hi Ada x2"}
    assert result.steps["one"].tool == "plan:child"  # as an approver and an answer see it
    assert result.usage.steps == 3 + 3  # its own three, and one in each of three children


async def test_inputs_of_the_wrong_type_at_run_time_are_invalid_args(
    folder: Path, tools: ToolRegistry
) -> None:
    plan = {
        "name": "parent",
        "steps": [
            {"id": "n", "tool": "test.echo", "args": {"value": [1]}},
            {"id": "s", "plan": "child", "inputs": {"who": "a", "times": "${{ steps.n.output }}"}},
        ],
    }
    result = await executor(tools).run(plan)
    error = result.steps["s"].error
    assert error is not None and error.failure_mode is FailureMode.INVALID_ARGS
    assert error.message == (
        "step 's': plan 'child' rejected its inputs: input 'times' must be integer, got [1]: "
        "Input should be a valid integer"
    )


async def test_a_failed_child_fails_the_step_with_its_mode(
    folder: Path, tools: ToolRegistry
) -> None:
    write(
        folder / "plans" / "broken.yaml",
        """\
        version: 1
        name: broken
        steps:
          - {id: boom, tool: test.fail, args: {message: it broke}}
        """,
    )
    plan = {"name": "parent", "steps": [{"id": "s", "plan": "broken"}]}
    result = await executor(tools).run(plan)
    assert result.status is RunStatus.FAILED
    error = result.steps["s"].error
    assert error is not None and error.failure_mode is FailureMode.TOOL_ERROR
    assert error.message == "step 's': plan 'broken' failed: step 'boom' failed: it broke"


async def test_a_timeout_cancels_the_child(folder: Path, tools: ToolRegistry) -> None:
    write(
        folder / "plans" / "slow.yaml",
        """\
        version: 1
        name: slow
        steps:
          - {id: nap, tool: test.sleep, args: {seconds: 30}}
        """,
    )
    plan = {"name": "parent", "steps": [{"id": "s", "plan": "slow", "timeout": "200ms"}]}
    with anyio.fail_after(10):
        result = await executor(tools).run(plan)
    error = result.steps["s"].error
    assert error is not None and error.failure_mode is FailureMode.TIMEOUT
    assert error.message == "step 's': plan 'slow' failed: the run's deadline of 0.2s passed"


async def test_retry_runs_the_child_again(folder: Path, tools: ToolRegistry) -> None:
    seen: list[int] = []

    @tool(name="t.flaky", side_effects="read")
    async def flaky() -> int:
        """Fail on the first call.

        Returns:
            The number of calls.
        """
        seen.append(1)
        if len(seen) == 1:
            raise ToolError("not yet", retryable=True)
        return len(seen)

    write(
        folder / "plans" / "flaky.yaml",
        """\
        version: 1
        name: flaky
        steps:
          - {id: f, tool: t.flaky}
        outputs: {calls: "${{ steps.f.output }}"}
        """,
    )
    plan = {
        "name": "parent",
        "steps": [{"id": "s", "plan": "flaky", "retry": {"attempts": 2, "backoff": "1ms"}}],
    }
    result = await executor(ToolRegistry([*tools, flaky])).run(plan)
    assert result.steps["s"].output == {"calls": 2}
    assert result.steps["s"].attempts == 2


async def test_approval_asks_about_the_whole_sub_plan(folder: Path, tools: ToolRegistry) -> None:
    asked: list[tuple[str, str, str, dict[str, Any]]] = []

    async def approver(step_id: str, called: Any, args: dict[str, Any]) -> bool:
        asked.append((step_id, called.name, called.side_effects, args))
        return False

    write(
        folder / "plans" / "writes.yaml",
        """\
        version: 1
        name: writes
        inputs: {text: {type: string}}
        steps:
          - {id: w, tool: test.write, args: {text: "${{ inputs.text }}"}}
        """,
    )
    plan = {
        "name": "parent",
        "steps": [{"id": "s", "plan": "writes", "approval": "required", "inputs": {"text": "hi"}}],
    }
    result = await executor(tools, approver=approver).run(plan)
    assert asked == [("s", "plan:writes", "write", {"text": "hi"})]
    error = result.steps["s"].error
    assert error is not None and error.failure_mode is FailureMode.POLICY_BLOCKED


async def test_untrusted_data_stays_untrusted_both_ways(folder: Path, tools: ToolRegistry) -> None:
    write(
        folder / "plans" / "reads.yaml",
        """\
        version: 1
        name: reads
        steps:
          - {id: page, tool: test.untrusted}
        outputs: {text: "${{ steps.page.output.text }}"}
        """,
    )
    write(
        folder / "plans" / "saves.yaml",
        """\
        version: 1
        name: saves
        inputs: {text: {type: string}}
        steps:
          - {id: save, tool: test.write, args: {text: "${{ inputs.text }}"}}
        """,
    )
    plan = {
        "name": "parent",
        "steps": [
            {"id": "read", "plan": "reads"},
            {"id": "save", "plan": "saves", "inputs": {"text": "${{ steps.read.output.text }}"}},
        ],
    }
    compiled = compile_plan(plan, tools)
    assert compiled.steps["read"].provenance.untrusted_from == ("test.untrusted",)
    result = await executor(tools).run(compiled)
    assert result.steps["read"].provenance.untrusted_from == ("test.untrusted",)
    error = result.steps["save"].error
    assert error is not None and error.failure_mode is FailureMode.POLICY_BLOCKED
    assert error.message == (
        "step 'save': plan 'saves' failed: step 'save': tool 'test.write' writes, and its "
        "arguments carry untrusted data from test.untrusted; set 'allow_untrusted: true' on "
        "the step if that is intended"
    )


async def test_a_callers_step_output_cannot_say_where_a_sub_plan_sends_data(
    folder: Path, tools: ToolRegistry
) -> None:
    @tool(name="t.send", side_effects="none", egress={"url": "destination"})
    async def send(url: str) -> str:
        """Send to a URL (pretend).

        Args:
            url: Where to.
        """
        return url

    write(
        folder / "plans" / "sends.yaml",
        """\
        version: 1
        name: sends
        inputs: {to: {type: string}}
        steps:
          - {id: go, tool: t.send, args: {url: "${{ inputs.to }}"}}
        """,
    )
    plan = {
        "name": "parent",
        "steps": [
            {"id": "where", "tool": "test.echo", "args": {"value": "https://example.org"}},
            {"id": "given", "plan": "sends", "inputs": {"to": "https://example.org"}},
            {"id": "built", "plan": "sends", "inputs": {"to": "${{ steps.where.output }}"}},
        ],
    }
    result = await executor(ToolRegistry([*tools, send])).run(plan)
    assert result.steps["given"].status is StepStatus.SUCCEEDED  # written in the plan
    error = result.steps["built"].error
    assert error is not None and error.failure_mode is FailureMode.POLICY_BLOCKED
    assert error.message == (
        "step 'built': plan 'sends' failed: step 'go': tool 't.send' sends argument 'url' "
        "off this machine, and it is built from input 'to', which the calling plan built "
        "from a step's output, so it decides where data goes; set 'allow_egress: true' on "
        "the step if that is intended"
    )


async def test_the_child_run_is_traced_under_its_step(folder: Path, tools: ToolRegistry) -> None:
    settings = blind_settings(runs_dir=folder / "runs", tracing={"metrics": False})
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    write(
        folder / "plans" / "failing.yaml",
        """\
        version: 1
        name: failing
        steps:
          - {id: boom, tool: test.fail}
        """,
    )
    plan = {
        "name": "parent",
        "steps": [
            {"id": "greet", "plan": "child", "inputs": {"who": "Ada"}},
            {"id": "broken", "plan": "failing", "needs": ["greet"]},
        ],
    }
    result = await Executor(tools, settings=settings, tracing=tracing, journal=None).run(
        plan, run_id="r1"
    )
    tracing.flush()
    assert result.steps["greet"].status is StepStatus.SUCCEEDED
    spans = list(read_spans(next(iter(run_files(folder / "runs")))))
    by_name = {s["name"]: s for s in spans}
    step, child = by_name["run_plan child"], by_name["run child"]
    assert child["parent_id"] == step["span_id"]
    analysis = analyse(spans, "r1")
    rows = analysis["timeline"]
    assert [(r["kind"], r["label"], r["detail"], r["depth"]) for r in rows] == [
        ("step", "greet", "plan child", 0),
        ("run", "run child", ".greet", 1),
        ("step", "say", "test.echo", 2),
        ("step", "broken", "plan failing", 0),
        ("run", "run failing", ".broken", 1),
        ("step", "boom", "test.fail", 2),
    ]
    # a failure is listed once, where it happened: not again on its sub-plan step and runs
    assert [(f["step_id"], f["failure_mode"]) for f in analysis["failures"]] == [
        ("boom", "tool_error")
    ]
    console = Console(width=160, record=True, color_system=None)
    render_trace(analysis, console)
    assert "critical path of run child: say" in console.export_text()


# --------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("as_file", [False, True])
async def test_a_finished_sub_plan_step_is_not_run_again_on_resume(
    folder: Path, tools: ToolRegistry, monkeypatch: pytest.MonkeyPatch, as_file: bool
) -> None:
    written: list[str] = []

    @tool(name="t.write", side_effects="write", idempotent=False)
    async def counted(text: str) -> str:
        """Write (counted).

        Args:
            text: What is written.
        """
        written.append(text)
        return text

    @tool(name="t.block", side_effects="read")
    async def block() -> None:
        """Never return."""
        await anyio.sleep_forever()

    write(
        folder / "plans" / "saves.yaml",
        """\
        version: 1
        name: saves
        steps:
          - {id: w, tool: t.write, args: {text: once}}
        outputs: {w: "${{ steps.w.output }}"}
        """,
    )
    plan: Any = {
        "name": "parent",
        "steps": [
            {"id": "save", "plan": "saves"},
            {"id": "wait", "tool": "t.block", "needs": ["save"]},
        ],
    }
    if as_file:  # its sub-plan is a path relative to it, wherever the run resumes
        plan["steps"][0]["plan"] = "sub/saves.yaml"
        plan = write(folder / "work" / "parent.yaml", json.dumps(plan))
        (folder / "work" / "sub").mkdir()
        (folder / "plans" / "saves.yaml").rename(folder / "work" / "sub" / "saves.yaml")
    durable = DurableJournal(open_store(str(folder / "journal.sqlite")), lease=30.0)
    try:
        registry = ToolRegistry([*tools, counted, block])
        ex = executor(registry, journal=durable)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:

                async def cancel_when_blocked() -> None:
                    while (
                        not durable.store.run("r-sub")
                        or ex._runs.get("r-sub") is None
                        or (ex._runs["r-sub"].states["wait"].started is None)
                    ):
                        await anyio.sleep(0.01)
                    ex.cancel()

                group.start_soon(cancel_when_blocked)
                first = await ex.run(plan, run_id="r-sub")
        assert first.status is RunStatus.CANCELLED
        assert first.steps["save"].status is StepStatus.SUCCEEDED

        async def done() -> None:
            return None

        fixed = ToolRegistry(replace(t, fn=done) if t.name == "t.block" else t for t in registry)
        if as_file:
            (folder / "elsewhere").mkdir()
            monkeypatch.chdir(folder / "elsewhere")
        resumed = await executor(fixed, journal=durable).resume("r-sub")
    finally:
        durable.close()
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.steps["save"].output == {"w": "once"}
    assert written == ["once"]  # the child ran once, before the run stopped


def test_the_json_schema_knows_sub_plans() -> None:
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "plans" / "plan.schema.json").read_text()
    )
    step = schema["$defs"]["Step"]["properties"]
    assert {"plan", "inputs"} <= set(step)
