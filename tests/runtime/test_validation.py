"""Plan validation: every problem is reported at once, as ``file:line:col: message``, and
nothing runs unless the whole plan is valid."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    Check,
    Executor,
    InputSpec,
    Plan,
    PlanError,
    Problem,
    Settings,
    Step,
    Tool,
    ToolRegistry,
    compile_plan,
    load_plan,
    resolve_inputs,
    tool,
)


def write_plan(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, tools: ToolRegistry) -> list[str]:
    """``line:col: message`` of every problem ``load_plan`` reports, after checking that
    each one names the plan file."""
    path = write_plan(tmp_path, text)
    with pytest.raises(PlanError) as info:
        load_plan(path, tools)
    for problem in info.value.problems:
        assert problem.file == str(path)
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


# --------------------------------------------------------------------------- the report


def test_a_problem_prints_as_file_line_column_message(tmp_path: Path, tools: ToolRegistry) -> None:
    path = write_plan(
        tmp_path,
        """\
        name: typo
        steps:
          - id: a
            tool: notify.lgo
            args: {message: hi}
        """,
    )
    with pytest.raises(PlanError) as info:
        load_plan(path, tools)
    [problem] = info.value.problems
    assert isinstance(problem, Problem)
    assert (problem.file, problem.line, problem.column) == (str(path), 4, 11)
    expected = (
        f"{path}:4:11: step 'a': unknown tool 'notify.lgo' (did you mean "
        "'notify.log'?); `dagentic tools` lists the installed ones"
    )
    assert str(problem) == expected
    assert str(info.value) == expected
    assert info.value.failure_mode == "plan_invalid"
    assert isinstance(info.value, ValueError)


def test_all_problems_of_a_new_users_plan_are_reported_together_in_file_order(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    # A first plan as a new user writes it: a typo in a tool name, and two steps that
    # read each other's output.
    assert problems_of(
        tmp_path,
        """\
        name: first-try
        steps:
          - id: fetch
            tool: test.ecko
            args: {value: "${{ steps.summarize.output }}"}
          - id: summarize
            tool: notify.log
            args:
              message: "${{ steps.fetch.output }}"
              level: loud
        """,
        tools,
    ) == [
        "3:5: dependency cycle: fetch -> summarize -> fetch (each step needs the next)",
        "4:11: step 'fetch': unknown tool 'test.ecko' (did you mean 'test.echo'?); "
        "`dagentic tools` lists the installed ones",
        "10:14: step 'summarize': argument 'level' of tool 'notify.log': Input should be "
        "'info', 'warning' or 'error' (got 'loud')",
    ]


# --------------------------------------------------------------------------- YAML


def test_yaml_syntax_error_is_reported_where_the_parser_stopped(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    # The wording is libyaml's (PyYAML's C loader, which the product uses when present).
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: [1, 2}
        """,
        tools,
    ) == [
        "5:24: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)",
    ]


