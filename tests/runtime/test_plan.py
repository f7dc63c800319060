"""The plan model: durations, shorthands, aliases, YAML round-trips and the JSON schema file."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagentic import Check, FailureMode, InputSpec, Plan, Retry, Step, ToolRegistry, compile_plan
from dagentic.plan import parse_duration, plan_json_schema
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 10 ", 10.0),
        ("10", 10.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_duration_is_read_as_seconds(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 days", "", "1.5.2s", "-3s"])
def test_duration_text_that_is_not_a_duration_is_rejected(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == (
        f"{value!r} is not a duration; use seconds (30) or a string "
        "such as '500ms', '30s', '2m', '1h'"
    )


@pytest.mark.parametrize("value", [0, -1, "0s", "0ms"])
def test_duration_must_be_positive(value: str | int) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == "a duration must be greater than zero"


def test_boolean_is_not_a_duration() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(True)
    assert str(info.value) == "expected a duration such as 30, '30s', '500ms' or '2m'"


def test_step_timeout_and_retry_backoff_accept_durations() -> None:
    step = Step.model_validate(
        {
            "id": "a",
            "tool": "x.y",
            "timeout": "500ms",
            "retry": {"attempts": 2, "backoff": "2m", "max_backoff": "1h"},
        }
    )
    assert step.timeout == 0.5
    assert step.retry == Retry(attempts=2, backoff=120.0, max_backoff=3600.0)


def test_step_with_an_invalid_timeout_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Step.model_validate({"id": "a", "tool": "x.y", "timeout": "soon"})
    [error] = info.value.errors(include_url=False)
    assert error["loc"] == ("timeout",)
    assert error["msg"] == (
        "Value error, 'soon' is not a duration; use seconds (30) or a "
        "string such as '500ms', '30s', '2m', '1h'"
    )


# --------------------------------------------------------------------------- shorthands


def test_retry_number_is_shorthand_for_attempts() -> None:
    step = Step.model_validate({"id": "a", "tool": "x.y", "retry": 5})
    assert step.retry == Retry(attempts=5)
    assert step.retry.backoff == 0.5
    assert step.retry.on == [FailureMode.TOOL_ERROR, FailureMode.TIMEOUT]


@pytest.mark.parametrize("retry", [0, True])
def test_retry_shorthand_must_be_a_positive_attempt_count(retry: int) -> None:
    with pytest.raises(ValidationError):
        Step.model_validate({"id": "a", "tool": "x.y", "retry": retry})


def test_needs_given_as_one_string_is_a_list_of_one() -> None:
    assert Step.model_validate({"id": "b", "tool": "x.y", "needs": "a"}).needs == ["a"]
    assert Step(id="b", tool="x.y", needs="a").needs == ["a"]  # type: ignore[arg-type]


def test_check_reads_assert_from_its_yaml_name() -> None:
    check = Check.model_validate({"assert": "${{ true }}", "on_fail": "continue"})
    assert check.assert_ == "${{ true }}"
    assert check == Check(assert_="${{ true }}", on_fail="continue")
    assert check.model_dump(by_alias=True, exclude_defaults=True) == {
        "assert": "${{ true }}",
        "on_fail": "continue",
    }


def test_check_needs_an_assert_or_criteria() -> None:
    with pytest.raises(ValidationError) as info:
        Check.model_validate({"on_fail": "abort"})
    assert info.value.errors(include_url=False)[0]["msg"] == (
        "Value error, a check needs 'assert', 'criteria' or both"
    )


def test_check_step_takes_no_args() -> None:
    with pytest.raises(ValidationError) as info:
        Step.model_validate({"id": "v", "check": {"assert": "${{ true }}"}, "args": {"x": 1}})
    assert info.value.errors(include_url=False)[0]["msg"] == (
        "Value error, check step 'v' takes no 'args' or 'foreach'"
    )


def test_max_parallel_needs_foreach() -> None:
    with pytest.raises(ValidationError) as info:
        Step.model_validate({"id": "a", "tool": "x.y", "max_parallel": 2})
    assert info.value.errors(include_url=False)[0]["msg"] == (
        "Value error, step 'a' sets 'max_parallel' but has no 'foreach'"
    )


# --------------------------------------------------------------------------- YAML


def test_plan_to_yaml_round_trips_through_compile_plan(tools: ToolRegistry) -> None:
    plan = Plan(
        name="round-trip",
        goal="Keep every field: ünïcode, quotes ' \" and a literal ${{ expression }}",
        description="line one\nline two",
        inputs={
            "names": InputSpec(type="array", default=["Ada", "Grace"], description="who"),
            "n": InputSpec(type="integer", required=True),
        },
        steps=[
            Step(
                id="greet",
                tool="notify.log",
                foreach="${{ inputs.names }}",
                max_parallel=2,
                timeout="500ms",
                retry=5,  # type: ignore[arg-type]
                args={"message": "Hello, ${{ item }}!\nsecond line", "level": "warning"},
            ),
            Step(
                id="pause",
                tool="test.sleep",
                needs=["greet"],
                args={"seconds": 0.01, "value": {"a": [1, None, True, 2.5]}},
                retry=Retry(
                    attempts=2,
                    backoff="2m",  # type: ignore[arg-type]
                    on=[FailureMode.TIMEOUT],
                ),
            ),
            Step(
                id="alert",
                tool="notify.log",
                when="${{ inputs.n > 1 }}",
                approval="required",
                run_if_skipped=True,
                allow_untrusted=True,
                args={"message": "n=${{ inputs.n }}"},
            ),
            Step(
                id="verify",
                description="all greeted",
                check=Check(assert_="${{ len(steps.greet.output) == 2 }}", on_fail="continue"),
            ),
        ],
        outputs={"first": "${{ steps.greet.output[0] }}", "literal": [1, "two", None]},
    )
    text = plan.to_yaml()
    assert text.startswith("version: 1\nname: round-trip\n")
    assert "assert: ${{ len(steps.greet.output) == 2 }}" in text  # the alias, not assert_
    assert compile_plan(text, tools).plan == plan


def test_minimal_plan_to_yaml_holds_only_what_was_set() -> None:
    plan = Plan(name="tiny", steps=[Step(id="a", tool="notify.log", args={"message": "hi"})])
    assert plan.to_yaml() == (
        "version: 1\nname: tiny\nsteps:\n- id: a\n  tool: notify.log\n  args:\n    message: hi\n"
    )


# --------------------------------------------------------------------------- JSON schema


def test_plan_schema_file_is_fresh() -> None:
    path = ROOT / "plans" / "plan.schema.json"
    assert path.read_text(encoding="utf-8") == plan_json_schema(), (
        "plans/plan.schema.json is stale; regenerate it with "
        "`dagentic schema -o plans/plan.schema.json`"
    )


def test_plan_schema_names_assert_by_its_yaml_name() -> None:
    import json

    schema = json.loads(plan_json_schema())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://dagentic.dev/plan.schema.json"
    assert set(schema["required"]) == {"name", "steps"}
    check = schema["$defs"]["Check"]["properties"]
    assert "assert" in check
    assert "assert_" not in check
