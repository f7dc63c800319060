"""Errors and the failure-mode taxonomy.

Every error dagentic raises derives from :class:`DagenticError` and also from the nearest
built-in exception, so ``except ValueError`` keeps working::

    DagenticError
    ├── PlanError (ValueError)                  plan_invalid  - a plan failed validation
    │   └── PlanningError                       plan_invalid, invalid_tool or invalid_args
    │                                                         - a planner found no valid plan
    ├── ExpressionError (ValueError)            plan_invalid  - a ${{ }} expression is malformed
    │   └── EvaluationError                     invalid_args  - it failed at run time
    ├── ToolDefinitionError (TypeError)         -             - a @tool function is ill-defined
    ├── PluginError (RuntimeError)              -             - a plugin could not be loaded
    ├── SettingsError (ValueError)              -             - a setting is unknown or invalid
    ├── JournalError (RuntimeError)             resource_limit - the run journal cannot be used
    ├── ToolNotFoundError (LookupError)         invalid_tool
    ├── InvalidArgsError (ValueError)           invalid_args
    ├── ToolError (RuntimeError)                tool_error    - raised by tools; `retryable`
    │   └── ModelError                          tool_error    - a model call failed
    ├── MissingCapabilityError (LookupError)    missing_capability - no tool can do it
    ├── StepTimeoutError (TimeoutError)         timeout
    ├── ResourceLimitError (RuntimeError)       resource_limit
    ├── PolicyBlockedError (PermissionError)    policy_blocked
    ├── CheckFailedError (AssertionError)       check_failed
    └── BudgetExceededError (RuntimeError)      budget_exceeded

Errors never log themselves; the executor records them on the step they belong to.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "BudgetExceededError",
    "CheckFailedError",
    "ClusterError",
    "DagenticError",
    "EvaluationError",
    "ExpressionError",
    "FailureMode",
    "InvalidArgsError",
    "JournalError",
    "MissingCapabilityError",
    "ModelError",
    "PlanError",
    "PlanningError",
    "PluginError",
    "PolicyBlockedError",
    "Problem",
    "ResourceLimitError",
    "SettingsError",
    "StepTimeoutError",
    "ToolDefinitionError",
    "ToolError",
    "ToolNotFoundError",
    "failure_mode_of",
]


class FailureMode(StrEnum):
    """The fixed taxonomy of what can go wrong in a run (docs: reference/results.md)."""

    PLAN_INVALID = "plan_invalid"
    INVALID_TOOL = "invalid_tool"
    INVALID_ARGS = "invalid_args"
    MISSING_CAPABILITY = "missing_capability"
    TOOL_ERROR = "tool_error"
    TIMEOUT = "timeout"
    RESOURCE_LIMIT = "resource_limit"
    POLICY_BLOCKED = "policy_blocked"
    UPSTREAM_FAILED = "upstream_failed"
    CHECK_FAILED = "check_failed"
    GOAL_NOT_MET = "goal_not_met"
    FALSE_SUCCESS = "false_success"
    BUDGET_EXCEEDED = "budget_exceeded"
    CANCELLED = "cancelled"


class DagenticError(Exception):
    """Root of every dagentic error. ``message`` is the whole, user-facing text."""

    failure_mode: FailureMode | None = None

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        if self.failure_mode is not None:
            data["failure_mode"] = self.failure_mode.value
        data.update(self.fields)
        return data


class Problem:
    """One validation problem, located in a file when the plan came from one.
    ``failure_mode`` classes it when that is more than ``plan_invalid``: ``invalid_tool``
    (an unknown tool) or ``invalid_args`` (arguments that do not fit a tool's schema)."""

    __slots__ = ("column", "failure_mode", "file", "line", "message")

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        failure_mode: FailureMode | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.failure_mode = failure_mode

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}" if self.file else self.message
        return f"{self.file or '<plan>'}:{self.line}:{self.column or 1}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
        }
        if self.failure_mode is not None:
            data["failure_mode"] = self.failure_mode.value
        return data


class PlanError(DagenticError, ValueError):
    """A plan failed validation. ``problems`` lists every problem found, in file order."""

    failure_mode = FailureMode.PLAN_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["problems"] = [p.to_dict() for p in self.problems]
        return data