def test_unclosed_quote_is_reported_where_the_quote_opens(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    path = write_plan(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: "unclosed}
          - id: b
            tool: test.echo
        """,
    )
    with pytest.raises(PlanError) as info:
        load_plan(path, tools)
    [problem] = info.value.problems
    assert problem.message.startswith("YAML syntax error: found unexpected end of stream")
    # The quoted scalar starts at line 5, column 19; the end of the file is line 8.
    assert (problem.line, problem.column) == (5, 19)


def test_empty_plan_file_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(tmp_path, "", tools) == ["1:1: the plan file is empty"]
    assert problems_of(tmp_path, "# only a comment\n", tools) == ["1:1: the plan file is empty"]


@pytest.mark.parametrize("text", ["- id: a\n  tool: test.echo\n", "just words\n", "42\n"])
def test_plan_that_is_not_a_mapping_is_rejected(
    tmp_path: Path, tools: ToolRegistry, text: str
) -> None:
    assert problems_of(tmp_path, text, tools) == [
        "1:1: a plan must be a mapping with 'name' and 'steps'"
    ]


def test_duplicate_yaml_key_is_rejected_at_the_second_key(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: first
        goal: say hi
        name: second
        steps:
          - id: a
            tool: test.echo
        """,
        tools,
    ) == ["3:1: duplicate key 'name'"]


# --------------------------------------------------------------------------- schema


def test_unknown_top_level_field_suggests_the_closest_one(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        stepz:
          - id: a
            tool: test.echo
        """,
        tools,
    ) == [
        "1:1: missing required field 'steps'",
        "2:1: unknown field 'stepz' (did you mean 'steps'?)",
    ]


def test_unknown_top_level_field_without_a_close_match_lists_the_allowed_ones(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        frobnicate: 1
        steps:
          - id: a
            tool: test.echo
        """,
        tools,
    ) == [
        "2:1: unknown field 'frobnicate'; allowed here: version, name, goal, description, "
        "inputs, steps, outputs",
    ]


def test_unknown_step_field_names_the_step_and_suggests_the_closest_one(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
          - id: b
            tool: test.echo
            need: [a]
        """,
        tools,
    ) == ["7:5: step 'b': unknown field 'need' (did you mean 'needs'?)"]


def test_missing_name_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        goal: no name
        steps:
          - id: a
            tool: test.echo
        """,
        tools,
    ) == ["1:1: missing required field 'name'"]


def test_missing_steps_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(tmp_path, "name: x\n", tools) == ["1:1: missing required field 'steps'"]


@pytest.mark.parametrize("bad_id", ["1abc", "my-step", "steps.x", "_private"])
def test_step_id_must_be_usable_in_expressions(
    tmp_path: Path, tools: ToolRegistry, bad_id: str
) -> None:
    assert problems_of(
        tmp_path,
        f"""\
        name: x
        steps:
          - id: {bad_id}
            tool: test.echo
        """,
        tools,
    ) == [
        f"3:9: step '{bad_id}': id: a step id must start with a letter and hold only "
        "letters, digits and '_' (expressions read it as steps.<id>) "
        f"(got '{bad_id}')",
    ]


def test_step_with_both_tool_and_check_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            check: {assert: "${{ true }}"}
        """,
        tools,
    ) == [
        "3:5: step 'a' has both 'tool' and 'check'; make the check its own step",
    ]


def test_step_with_neither_tool_nor_check_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: first
            tool: test.echo
          - id: idle
            description: does nothing
        """,
        tools,
    ) == [
        "5:5: step 'idle' needs a 'tool' to call, a 'plan' to run or a 'check' to make",
    ]


def test_duplicate_step_id_points_at_the_first_definition(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
          - id: b
            tool: test.echo
          - id: a
            tool: test.echo
        """,
        tools,
    ) == ["7:9: duplicate step id 'a' (first defined at line 3)"]


# --------------------------------------------------------------------------- references


def test_unknown_need_suggests_the_closest_step(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: fetch
            tool: test.echo
          - id: report
            tool: test.echo
            needs: [fetch, fecth]
        """,
        tools,
    ) == ["7:20: step 'report' needs unknown step 'fecth' (did you mean 'fetch'?)"]


def test_step_needing_itself_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: loop
            tool: test.echo
            needs: loop
        """,
        tools,
    ) == ["5:12: step 'loop' needs itself"]


def test_expression_referencing_unknown_step_suggests_the_closest(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: fetch
            tool: test.echo
          - id: report
            tool: test.echo
            args: {value: "${{ steps.fetc.output }}"}
        """,
        tools,
    ) == ["7:19: step 'report' references unknown step 'fetc' (did you mean 'fetch'?)"]


def test_expression_referencing_unknown_input_suggests_the_closest(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        inputs:
          limit: {type: integer, default: 3}
        steps:
          - id: a
            tool: test.echo
            args: {value: "${{ inputs.limt }}"}
        """,
        tools,
    ) == ["7:19: step 'a' references unknown input 'limt' (did you mean 'limit'?)"]


def test_expression_referencing_an_input_of_a_plan_without_inputs_says_so(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: "${{ inputs.limit }}"}
        """,
        tools,
    ) == ["5:19: step 'a' references unknown input 'limit' (the plan declares no inputs)"]


