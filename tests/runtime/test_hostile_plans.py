"""Hostile plans and values: everything an expression, a plan or a tool's output may
consume is bounded before it is spent (see dagentic.bounds).

Five classes, each tried in several shapes: expressions that would burn unbounded CPU,
expressions and templates that would build huge values, plan files that would take
minutes or gigabytes to read (alias bombs, deep nesting, sheer size), values nested
too deeply to be written out, and runs whose steps, each within its bounds, would keep
gigabytes of outputs in all (or print them). Wall-clock limits here are safety nets far above what a
bounded implementation takes; what is asserted is the exact message.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import (
    Executor,
    FailureMode,
    Plan,
    PlanError,
    RunResult,
    RunStatus,
    StepResult,
    ToolRegistry,
    compile_plan,
    load_tools,
    tool,
)
from dagentic.bounds import (
    MAX_ERROR_SIZE,
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    MAX_PLAN_NODES,
    MAX_RUN_OUTPUT_SIZE,
    MAX_STEPS,
    MAX_VALUE_DEPTH,
    cut_value,
    deep_size,
)
from dagentic.cli import app
from dagentic.errors import EvaluationError, ToolError
from dagentic.expressions import compile_expression, compile_template
from dagentic.models import ScriptedModel
from dagentic.planner import LLMPlanner
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.blind import blind_settings
from tests.cli import invoke, isolate

SAFETY_NET = 20.0  # seconds; a bounded evaluation takes well under one

HUGE = 10**5000  # as a Python tool could return: 16,610 bits
BIG_LIST = list(range(300_000))
SCOPE: dict[str, Any] = {
    "inputs": {
        "n": 10**70,
        "huge": HUGE,
        "big": BIG_LIST,
        "rows": [{"region": f"r{i}", "revenue": i} for i in range(100_000)],
        "text": "a b " * 300_000,
        "page": "x" * 20_000_000,
        "blank": [""] * 1_000_000,
        "wide": {f"k{i}": i for i in range(200_000)},
    },
    "steps": {},
}


@contextmanager
def within(seconds: float = SAFETY_NET) -> Iterator[None]:
    started = time.perf_counter()
    yield
    assert time.perf_counter() - started < seconds


def evaluation_error(source: str) -> str:
    with within(), pytest.raises(EvaluationError) as info:
        compile_expression(source).evaluate(SCOPE)
    return info.value.message


def too_big(what: str, source: str) -> str:
    return (
        f"{what} would build more than 1,000,000 characters and items in one expression; "
        f"do large data work in a tool step (in '${{{{ {source} }}}}')"
    )


def too_much_work(what: str, source: str) -> str:
    return (
        f"{what} would do more than 10,000,000 units of work in one evaluation; "
        f"do large data work in a tool step (in '${{{{ {source} }}}}')"
    )


def too_long_a_number(what: str, source: str, verb: str = "cannot take") -> str:
    return f"{what} {verb} a number of more than 256 bits (in '${{{{ {source} }}}}')"


# --------------------------------------------------------------------------- CPU


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # integers are bounded in bit length before each operation...
        ("inputs.n * inputs.n", too_long_a_number("'*'", "inputs.n * inputs.n", "would build")),
        ("inputs.huge // 7", too_long_a_number("'//'", "inputs.huge // 7")),
        ("inputs.huge % 7", too_long_a_number("'%'", "inputs.huge % 7")),
        ("inputs.huge / inputs.huge", too_long_a_number("'/'", "inputs.huge / inputs.huge")),
        ("inputs.huge + 1", too_long_a_number("'+'", "inputs.huge + 1")),
        ("inputs.huge - 1", too_long_a_number("'-'", "inputs.huge - 1")),
        ("-inputs.huge", too_long_a_number("'-'", "-inputs.huge")),
        ("inputs.huge * 0", too_long_a_number("'*'", "inputs.huge * 0")),
        ("'ab' * inputs.huge", too_long_a_number("'*'", "'ab' * inputs.huge")),
        # ... and after it
        (
            "inputs.n * inputs.n * inputs.n",
            too_long_a_number("'*'", "inputs.n * inputs.n * inputs.n", "would build"),
        ),
        # functions that compute with or write integers
        ("abs(inputs.huge)", too_long_a_number("abs()", "abs(inputs.huge)")),
        ("round(inputs.huge)", too_long_a_number("round()", "round(inputs.huge)")),
        ("float(inputs.huge)", too_long_a_number("float()", "float(inputs.huge)")),
        ("int(inputs.huge)", too_long_a_number("int()", "int(inputs.huge)")),
        ("int(1e308)", too_long_a_number("int()", "int(1e308)", "would build")),
        ("round(1e308)", too_long_a_number("round()", "round(1e308)", "would build")),
        (
            "int('9' * 5000)",
            "int() reads numbers of at most 100 characters (in '${{ int('9' * 5000) }}')",
        ),
        (
            "fromjson('9' * 5000)",
            "fromjson() would build a number of more than 256 bits "
            "(in '${{ fromjson('9' * 5000) }}')",
        ),
        (
            "fromjson('9' * 80)",
            too_long_a_number("fromjson()", "fromjson('9' * 80)", "would build"),
        ),
        (
            "str(inputs.huge)",
            "a number of more than 256 bits cannot be written as text "
            "(in '${{ str(inputs.huge) }}')",
        ),
        (
            "tojson([inputs.huge])",
            "a number of more than 256 bits cannot be written as text "
            "(in '${{ tojson([inputs.huge]) }}')",
        ),
        (
            "join([1, inputs.huge])",
            "a number of more than 256 bits cannot be written as text "
            "(in '${{ join([1, inputs.huge]) }}')",
        ),
        # work that repeats over large data is counted per evaluation
        (
            "sorted(inputs.big) == sorted(inputs.big)",
            too_much_work("sorted()", "sorted(inputs.big) == sorted(inputs.big)"),
        ),
        (
            " or ".join(["contains(inputs.big, -1)"] * 40),
            too_much_work("contains()", " or ".join(["contains(inputs.big, -1)"] * 40)),
        ),
        (
            " or ".join(["-1 in inputs.big"] * 40),
            too_much_work("'in'", " or ".join(["-1 in inputs.big"] * 40)),
        ),
        (
            " and ".join(["inputs.rows == values({'r': inputs.rows})[0][:]"] * 30),
            too_much_work(
                "'=='", " and ".join(["inputs.rows == values({'r': inputs.rows})[0][:]"] * 30)
            ),
        ),
        (
            " or ".join(["contains(inputs.page, 'z')"] * 10),
            too_much_work("contains()", " or ".join(["contains(inputs.page, 'z')"] * 10)),
        ),
        (
            " or ".join(["startswith(inputs.page, 'z')"] * 10),
            too_much_work("startswith()", " or ".join(["startswith(inputs.page, 'z')"] * 10)),
        ),
        (
            " or ".join(["join(inputs.blank, '')"] * 40),
            too_much_work("join()", " or ".join(["join(inputs.blank, '')"] * 40)),
        ),
        (
            "[" + ", ".join(["sorted(inputs.big)"] * 3) + "]",
            too_much_work("sorted()", "[" + ", ".join(["sorted(inputs.big)"] * 3) + "]"),
        ),
    ],
)
def test_no_operation_spends_unbounded_cpu(source: str, message: str) -> None:
    assert evaluation_error(source) == message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("round(5, -100000000)", 0),
        ("round(1234.5678, -2)", 1200.0),
        ("round(1.5, 100000000)", 1.5),
        ("round(123, -1)", 120),
        ("int('9' * 70) * 10", int("9" * 70) * 10),
        ("int('9' * 38) * int('9' * 38)", int("9" * 38) ** 2),
    ],
)
def test_round_to_any_number_of_digits_costs_nothing_more(source: str, expected: Any) -> None:
    with within():
        assert compile_expression(source).evaluate({}) == expected


def test_default_does_not_hide_a_limit() -> None:
    source = "default(inputs.n * inputs.n, 0)"
    assert evaluation_error(source) == too_long_a_number("'*'", source, "would build")


HEAVY = "sorted(inputs.big) == sorted(inputs.big)"


@pytest.mark.parametrize(
    ("step", "where", "source"),
    [
        ({"when": f"${{{{ {HEAVY} }}}}"}, "when", HEAVY),
        ({"foreach": f"${{{{ [{HEAVY}] }}}}"}, "foreach", f"[{HEAVY}]"),
        ({"args": {"value": f"${{{{ {HEAVY} }}}}"}}, "args", HEAVY),
        ({"args": {"value": f"n: ${{{{ {HEAVY} }}}}"}}, "args", HEAVY),
    ],
)
def test_a_hostile_expression_fails_its_step_and_the_run_goes_on(
    step: dict[str, Any], where: str, source: str
) -> None:
    plan = {
        "name": "hostile",
        "inputs": {"big": {"type": "array"}},
        "steps": [
            {"id": "bad", "tool": "hostile.echo", **step},
            {"id": "other", "tool": "hostile.echo", "args": {"value": 1}},
        ],
    }
    with within():
        result = run(plan, {"big": BIG_LIST})
    assert result.steps["other"].status.value == "succeeded"
    error = result.steps["bad"].error
    assert error.failure_mode is FailureMode.INVALID_ARGS
    assert error.message == f"step 'bad': {where}: " + too_much_work("sorted()", source)


def test_listing_the_keys_of_a_huge_object_is_bounded_work() -> None:
    message = evaluation_error("inputs.wide.nope")
    assert message.startswith("'inputs.wide' has no key 'nope' (keys: k0, k1, k10, k100, ")


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("'ab' * 500001", "'*'"),
        ("[['a' * 1000] * 1000] * 2", "'*'"),  # shared parts count each time they appear
        ("inputs.text + 'x'", "'+'"),
        ("inputs.big + inputs.big + inputs.big + inputs.big", "'+'"),
        ("join([inputs.text, 'b'], '')", "join()"),
        ("join(inputs.big, ',')", "join()"),
        ("join(['x', 'y'], inputs.text)", "join()"),
        ("replace('a' * 2000, 'a', 'a' * 1000)", "replace()"),
        ("tojson(inputs.rows)", "tojson()"),
        ("str(inputs.rows)", "str()"),
        ("split(inputs.text)", "split()"),
        ("split(inputs.text, ' ')", "split()"),
        ("upper(inputs.text)", "upper()"),
        ("[" + ", ".join(["keys(inputs.wide)"] * 6) + "]", "keys()"),
        ("[" + ", ".join(["values(inputs.wide)"] * 6) + "]", "values()"),
        ("fromjson(inputs.text)", "fromjson()"),
        ("[" + ", ".join(["inputs.big[:]"] * 4) + "]", "a slice"),
        ("{" + ", ".join(f"'k{i}': inputs.big[:]" for i in range(4)) + "}", "a slice"),
    ],
)
def test_no_expression_builds_more_than_the_size_bound(source: str, what: str) -> None:
    assert evaluation_error(source) == too_big(what, source)


def test_list_and_object_literals_count_what_they_hold() -> None:
    parts = ", ".join(["inputs.text[:300000]"] * 3)  # 900,000 characters and three items
    assert compile_expression(f"[{parts}]").evaluate(SCOPE)[0] == "a b " * 75_000
    source = f"[{parts}, inputs.text[:100000]]"
    assert evaluation_error(source) == too_big("a slice", source)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("${{ 'a' * 600000 }}${{ 'b' * 600000 }}", "${{ 'b' * 600000 }}"),
        ("x " + "${{ 'a' * 300000 }} " * 4, "${{ 'a' * 300000 }}"),
        ("${{ inputs.text }} and ${{ inputs.text }}", "${{ inputs.text }}"),
        ("rows: ${{ inputs.rows }}", "${{ inputs.rows }}"),
        ("${{ inputs.big[:100000] }}${{ inputs.big[:100000] }}", "${{ inputs.big[:100000] }}"),
    ],
)
def test_interpolating_several_expressions_into_one_text_is_bounded(
    text: str, culprit: str
) -> None:
    with within(), pytest.raises(EvaluationError) as info:
        compile_template(text).render(SCOPE)
    assert info.value.message == (
        f"the text would be longer than 1,000,000 characters with '{culprit}' in it; "
        "do large data work in a tool step"
    )


@tool(name="hostile.deep", side_effects="none")
async def deep(levels: int) -> Any:
    """Return a list nested `levels` deep, as sandboxed code may.

    Args:
        levels: How deep.
    """
    return _nested(levels)


@tool(name="hostile.echo", side_effects="none")
async def echo(value: Any = None) -> Any:
    """Return the value it was given.

    Args:
        value: Anything JSON.
    """
    return value


def run(plan: dict[str, Any], inputs: dict[str, Any] | None = None) -> RunResult:
    executor = Executor(ToolRegistry([echo, deep]), settings=blind_settings())
    return anyio.run(lambda: executor.run(plan, inputs or {}))


@pytest.mark.parametrize(
    "value",
    [
        # many templates, each within its own bound, together past the step's
        {f"a{i}": "${{ 'x' * 999000 }}" for i in range(11)},
        # one large value used again and again
        {f"a{i}": "${{ inputs.rows }}" for i in range(30)},
        ["${{ inputs.rows }}"] * 30,
        {"text": "${{ inputs.text }}", "more": ["${{ inputs.rows }}"] * 29},
    ],
)
def test_a_steps_arguments_as_a_whole_are_bounded(value: Any) -> None:
    plan = {
        "name": "wide",
        "inputs": {"rows": {"type": "array"}, "text": {"type": "string"}},
        "steps": [{"id": "s", "tool": "hostile.echo", "args": {"value": value}}],
    }
    with within():
        result = run(plan, {"rows": SCOPE["inputs"]["rows"], "text": "a" * 900_000})
    error = result.steps["s"].error
    assert error.failure_mode is FailureMode.INVALID_ARGS
    assert error.message == (
        "step 's': args: the arguments would hold more than 10,000,000 characters and items "
        "in all (a value counts each time it is used); pass less data, or do large data work "
        "in a tool step"
    )


def test_the_plans_outputs_as_a_whole_are_bounded() -> None:
    plan = {
        "name": "outputs",
        "steps": [{"id": "s", "tool": "hostile.echo", "args": {"value": 1}}],
        "outputs": {f"o{i}": "${{ 'x' * 999000 }}" for i in range(11)},
    }
    with within():
        result = run(plan)
    assert result.status is RunStatus.FAILED
    assert result.error.message == (
        "output 'o10': the outputs would hold more than 10,000,000 characters and items in "
        "all (a value counts each time it is used); pass less data, or do large data work "
        "in a tool step"
    )


def test_values_within_the_bounds_pass_through_unchanged() -> None:
    plan = {
        "name": "fine",
        "inputs": {"rows": {"type": "array"}},
        "steps": [
            {"id": "s", "tool": "hostile.echo", "args": {"value": {"rows": "${{ inputs.rows }}"}}}
        ],
        "outputs": {"count": "${{ len(steps.s.output.rows) }}"},
    }
    rows = SCOPE["inputs"]["rows"]
    result = run(plan, {"rows": rows})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["s"].output["rows"] == rows
    assert result.outputs == {"count": 100_000}


# --------------------------------------------------------------------------- plan files


def _bomb(levels: int = 9, fanout: int = 9) -> str:
    lines = ["name: bomb", "steps: [{id: a, tool: notify.log, args: {message: hi}}]"]
    lines.append("x0: &a0 [" + ", ".join(["lol"] * fanout) + "]")
    for i in range(1, levels):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def _merge_bomb() -> str:
    lines = ["name: bomb", "steps: [{id: a, tool: notify.log, args: {message: hi}}]"]
    lines.append("m0: &m0 {" + ", ".join(f"k{j}: [1, 2, 3, 4, 5, 6, 7, 8]" for j in range(9)) + "}")
    for i in range(1, 9):
        lines.append(f"m{i}: &m{i} [" + ", ".join([f"{{<<: *m{i - 1}}}"] * 9) + "]")
    return "\n".join(lines) + "\n"


NODES = (
    f"the plan has more than {MAX_PLAN_NODES:,} keys, items and values (aliases expanded), "
    "the most a plan may; pass large data as an input or read it with a tool step"
)
DEEP = (
    f"this value nests deeper than {MAX_PLAN_DEPTH} levels, the most a plan may; flatten "
    "it, or pass deep data as an input or read it with a tool step"
)


def _deep_block(levels: int) -> str:
    lines = ["name: deep", "steps:", "  - id: a", "    tool: notify.log", "    args:"]
    for level in range(levels):
        lines.append("  " * (level + 3) + f"k{level}:")
    lines.append("  " * (levels + 3) + "end: 1")
    return "\n".join(lines) + "\n"


PLAN_BOMBS = [
    # text, line, column, message
    (_bomb(), 8, 10, NODES),
    (_bomb(levels=5, fanout=40), 6, 10, NODES),
    (_merge_bomb(), 7, 15, NODES),
    (
        "name: r\nsteps: &s [{id: a, tool: notify.log}, *s]\n",
        2,
        39,
        "the alias '*s' is inside the value it names; a plan cannot contain itself",
    ),
    (
        "name: r\nx: &x {y: [*x]}\nsteps: []\n",
        2,
        12,
        "the alias '*x' is inside the value it names; a plan cannot contain itself",
    ),
    (
        "name: many\nv: &v 1\nxs: [" + ", ".join(["*v"] * 101) + "]\nsteps: []\n",
        3,
        406,
        "more than 100 YAML aliases (*name); a plan may use at most 100: write the values out",
    ),
    (
        "name: deep\nsteps: [{id: a, tool: notify.log, args: {message: "
        + "[" * 300
        + "]" * 300
        + "}}]\n",
        2,
        111,
        DEEP,
    ),
    (_deep_block(80), 67, 129, DEEP),
    (
        "name: deep\nd: &d "
        + "[" * 40
        + "]" * 40
        + "\ne: "
        + "[" * 30
        + "*d"
        + "]" * 30
        + "\nsteps: []\n",
        3,
        34,
        DEEP,
    ),
    ("name: wide\nsteps: []\nxs: [" + ", ".join(["1"] * MAX_PLAN_NODES) + "]\n", 3, 299_985, NODES),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), PLAN_BOMBS)
def test_a_plan_file_that_would_take_too_long_to_read_is_refused_located(
    text: str, line: int, column: int, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    with within(), pytest.raises(PlanError) as info:
        Executor(load_tools(), settings=blind_settings()).compile(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:{line}:{column}: {message}"]


def test_a_plan_file_past_the_size_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    step = "  - {id: s0, tool: notify.log, args: {message: m}}\n"
    path.write_text("name: big\nsteps:\n" + step * (3 * MAX_PLAN_BYTES // len(step)))
    size = path.stat().st_size
    with within(), pytest.raises(PlanError) as info:
        Executor(load_tools(), settings=blind_settings()).compile(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:1:1: the plan is {size:,} bytes; a plan may be at most 1,048,576 bytes "
        "(1 MiB): pass large data as an input or read it with a tool step, or split the plan"
    ]


def test_a_plan_that_never_ends_is_read_no_further_than_the_bound(tmp_path: Path) -> None:
    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)

    def feed() -> None:  # endless, until the reader stops reading
        with suppress(BrokenPipeError), open(fifo, "wb", buffering=0) as handle:
            handle.write(b"name: endless\nsteps:\n")
            while True:
                handle.write(b"# more\n" * 1024)

    writer = threading.Thread(target=feed)
    writer.start()
    with within(), pytest.raises(PlanError) as info:
        Executor(load_tools(), settings=blind_settings()).compile(fifo)
    writer.join()
    assert [str(p) for p in info.value.problems] == [
        f"{fifo}:1:1: the plan is more than 1,048,576 bytes; a plan may be at most 1,048,576 "
        "bytes (1 MiB): pass large data as an input or read it with a tool step, or split "
        "the plan"
    ]


def test_a_plan_with_too_many_steps_is_refused_at_its_steps(tmp_path: Path) -> None:
    steps = "".join(
        f"  - {{id: s{i}, tool: notify.log, args: {{message: m}}}}\n" for i in range(MAX_STEPS + 1)
    )
    path = tmp_path / "many.yaml"
    path.write_text("name: many\nsteps:\n" + steps, encoding="utf-8")
    message = (
        "the plan has 10,001 steps; a plan may have at most 10,000: split it into several "
        "plans, or run one step over a list with foreach"
    )
    with within(), pytest.raises(PlanError) as info:
        Executor(load_tools(), settings=blind_settings()).compile(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:3:3: {message}"]


def _nested(depth: int, innermost: Any = 1) -> Any:
    value = innermost
    for _ in range(depth):
        value = [value]
    return value


def _dict_plan(value: Any) -> dict[str, Any]:
    return {"name": "d", "steps": [{"id": "a", "tool": "notify.log", "args": {"message": value}}]}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (_dict_plan(_nested(300)), f"steps[0].args.message{'[0]' * 60}: {DEEP}"),
        (_dict_plan(_nested(5000)), f"steps[0].args.message{'[0]' * 60}: {DEEP}"),
        (_dict_plan(list(range(MAX_PLAN_NODES))), f"steps[0].args.message[99986]: {NODES}"),
        (
            {
                "name": "d",
                "steps": [{"id": f"s{i}", "tool": "notify.log"} for i in range(MAX_STEPS + 1)],
            },
            "steps: the plan has 10,001 steps; a plan may have at most 10,000: split it into "
            "several plans, or run one step over a list with foreach",
        ),
    ],
)
def test_plans_given_as_data_are_held_to_the_same_bounds(plan: Any, message: str) -> None:
    with within(), pytest.raises(PlanError) as info:
        compile_plan(plan, load_tools())
    assert [str(p) for p in info.value.problems] == [message]
    with within(), pytest.raises(ValidationError) as caught:
        Plan.model_validate(plan)
    assert caught.value.errors()[0]["msg"] == f"Value error, {message}"


def test_a_model_planners_json_reply_is_held_to_the_same_bounds() -> None:
    reply = json.dumps(_dict_plan(_nested(100)))
    with within(), pytest.raises(ValidationError) as caught:
        Plan.model_validate_json(reply)
    assert caught.value.errors()[0]["msg"] == (
        f"Value error, steps[0].args.message{'[0]' * 60}: {DEEP}"
    )


@pytest.mark.parametrize("depth", [100, 500, 5000])
def test_a_model_reply_nested_too_deeply_is_sent_back_for_repair(depth: int) -> None:
    deep_text = "[" * depth + "1" + "]" * depth
    step = '{"id": "a", "tool": "notify.log", "args": {"message": ' + deep_text + "}}"
    reply = '{"steps": [' + step + "]}"
    fine = {"steps": [{"id": "a", "tool": "notify.log", "args": {"message": "hi"}}]}
    model = ScriptedModel([reply, fine])
    with within():
        planned = anyio.run(LLMPlanner(model, load_tools(), max_repairs=1).plan, "say hi")
    assert planned.plan.steps[0].args == {"message": "hi"}
    message = f"steps[0].args.message{'[0]' * 60}: {DEEP}" if depth < 900 else DEEP
    assert planned.problems == [[message]]


def test_a_plan_at_the_bounds_is_accepted() -> None:
    deepest = _nested(MAX_PLAN_DEPTH - 5)  # under plan, steps, a step and its args
    plan = {"name": "d", "steps": [{"id": "a", "tool": "hostile.echo", "args": {"value": deepest}}]}
    compiled = compile_plan(plan, ToolRegistry([echo]))
    assert compiled.plan.steps[0].args["value"] == deepest
    assert Plan.model_validate(plan).steps[0].args["value"] == deepest


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


@pytest.mark.parametrize("index", range(len(PLAN_BOMBS)))
def test_validate_and_run_exit_2_with_the_located_message(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text, line, column, message = PLAN_BOMBS[index]
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    for command in ("validate", "run"):
        with within():
            result = _cli(command, str(path))
        assert result.exit_code == 2, result.output
        assert f"{path}:{line}:{column}: {message}" in result.output.replace("\n", "")


# --------------------------------------------------------------------------- deep values


def test_a_value_nested_too_deeply_is_cut_with_a_marker() -> None:
    cut = cut_value(_nested(5000))
    assert cut == _nested(MAX_VALUE_DEPTH, "<cut: nested deeper than 64 levels>")


def test_a_value_within_the_bounds_is_returned_as_it_is() -> None:
    value = {"rows": [{"a": [1, 2]}] * 1000, "deep": _nested(MAX_VALUE_DEPTH - 2)}
    assert cut_value(value) is value


def test_a_cycle_and_a_huge_shared_value_are_cut_not_followed() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    assert cut_value(cycle) == _nested(MAX_VALUE_DEPTH, "<cut: nested deeper than 64 levels>")
    shared = ["x" * 1000] * 1000
    huge = [shared] * 1000  # a billion characters as JSON, a few KB in memory
    with within():
        cut = cut_value(huge)
    assert deep_size(cut, 10**8) <= 10_000_000 + 100
    assert cut[:9] == [shared] * 9
    assert cut[9][-1] == "<cut: 10 more items>"
    assert cut[10:] == ["<cut: 990 more items>"]


def test_a_string_past_the_size_bound_is_cut_with_a_marker() -> None:
    cut = cut_value("x" * 10_000_005)
    assert cut == "x" * 10_000_000 + "<cut: 5 more characters>"


def test_a_tools_deeply_nested_output_enters_the_run_cut() -> None:
    plan = {
        "name": "deep",
        "steps": [{"id": "d", "tool": "hostile.deep", "args": {"levels": 5000}}],
        "outputs": {"deep": "${{ steps.d.output }}"},
    }
    result = run(plan)
    assert result.status is RunStatus.SUCCEEDED, result.error
    marker = _nested(MAX_VALUE_DEPTH, "<cut: nested deeper than 64 levels>")
    assert result.steps["d"].output == marker
    assert result.outputs["deep"] == marker
    shown = json.loads(result.to_json())
    assert shown["steps"]["d"]["output"] == marker


ECHO_DEEP = {
    "name": "echo",
    "inputs": {"deep": {"type": "array"}},
    "steps": [{"id": "say", "tool": "hostile.echo", "args": {"value": "${{ inputs.deep }}"}}],
    "outputs": {"deep": "${{ inputs.deep }}", "length": "${{ len(inputs.deep) }}"},
}


def test_an_input_nested_1000_levels_is_shown_cut() -> None:
    result = run(ECHO_DEEP, {"deep": _nested(1000, [])})
    assert result.status is RunStatus.SUCCEEDED, result.error
    marker = _nested(MAX_VALUE_DEPTH, "<cut: nested deeper than 64 levels>")
    assert result.outputs == {"deep": marker, "length": 1}
    assert result.steps["say"].output == marker
    shown = json.loads(result.to_json())
    assert shown["outputs"]["deep"] == marker


def test_an_input_too_deep_to_read_as_json_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "echo.yaml"
    path.write_text(
        "name: echo\ninputs:\n  deep: {type: array}\nsteps:\n"
        "  - {id: say, tool: notify.log, args: {message: 'n=${{ len(inputs.deep) }}'}}\n",
        encoding="utf-8",
    )
    deep_json = "[" * 5000 + "]" * 5000
    with within():
        result = _cli("run", str(path), "--json", "-i", f"deep={deep_json}")
    assert result.exit_code == 2, result.output
    assert (
        f"input 'deep' must be array, got '{deep_json}': the JSON nests too deeply to be read"
        in (result.output.replace("\n", ""))
    )


def test_a_result_holding_values_pydantic_cannot_write_is_still_printed() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    now = datetime.now(UTC)
    result = RunResult(
        run_id="r",
        plan="p",
        status=RunStatus.SUCCEEDED,
        steps={"a": StepResult(id="a", output={"set": {1}, "object": object()})},
        outputs={"deep": _nested(5000), "cycle": cycle},
        started_at=now,
        finished_at=now,
    )
    shown = json.loads(result.to_json())
    assert shown["outputs"]["deep"] == _nested(64, "<cut: nested deeper than 64 levels>")
    assert shown["outputs"]["cycle"] == _nested(64, "<cut: nested deeper than 64 levels>")
    assert shown["steps"]["a"]["output"]["set"] == [1]
    assert shown["steps"]["a"]["output"]["object"].startswith("<object object at ")


def test_sandboxed_code_returning_a_deep_list_is_printed_cut_by_run_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGENTIC_SANDBOX__BACKEND", "process")
    path = tmp_path / "deep.yaml"
    path.write_text(
        "name: deep\nsteps:\n  - id: code\n    tool: code.python\n    args:\n"
        "      code: |\n        result = []\n        for _ in range(300):\n"
        "            result = [result]\n",
        encoding="utf-8",
    )
    result = _cli("run", str(path), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    output = shown["steps"]["code"]["output"]["result"]
    # the output is {"result": [...]}: its 64 levels are the object and 63 lists
    assert output == _nested(MAX_VALUE_DEPTH - 1, "<cut: nested deeper than 64 levels>")


# --------------------------------------------------------------------------- a whole run

SIZED_CALLS: list[int] = []


@tool(name="hostile.sized", side_effects="none")
async def sized(n: int) -> str:
    """Return `n` characters; a negative `n` fails, with a message of -n characters.

    Args:
        n: How many.
    """
    SIZED_CALLS.append(n)
    if n < 0:
        raise ToolError("y" * -n)
    return "x" * n


def run_kept(plan: dict[str, Any] | str, **settings: Any) -> RunResult:
    """``plan`` run with hostile.echo and hostile.sized under ``settings``."""
    SIZED_CALLS.clear()
    executor = Executor(ToolRegistry([echo, sized]), settings=blind_settings(**settings))
    return anyio.run(lambda: executor.run(plan))


def kept(result: RunResult) -> int:
    """What ``result``'s step outputs hold, as the run's budget counts it."""
    return sum(
        deep_size(step.output, 10**10)
        for step in result.steps.values()
        if step.status == "succeeded"
    )


def over_budget(
    step: str, held: int, limit: int = MAX_RUN_OUTPUT_SIZE, item: int | None = None
) -> str:
    where = f"step '{step}': " + (f"item {item}: " if item is not None else "")
    return (
        f"{where}its output would take the step outputs this run keeps past {limit:,} "
        f"characters and items, the most a run keeps (setting max_run_output_size; {held:,} "
        "kept before it); return less per step (a filter, a limit) or split the plan into "
        "smaller runs"
    )


def test_many_steps_each_with_a_large_argument_keep_no_more_than_the_run_budget() -> None:
    plan = {
        "name": "wide",
        "steps": [
            {"id": f"s{i}", "tool": "hostile.echo", "args": {"value": "${{ 'x' * 999000 }}"}}
            for i in range(120)
        ],
    }
    with within():
        result = run_kept(plan)
    assert result.status is RunStatus.FAILED
    succeeded = [s for s in result.steps.values() if s.status == "succeeded"]
    failed = result.failures()
    assert len(succeeded) == 100  # 100 * 999,000 fit in 100,000,000; one more does not
    assert len(failed) == 20
    for step in failed:
        assert step.error.failure_mode is FailureMode.RESOURCE_LIMIT
        assert step.error.message == over_budget(step.id, 99_900_000)
        assert step.error.details == {"step": step.id, "limit": MAX_RUN_OUTPUT_SIZE}
        assert step.output is None
    assert kept(result) == 99_900_000 <= MAX_RUN_OUTPUT_SIZE
    assert result.error.message == over_budget(failed[0].id, 99_900_000)


def test_a_foreach_whose_items_return_large_outputs_stops_at_the_item_that_does_not_fit() -> None:
    plan = {
        "name": "fan",
        "steps": [
            {
                "id": "f",
                "tool": "hostile.sized",
                "foreach": "${{ split('x,' * 199 + 'x', ',') }}",
                "max_parallel": 1,
                "args": {"n": 1_000_000},
            }
        ],
    }
    with within():
        result = run_kept(plan)
    step = result.steps["f"]
    assert step.status == "failed"
    # each item takes its million characters and its place in the list
    assert step.error.message == over_budget("f", 99 * 1_000_001, item=99)
    assert step.error.details == {"step": "f", "item": 99, "limit": MAX_RUN_OUTPUT_SIZE}
    assert step.error.failure_mode is FailureMode.RESOURCE_LIMIT
    assert len(SIZED_CALLS) == 100  # no item after the one that did not fit was called
    assert step.output is None  # a failed step keeps nothing
    assert kept(result) == 0


def test_a_foreach_running_its_items_in_parallel_keeps_no_more_than_the_budget() -> None:
    plan = {
        "name": "fan",
        "steps": [
            {
                "id": "f",
                "tool": "hostile.sized",
                "foreach": "${{ split('x,' * 999 + 'x', ',') }}",
                "max_parallel": 16,
                "args": {"n": 1_000_000},
            }
        ],
    }
    with within():
        result = run_kept(plan)
    error = result.steps["f"].error
    assert error.failure_mode is FailureMode.RESOURCE_LIMIT
    item = error.details["item"]
    assert error.message == over_budget("f", 99 * 1_000_001, item=item)
    assert len(SIZED_CALLS) < 99 + 2 * 16  # what was running when it stopped, no more


def test_a_mix_of_large_steps_and_a_large_foreach_shares_one_budget() -> None:
    big = [
        {"id": f"big{i}", "tool": "hostile.echo", "args": {"value": "${{ 'x' * 999000 }}"}}
        for i in range(50)
    ]
    plan = {
        "name": "mix",
        "steps": [
            *big,
            {
                "id": "f",
                "tool": "hostile.sized",
                "needs": [step["id"] for step in big],
                "foreach": "${{ split('x,' * 59 + 'x', ',') }}",
                "max_parallel": 1,
                "args": {"n": 1_000_000},
            },
        ],
    }
    with within():
        result = run_kept(plan)
    assert [s.id for s in result.failures()] == ["f"]
    held = 50 * 999_000 + 50 * 1_000_001
    assert result.steps["f"].error.message == over_budget("f", held, item=50)
    assert kept(result) == 50 * 999_000  # the failed foreach's items are not kept


def test_a_step_that_fails_gives_back_what_its_items_took() -> None:
    plan = {
        "name": "back",
        "steps": [
            {
                "id": "f",
                "tool": "hostile.sized",
                "foreach": [300, 300, -5],
                "max_parallel": 1,
                "args": {"n": "${{ item }}"},
            },
            {"id": "g", "tool": "hostile.sized", "args": {"n": 900}},
        ],
    }
    # one step at a time, in plan order: f keeps 602 of 1,000 and fails; g needs 900
    result = run_kept(plan, max_run_output_size=1000, concurrency=1)
    assert result.steps["f"].error.message == "item 2: yyyyy"
    assert result.steps["g"].status == "succeeded", result.steps["g"].error
    assert SIZED_CALLS == [300, 300, -5, 900]


def test_a_step_run_again_by_a_check_gives_back_its_first_output() -> None:
    plan = """
