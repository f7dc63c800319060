"""The plan model: the one shape shared by YAML plan files, Python code and model planners.

``Plan.model_json_schema()`` is what ``plans/plan.schema.json`` holds and what a model
planner is asked to produce. Structural rules live here; rules that need the whole plan or
the tool registry (references, cycles, tool arguments) live in :mod:`dagentic.graph`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .bounds import located, plan_data_problem
from .errors import FailureMode
from .resources import resource_problems

__all__ = ["Check", "InputSpec", "Plan", "Retry", "Step", "parse_duration", "plan_json_schema"]

STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

_STRICT = ConfigDict(extra="forbid", populate_by_name=True)
MAX_PLAN_REF_CHARS = 500  # characters of a step's `plan:` (a name or a path)


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '500ms' or '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration; use seconds (30) or a string such as "
                "'500ms', '30s', '2m', '1h'"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


Duration = Annotated[
    float,
    Field(description="Seconds, or a string such as '500ms', '30s', '2m', '1h'."),
]


class InputSpec(BaseModel):
    """A plan input, given on the command line (``-i key=value``) or by the caller."""

    model_config = _STRICT

    type: Literal["string", "integer", "number", "boolean", "array", "object"] = "string"
    description: str | None = None
    default: JsonValue = None
    required: bool = False
    enum: list[JsonValue] | None = Field(
        None,
        min_length=1,
        description="The values the input may take (a router model is offered only these).",
    )

    @model_validator(mode="after")
    def _default_allowed(self) -> InputSpec:
        if self.enum is not None and self.default is not None and self.default not in self.enum:
            raise ValueError(f"the default {self.default!r} is not one of its enum values")
        return self


class Retry(BaseModel):
    """Retry policy of a step: exponential backoff with equal jitter (half fixed,
    half random)."""

    model_config = _STRICT

    attempts: int = Field(3, ge=1, le=100, description="Total attempts, the first included.")
    backoff: Duration = Field(0.5, description="Delay before the second attempt (seconds).")
    max_backoff: Duration = Field(30.0, description="Upper bound of any one delay (seconds).")
    on: list[FailureMode] = Field(
        default_factory=lambda: [FailureMode.TOOL_ERROR, FailureMode.TIMEOUT],
        description="Failure modes worth another attempt. invalid_args, invalid_tool and "
        "policy_blocked are never retried.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `retry: 3` means three attempts with the default backoff.
        if isinstance(data, int) and not isinstance(data, bool):
            return {"attempts": data}
        return data

    @field_validator("backoff", "max_backoff", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Check(BaseModel):
    """A reflection checkpoint: an exact assertion and/or criteria judged by a model."""

    model_config = _STRICT

    assert_: str | None = Field(
        None,
        alias="assert",
        description="An expression that must be true, e.g. "
        "'${{ len(steps.news.output.results) > 0 }}'.",
    )
    criteria: str | None = Field(
        None, description="What a judge model must confirm about the results, in prose."
    )
    on_fail: Literal["abort", "retry", "replan", "continue"] = Field(
        "abort",
        description="abort: fail the run; retry: re-run the steps this check reads and check "
        "again; replan: fail the step and ask the planner for a new plan; continue: record "
        "the failure (output.passed = false) and go on.",
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> Check:
        if self.assert_ is None and self.criteria is None:
            raise ValueError("a check needs 'assert', 'criteria' or both")
        return self


class Step(BaseModel):
    """One node of the plan: a tool call, another plan run as a step (``plan``, a
    sub-plan), or a reflection checkpoint (``check``)."""

    model_config = _STRICT

    id: str = Field(
        pattern=STEP_ID_PATTERN,
        description="Unique name; expressions read its result as steps.<id>.output.",
    )
    description: str | None = None
    tool: str | None = Field(None, description="Tool name, namespace.verb, e.g. sql.query.")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Tool arguments; values may hold ${{ expressions }}.",
    )
    plan: str | None = Field(
        None,
        max_length=MAX_PLAN_REF_CHARS,
        description="Another plan to run as this step (a sub-plan), instead of a tool: a "
        "plan name from the plan folders (e.g. revenue, for plans/revenue.yaml) or a path "
        "relative to this plan file. Its outputs are this step's output.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="The sub-plan's inputs (with `plan`); values may hold ${{ expressions }}.",
    )
    needs: list[str] = Field(
        default_factory=list,
        description="Steps that must finish first, besides those its expressions reference.",
    )
    when: str | bool | None = Field(
        None, description="Run only if this expression is true; otherwise the step is skipped."
    )
    foreach: str | list[JsonValue] | None = Field(
        None, description="Run the tool once per item of this list; `item` is the element."
    )
    max_parallel: int | None = Field(
        None, ge=1, description="How many foreach items run at once (default from settings)."
    )
    timeout: Duration | None = Field(None, description="Deadline of each attempt.")
    retry: Retry | None = None
    check: Check | None = None
    approval: Literal["required", "none"] = Field(
        "none", description="required: a human must approve the resolved call before it runs."
    )
    run_if_skipped: bool = Field(
        False, description="Run even if a step it needs was skipped by its `when`."
    )
    allow_untrusted: bool = Field(
        False,
        description="Let untrusted data (e.g. web results) flow into this step's write tool.",
    )
    allow_egress: bool = Field(
        False,
        description="Let step outputs leave this machine through this step's tool: untrusted "
        "data in any argument that is sent out, or any step's output in one that says where "
        "data goes (a URL built from an expression).",
    )
    resources: dict[str, float] | None = Field(
        None,
        description="On a cluster (execution.backend = ray): what one call needs of a node, "
        "over the tool's own: num_cpus, memory (bytes), custom resources such as docker: 1.",
    )

    cache: bool | Duration | None = Field(
        None,
        description="The tool-result cache, for a tool that declares itself cacheable: "
        "false never reuses an earlier call's output; a duration reuses one that young "
        "(default: the tool's own time to live).",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, bool) else parse_duration(value)

    @field_validator("needs", mode="before")
    @classmethod
    def _single_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tool_or_check(self) -> Step:
        kinds = [k for k in ("tool", "plan", "check") if getattr(self, k) is not None]
        if not kinds:
            raise ValueError(
                f"step {self.id!r} needs a 'tool' to call, a 'plan' to run or a 'check' to make"
            )
        if kinds == ["tool", "check"]:
            raise ValueError(
                f"step {self.id!r} has both 'tool' and 'check'; make the check its own step"
            )
        if len(kinds) > 1:
            raise ValueError(
                f"step {self.id!r} has both {kinds[0]!r} and {kinds[1]!r}; a step does one "
                "thing: make each its own step"
            )
        if self.plan is not None:
            _subplan_step(self)
        elif self.inputs:
            raise ValueError(f"step {self.id!r} has 'inputs' but no 'plan'; a tool takes 'args'")
        if self.check is not None and (self.args or self.foreach is not None):
            raise ValueError(f"check step {self.id!r} takes no 'args' or 'foreach'")
        if self.check is not None and self.resources:
            raise ValueError(f"check step {self.id!r} takes no 'resources': it calls no tool")
        for problem in resource_problems(self.resources or {}):
            raise ValueError(f"step {self.id!r}: {problem}")
        if self.max_parallel is not None and self.foreach is None:
            raise ValueError(f"step {self.id!r} sets 'max_parallel' but has no 'foreach'")
        return self


def _subplan_step(step: Step) -> None:
    """What a step that runs a sub-plan may not say: it calls no tool itself."""
    if step.args:
        raise ValueError(
            f"step {step.id!r} runs plan {step.plan!r} and takes no 'args'; give the "
            "sub-plan's values under 'inputs'"
        )
    for name in ("resources", "cache"):
        if getattr(step, name) is not None:
            raise ValueError(
                f"step {step.id!r} runs plan {step.plan!r} and takes no {name!r}: its own "
                "steps say it"
            )
    for name in ("allow_untrusted", "allow_egress"):
        if getattr(step, name):
            raise ValueError(
                f"step {step.id!r} runs plan {step.plan!r}: {name} has no effect here; set "
                "it on the sub-plan's step that needs it"
            )
    if not step.plan or not step.plan.strip() or "\x00" in step.plan:
        raise ValueError(f"step {step.id!r}: 'plan' must name a plan or a plan file")


class Plan(BaseModel):
    """A typed DAG of steps. The same model for plan files and model-written plans."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"$id": "https://dagentic.dev/plan.schema.json"},
    )

    version: Literal[1] = 1
    name: str = Field(min_length=1)
    goal: str | None = None
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(
        default_factory=dict, description="Named results; values may hold ${{ expressions }}."
    )

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any, info: ValidationInfo) -> Any:
        # A dict or a model's JSON reply is held to what a plan file is (see bounds.py),
        # unless the caller checked it already.
        if info.context and info.context.get("bounded"):
            return data
        too_big = plan_data_problem(data)
        if too_big is not None:
            raise ValueError(located(*too_big))
        return data

    def to_yaml(self) -> str:
        """The plan as a YAML plan file (round-trips through :func:`dagentic.load_plan`)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        data = {"version": self.version, **data}
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """Double-quotes strings holding characters a YAML reader takes for line breaks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def plan_json_schema() -> str:
    """The text of ``plans/plan.schema.json``: the JSON schema of :class:`Plan`."""
    schema = Plan.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