def test_expression_reading_a_field_steps_do_not_have_lists_the_fields(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
          - id: b
            tool: test.echo
            args: {value: "${{ steps.a.outputs }}"}
        """,
        tools,
    ) == [
        "7:19: step 'b': 'steps.a.outputs' is not a step field (did you mean 'output'?); "
        "use one of output, status, error, attempts, duration",
    ]


def test_item_outside_a_foreach_step_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: "${{ item }}"}
        """,
        tools,
    ) == ["5:19: step 'a': 'item' is only defined in the args of a step with foreach"]


def test_item_in_the_when_of_a_foreach_step_is_rejected(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            foreach: [1, 2, 3]
            when: "${{ item > 1 }}"
            args: {value: "${{ item }}"}
        """,
        tools,
    ) == ["6:11: step 'a': 'item' is only defined in the args of a step with foreach"]


def test_output_referencing_unknown_step_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: fetch
            tool: test.echo
        outputs:
          answer: "${{ steps.fetched.output }}"
        """,
        tools,
    ) == ["6:11: output 'answer' references unknown step 'fetched' (did you mean 'fetch'?)"]


# --------------------------------------------------------------------------- cycles


def test_two_step_cycle_is_reported_at_its_first_step(tmp_path: Path, tools: ToolRegistry) -> None:
    # `a` needs `b` explicitly; `b` needs `a` by reading its output.
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            needs: b
          - id: b
            tool: test.echo
            args: {value: "${{ steps.a.output }}"}
        """,
        tools,
    ) == ["3:5: dependency cycle: a -> b -> a (each step needs the next)"]


def test_three_step_cycle_prints_the_whole_loop(tmp_path: Path, tools: ToolRegistry) -> None:
    # Each arrow reads "needs": a needs c, c needs b, b needs a.
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            needs: c
          - id: b
            tool: test.echo
            needs: a
          - id: c
            tool: test.echo
            needs: b
        """,
        tools,
    ) == ["3:5: dependency cycle: a -> c -> b -> a (each step needs the next)"]


def test_two_independent_cycles_are_both_reported(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            needs: b
          - id: b
            tool: test.echo
            needs: a
          - id: c
            tool: test.echo
            needs: d
          - id: d
            tool: test.echo
            needs: c
        """,
        tools,
    ) == [
        "3:5: dependency cycle: a -> b -> a (each step needs the next)",
        "9:5: dependency cycle: c -> d -> c (each step needs the next)",
    ]


def test_a_cycle_found_after_a_three_step_cycle_is_also_reported(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            needs: c
          - id: b
            tool: test.echo
            needs: a
          - id: c
            tool: test.echo
            needs: b
          - id: d
            tool: test.echo
            needs: e
          - id: e
            tool: test.echo
            needs: d
        """,
        tools,
    ) == [
        "3:5: dependency cycle: a -> c -> b -> a (each step needs the next)",
        "12:5: dependency cycle: d -> e -> d (each step needs the next)",
    ]


# --------------------------------------------------------------------------- tools and args


def test_unknown_tool_suggests_the_closest_installed_one(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: notify.lgo
            args: {message: hi}
        """,
        tools,
    ) == [
        "4:11: step 'a': unknown tool 'notify.lgo' (did you mean 'notify.log'?); "
        "`dagentic tools` lists the installed ones",
    ]


def test_unknown_tool_argument_is_reported_at_its_key(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: notify.log
            args: {message: hi, levle: info}
        """,
        tools,
    ) == [
        "5:25: step 'a': tool 'notify.log' has no argument 'levle' (did you mean 'level'?); "
        "it takes message, level, data",
    ]


def test_missing_required_tool_argument_is_reported_at_the_args(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: notify.log
            args: {level: warning}
        """,
        tools,
    ) == ["5:11: step 'a': tool 'notify.log' needs argument 'message'"]


def test_missing_required_tool_argument_without_args_is_reported_at_the_step(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: notify.log
        """,
        tools,
    ) == ["3:5: step 'a': tool 'notify.log' needs argument 'message'"]