name: again
steps:
  - {id: a, tool: hostile.sized, args: {n: 600}}
  - id: verify
    retry: {attempts: 2}
    check: {assert: "${{ len(steps.a.output) == 0 }}", on_fail: retry}
"""
    result = run_kept(plan, max_run_output_size=1000)
    assert result.steps["a"].status == "succeeded", result.steps["a"].error
    assert SIZED_CALLS == [600, 600]
    assert result.steps["verify"].error.failure_mode is FailureMode.CHECK_FAILED


def test_no_tool_is_called_once_no_output_could_be_kept() -> None:
    plan = {
        "name": "full",
        "steps": [
            {"id": "a", "tool": "hostile.sized", "args": {"n": 9}},
            {"id": "b", "tool": "hostile.echo", "needs": ["a"]},
            {"id": "c", "tool": "hostile.sized", "needs": ["b"], "args": {"n": 0}},
        ],
    }
    result = run_kept(plan, max_run_output_size=10)
    assert result.steps["b"].status == "succeeded"  # null: 1, the last that fits
    c = result.steps["c"]
    assert c.error.message == over_budget("c", 10, limit=10)
    assert c.attempts == 0
    assert SIZED_CALLS == [9]


def test_a_reused_output_is_kept_within_the_budget_too() -> None:
    done = StepResult(id="a", tool="hostile.sized", status="succeeded", output="x" * 2000)
    executor = Executor(
        ToolRegistry([echo, sized]), settings=blind_settings(max_run_output_size=1000)
    )
    plan = {"name": "again", "steps": [{"id": "a", "tool": "hostile.sized", "args": {"n": 1}}]}
    result = anyio.run(lambda: executor.run(plan, reuse={"a": done}))
    assert result.steps["a"].error.message == over_budget("a", 0, limit=1000)
    assert result.steps["a"].output is None


def test_a_huge_error_is_kept_cut() -> None:
    plan = {
        "name": "loud",
        "steps": [{"id": "a", "tool": "hostile.sized", "args": {"n": -(10**6)}}],
    }
    result = run_kept(plan)
    message = result.steps["a"].error.message
    assert message == "y" * MAX_ERROR_SIZE + f"<cut: {10**6 - MAX_ERROR_SIZE:,} more characters>"


def test_an_argument_a_tool_rejects_is_quoted_cut_in_its_error() -> None:
    plan = {
        "name": "bad",
        "steps": [
            {"id": "a", "tool": "hostile.sized", "args": {"n": "${{ 'ab' * 450000 }}"}},
        ],
    }
    result = run_kept(plan)
    assert result.steps["a"].error.message == (
        "step 'a': tool 'hostile.sized' rejected its arguments: n: Input should be a valid "
        f"integer, unable to parse string as an integer (got '{'ab' * 100}<cut: 899,800 more "
        "characters>')"
    )


# The repro of the red-team finding: 1,000 items, each logging and keeping 900,000 characters.
REPRO = """version: 1
name: fe
steps:
  - id: a
    tool: notify.log
    foreach: ${{ split("x," * 1000, ",") }}
    args: {message: '${{ "ab" * 450000 }}'}