class PlanningError(PlanError):
    """A planner found no valid plan within its repair attempts. ``failure_mode`` is the
    class of the last attempt's problems (``invalid_tool`` if one named an unknown tool,
    else ``invalid_args`` if arguments did not fit a tool's schema, else
    ``plan_invalid``); ``problems`` are that attempt's, ``attempts`` every rejected
    attempt's, in order."""

    def __init__(
        self,
        problems: list[Problem],
        *,
        failure_mode: FailureMode = FailureMode.PLAN_INVALID,
        attempts: list[list[Problem]] | None = None,
    ) -> None:
        super().__init__(problems)
        self.failure_mode = failure_mode
        self.attempts = attempts if attempts is not None else [problems]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["attempts"] = [[p.to_dict() for p in attempt] for attempt in self.attempts]
        return data


class ExpressionError(DagenticError, ValueError):
    """A ``${{ }}`` expression is malformed or uses something the language does not have."""

    failure_mode = FailureMode.PLAN_INVALID


class EvaluationError(ExpressionError):
    """An expression failed while the run was evaluating it (missing key, bad operand...):
    the step's arguments could not be resolved."""

    failure_mode = FailureMode.INVALID_ARGS


class ToolDefinitionError(DagenticError, TypeError):
    """A ``@tool`` function cannot become a tool. ``problems`` lists every reason."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"tool {name!r} is not a valid tool:\n{lines}", tool=name)


class PluginError(DagenticError, RuntimeError):
    """A plugin failed to load or registered something invalid."""


class SettingsError(DagenticError, ValueError):
    """Settings that cannot be used: an unknown section or setting, or an invalid value.
    ``problems`` lists each, naming the file or environment variable it came from."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems), problems=problems)


class JournalError(DagenticError, RuntimeError):
    """The durable run journal cannot be used: it cannot be written (a full disk, say; the
    run stops rather than go on without durability), a run is not in it, or another
    process holds the run."""

    failure_mode = FailureMode.RESOURCE_LIMIT


class ClusterError(DagenticError, ConnectionError):
    """The cluster tool calls should run on (``execution.backend = "ray"``) cannot be
    used: it cannot be reached, or Ray is not installed. The calls it stops fail with
    ``tool_error``."""

    failure_mode = FailureMode.TOOL_ERROR


class ToolNotFoundError(DagenticError, LookupError):
    failure_mode = FailureMode.INVALID_TOOL


class InvalidArgsError(DagenticError, ValueError):
    failure_mode = FailureMode.INVALID_ARGS


class ToolError(DagenticError, RuntimeError):
    """Raise from a tool to report a failure. ``retryable=True`` lets a step retry it."""

    failure_mode = FailureMode.TOOL_ERROR

    def __init__(self, message: str, *, retryable: bool = False, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retryable = retryable


class ModelError(ToolError):
    """A model call failed (the provider answered an error, or nothing usable)."""


class MissingCapabilityError(DagenticError, LookupError):
    """The planner says the goal needs a tool nobody provides."""

    failure_mode = FailureMode.MISSING_CAPABILITY


class StepTimeoutError(DagenticError, TimeoutError):
    failure_mode = FailureMode.TIMEOUT


class ResourceLimitError(DagenticError, RuntimeError):
    failure_mode = FailureMode.RESOURCE_LIMIT


class PolicyBlockedError(DagenticError, PermissionError):
    failure_mode = FailureMode.POLICY_BLOCKED


class CheckFailedError(DagenticError, AssertionError):
    failure_mode = FailureMode.CHECK_FAILED


class BudgetExceededError(DagenticError, RuntimeError):
    failure_mode = FailureMode.BUDGET_EXCEEDED


def failure_mode_of(exc: BaseException) -> FailureMode:
    """The failure mode an exception stands for: its own, or ``tool_error`` for foreign ones."""
    mode = getattr(exc, "failure_mode", None)
    if isinstance(mode, FailureMode):
        return mode
    if isinstance(exc, TimeoutError):
        return FailureMode.TIMEOUT
    if isinstance(exc, MemoryError):
        return FailureMode.RESOURCE_LIMIT
    return FailureMode.TOOL_ERROR