def test_literal_argument_that_cannot_fit_the_schema_is_rejected(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: notify.log
            args: {message: hi, level: loud}
          - id: b
            tool: test.sleep
            args: {seconds: soon}
        """,
        tools,
    ) == [
        "5:32: step 'a': argument 'level' of tool 'notify.log': Input should be 'info', "
        "'warning' or 'error' (got 'loud')",
        "8:21: step 'b': argument 'seconds' of tool 'test.sleep': Input should be a valid "
        "number, unable to parse string as a number (got 'soon')",
    ]


def test_argument_holding_an_expression_is_checked_at_run_time_not_before(
    tools: ToolRegistry,
) -> None:
    compiled = compile_plan(
        """\
name: x
inputs: {pause: {type: string, default: "0.01"}}
steps:
  - id: a
    tool: test.sleep
    args: {seconds: "${{ inputs.pause }}"}
""",
        tools,
    )
    assert list(compiled.steps) == ["a"]


# --------------------------------------------------------------------------- expressions


def test_expression_never_closed_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: "total ${{ 1 + 2"}
        """,
        tools,
    ) == ["5:19: step 'a': args.value: '${{' at character 7 is never closed with '}}'"]


def test_expression_syntax_error_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args:
              value: "${{ 1 + }}"
        """,
        tools,
    ) == ["6:14: step 'a': args.value: invalid expression '1 +': invalid syntax"]


def test_lambda_in_an_expression_is_not_allowed(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: "${{ lambda x: 1 }}"}
        """,
        tools,
    ) == ["5:19: step 'a': args.value: a lambda is not allowed in expression 'lambda x: 1'"]


def test_dunder_access_in_an_expression_is_not_allowed(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
          - id: b
            tool: test.echo
            args: {value: "${{ steps.a.output.__class__ }}"}
        """,
        tools,
    ) == [
        "7:19: step 'b': args.value: '__class__': names starting with '_' are not allowed "
        "in expression 'steps.a.output.__class__'",
    ]


def test_process_environment_is_not_an_expression_name(tmp_path: Path, tools: ToolRegistry) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
            args: {value: "${{ env.HOME }}"}
        """,
        tools,
    ) == [
        "5:19: step 'a': args.value: unknown name 'env' (use inputs, steps or item) in "
        "expression 'env.HOME'",
    ]