"""
# notify.log keeps {message, level, data, logged_at}: 65 characters and items besides the
# message (58 when logged_at falls on a whole second), and its place in the list
PER_ITEM = 1 + 900_000 + 65


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate(tmp_path, monkeypatch)
    path = tmp_path / "fe.yaml"
    path.write_text(REPRO, encoding="utf-8")
    return path


def _repro_error(message: str) -> None:
    """``message`` is the repro's: 111 items fit, the item that did not is named."""
    found = re.search(r"item (\d+): .*; ([\d,]+) kept before it", message)
    assert found is not None, message
    item, held = int(found[1]), int(found[2].replace(",", ""))
    assert message == over_budget("a", held, item=item)
    assert 111 * (PER_ITEM - 7) <= held <= 111 * PER_ITEM


def test_the_repro_ends_in_resource_limit_and_prints_its_log_lines_cut(in_tmp: Path) -> None:
    with within():
        result = invoke("run", in_tmp)
    assert result.exit_code == 1, result.output
    # the summary, and at most 127 log lines (111 kept, 16 running) of about 2,000 characters
    assert len(result.stdout) < 10_000
    assert len(result.stderr) < 130 * 2200
    logged = [line for line in result.stderr.splitlines() if "abab" in line]
    assert 111 <= len(logged) <= 127
    for line in logged:
        assert "abab" * 500 + "… [898,000 more characters cut] run_id=" in line
        assert len(line) < 2200
    last = result.stdout.splitlines()[-1]
    assert last.startswith("resource_limit: ")
    _repro_error(last.removeprefix("resource_limit: "))