def test_when_with_text_around_the_expression_is_rejected_naming_the_step(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    assert problems_of(
        tmp_path,
        """\
        name: x
        steps:
          - id: a
            tool: test.echo
          - id: b
            tool: test.echo
            when: "only if ${{ steps.a.output }}"
        """,
        tools,
    ) == ["7:11: step 'b': 'when' must be exactly one ${{ }} expression, not text around one"]


# --------------------------------------------------------------------------- checks


def test_check_criteria_without_a_judge_is_rejected(tmp_path: Path, tools: ToolRegistry) -> None:
    text = """\
        name: x
        steps:
          - id: a
            tool: test.echo
          - id: verify
            check:
              assert: "${{ steps.a.status == 'succeeded' }}"
              criteria: The output is polite.
        """
    assert problems_of(tmp_path, text, tools) == [
        "8:17: step 'verify': check.criteria needs a judge model, and this run has none; "
        "run it through an agent with a model, or use only 'assert'",
    ]
    compiled = load_plan(write_plan(tmp_path, text, "judged.yaml"), tools, judge=True)
    assert compiled.steps["verify"].deps == ("a",)


# --------------------------------------------------------------------------- compile_plan


def test_compile_plan_on_a_plan_object_reports_problems_without_positions(
    tools: ToolRegistry,
) -> None:
    plan = Plan(
        name="model-made",
        steps=[
            Step(id="fetch", tool="test.ecko", needs=["report"]),
            Step(id="report", tool="notify.log", args={"message": "${{ steps.fetch.output }}"}),
        ],
    )
    with pytest.raises(PlanError) as info:
        compile_plan(plan, tools)
    problems = info.value.problems
    assert [(p.file, p.line, p.column) for p in problems] == [(None, None, None)] * 2
    assert [str(p) for p in problems] == [
        "step 'fetch': unknown tool 'test.ecko' (did you mean 'test.echo'?); "
        "`dagentic tools` lists the installed ones",
        "dependency cycle: fetch -> report -> fetch (each step needs the next)",
    ]


def test_compile_plan_on_a_plan_object_names_the_step_of_a_bad_when(tools: ToolRegistry) -> None:
    # Without a file there is no line, so the message alone must say which step is wrong.
    plan = Plan(
        name="model-made",
        steps=[
            Step(id="a", tool="test.echo"),
            Step(id="b", tool="test.echo", when="only if ${{ steps.a.output }}"),
        ],
    )
    with pytest.raises(PlanError) as info:
        compile_plan(plan, tools)
    assert [str(p) for p in info.value.problems] == [
        "step 'b': 'when' must be exactly one ${{ }} expression, not text around one"
    ]


def test_compile_plan_on_a_valid_plan_object_orders_steps_by_dependency(
    tools: ToolRegistry,
) -> None:
    plan = Plan(
        name="ok",
        steps=[
            Step(id="report", tool="test.echo", args={"value": "${{ steps.fetch.output }}"}),
            Step(id="fetch", tool="test.echo", args={"value": 1}),
            Step(id="verify", check=Check(assert_="${{ steps.report.output == 1 }}")),
        ],
    )
    compiled = compile_plan(plan, tools)
    assert compiled.plan is plan
    assert compiled.order == ["fetch", "report", "verify"]
    assert compiled.steps["report"].deps == ("fetch",)


def test_compile_plan_on_yaml_text_reports_positions_under_the_given_name(
    tools: ToolRegistry,
) -> None:
    text = "name: x\nsteps:\n  - id: a\n    tool: test.ecko\n"
    message = (
        "step 'a': unknown tool 'test.ecko' (did you mean 'test.echo'?); "
        "`dagentic tools` lists the installed ones"
    )
    with pytest.raises(PlanError) as info:
        compile_plan(text, tools, name="inline.yaml")
    assert [str(p) for p in info.value.problems] == [f"inline.yaml:4:11: {message}"]
    with pytest.raises(PlanError) as info:
        compile_plan(text, tools)
    assert [str(p) for p in info.value.problems] == [f"<plan>:4:11: {message}"]


def test_compile_plan_on_valid_yaml_text_returns_the_plan(tools: ToolRegistry) -> None:
    compiled = compile_plan("name: x\nsteps:\n  - id: a\n    tool: test.echo\n", tools)
    assert compiled.plan == Plan(name="x", steps=[Step(id="a", tool="test.echo")])


# --------------------------------------------------------------------------- inputs


@pytest.fixture
def inputs_plan() -> Plan:
    return Plan(
        name="inputs",
        inputs={
            "limit": InputSpec(type="integer", default=5),
            "names": InputSpec(type="array", default=[]),
            "topic": InputSpec(required=True),
        },
        steps=[Step(id="a", tool="test.echo")],
    )


def test_inputs_from_a_command_line_are_converted_to_their_declared_types(
    inputs_plan: Plan,
) -> None:
    assert resolve_inputs(
        inputs_plan, {"topic": "news", "limit": "7", "names": '["Ada", "Grace"]'}
    ) == {"limit": 7, "names": ["Ada", "Grace"], "topic": "news"}
    assert resolve_inputs(inputs_plan, {"topic": "news"}) == {
        "limit": 5,
        "names": [],
        "topic": "news",
    }


def test_unknown_input_lists_the_declared_ones(inputs_plan: Plan) -> None:
    with pytest.raises(PlanError) as info:
        resolve_inputs(inputs_plan, {"topic": "news", "limt": "3"})
    assert [str(p) for p in info.value.problems] == [
        "unknown input 'limt' (plan 'inputs' declares: limit, names, topic)"
    ]


def test_required_input_that_is_missing_is_rejected(inputs_plan: Plan) -> None:
    with pytest.raises(PlanError) as info:
        resolve_inputs(inputs_plan, {})
    assert [str(p) for p in info.value.problems] == [
        "input 'topic' is required (give it with -i topic=VALUE)"
    ]


def test_input_of_the_wrong_type_is_rejected(inputs_plan: Plan) -> None:
    with pytest.raises(PlanError) as info:
        resolve_inputs(inputs_plan, {"topic": "news", "limit": "abc"})
    assert [str(p) for p in info.value.problems] == [
        "input 'limit' must be integer, got 'abc': Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_array_input_given_as_text_that_is_not_a_json_array_is_rejected(inputs_plan: Plan) -> None:
    with pytest.raises(PlanError) as info:
        resolve_inputs(inputs_plan, {"topic": "news", "names": '{"Ada": 1}'})
    assert [str(p) for p in info.value.problems] == [
        "input 'names' must be array, got '{\"Ada\": 1}': Input should be a valid list"
    ]
    with pytest.raises(PlanError) as info:
        resolve_inputs(inputs_plan, {"topic": "news", "names": "Ada,Grace"})
    assert [str(p) for p in info.value.problems] == [
        "input 'names' must be array, given as JSON, e.g. -i names='[\"a\", \"b\"]'; "
        "got 'Ada,Grace'"
    ]


def test_every_bad_input_is_reported_at_once(inputs_plan: Plan) -> None:
    with pytest.raises(PlanError) as info:
        resolve_inputs(inputs_plan, {"limt": "3", "limit": "many"})
    assert [str(p) for p in info.value.problems] == [
        "unknown input 'limt' (plan 'inputs' declares: limit, names, topic)",
        "input 'limit' must be integer, got 'many': Input should be a valid integer, "
        "unable to parse string as an integer",
        "input 'topic' is required (give it with -i topic=VALUE)",
    ]


# --------------------------------------------------------------------------- nothing runs


@pytest.fixture
def recorder() -> tuple[Tool, list[Any]]:
    """A tool that records every call, and the list it records into."""
    calls: list[Any] = []

    @tool(name="record.call", side_effects="write")
    async def record_call(value: Any = None) -> Any:
        """Record that it was called.

        Args:
            value: Anything JSON.
        """
        calls.append(value)
        return value

    return record_call, calls


VALID_STEPS = """\
name: records
steps:
  - id: first
    tool: record.call
    args: {value: 1}
  - id: second
    tool: record.call
    args: {value: "${{ steps.first.output }}"}
"""


@pytest.mark.anyio
async def test_valid_plan_calls_the_recording_tool(
    tools: ToolRegistry, settings: Settings, recorder: tuple[Tool, list[Any]]
) -> None:
    # The control for the tests below: this plan does call the tool.
    record_call, calls = recorder
    tools.add(record_call)
    result = await Executor(tools, settings=settings).run(VALID_STEPS)
    assert result.succeeded
    assert calls == [1, 1]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("bad_step", "problem"),
    [
        (
            "  - id: third\n    tool: record.cal\n",
            "10:11: step 'third': unknown tool 'record.cal' (did you mean 'record.call'?); "
            "`dagentic tools` lists the installed ones",
        ),
        (
            "  - id: third\n    tool: record.call\n    needs: third\n",
            "11:12: step 'third' needs itself",
        ),
        (
            "  - id: third\n    tool: notify.log\n    args: {message: hi, level: loud}\n",
            "11:32: step 'third': argument 'level' of tool 'notify.log': Input should be 'info', "
            "'warning' or 'error' (got 'loud')",
        ),
    ],
    ids=["unknown-tool", "self-need", "bad-literal"],
)
async def test_nothing_runs_when_validation_fails(
    tools: ToolRegistry,
    settings: Settings,
    recorder: tuple[Tool, list[Any]],
    tmp_path: Path,
    bad_step: str,
    problem: str,
) -> None:
    record_call, calls = recorder
    tools.add(record_call)
    path = write_plan(tmp_path, VALID_STEPS + bad_step)
    with pytest.raises(PlanError) as info:
        await Executor(tools, settings=settings).run(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:{problem}"]
    assert calls == []


@pytest.mark.anyio
async def test_nothing_runs_when_inputs_are_invalid(
    tools: ToolRegistry, settings: Settings, recorder: tuple[Tool, list[Any]]
) -> None:
    record_call, calls = recorder
    tools.add(record_call)
    plan = VALID_STEPS.replace("steps:\n", "inputs:\n  n: {type: integer}\nsteps:\n", 1)
    with pytest.raises(PlanError) as info:
        await Executor(tools, settings=settings).run(plan, {"n": "abc"})
    assert [p.message for p in info.value.problems] == [
        "input 'n' must be integer, got 'abc': Input should be a valid integer, unable to "
        "parse string as an integer"
    ]
    assert calls == []