def test_the_repro_with_json_prints_a_bounded_result(in_tmp: Path) -> None:
    with within():
        result = invoke("run", in_tmp, "--json")
    assert result.exit_code == 1, result.output
    shown = json.loads(result.stdout)
    assert shown["status"] == "failed"
    assert shown["error"]["failure_mode"] == "resource_limit"
    _repro_error(shown["error"]["message"])
    assert len(result.stdout) < 10_000  # the failed step keeps none of its items


def test_many_large_steps_with_json_print_no_more_than_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(tmp_path, monkeypatch)
    path = tmp_path / "many.yaml"
    steps = "".join(
        f"  - {{id: s{i}, tool: notify.log, args: {{message: '${{{{ \"ab\" * 450000 }}}}'}}}}\n"
        for i in range(150)
    )
    path.write_text(f"version: 1\nname: many\nsteps:\n{steps}", encoding="utf-8")
    with within():
        result = invoke("run", path, "--json")
    assert result.exit_code == 1
    shown = json.loads(result.stdout)
    outputs = [step["output"] for step in shown["steps"].values()]
    assert sum(deep_size(o, 10**10) for o in outputs) <= MAX_RUN_OUTPUT_SIZE
    assert sum(o is not None for o in outputs) == 111
    assert len(result.stdout) < MAX_RUN_OUTPUT_SIZE + 1_000_000
