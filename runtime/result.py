"""What a run returns: :class:`RunResult` with one :class:`StepResult` per step."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator
from pydantic_core import PydanticSerializationError

from .bounds import MAX_ERROR_SIZE, cut_value
from .errors import DagenticError, FailureMode, failure_mode_of
from .redact import redact_value

__all__ = [
    "ErrorInfo",
    "ModelCall",
    "Provenance",
    "RunResult",
    "RunStatus",
    "StepResult",
    "StepStatus",
    "Usage",
]


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # a step waits for a person's decision; `dagentic resume` goes on


class StepStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # for a person's decision (approval); the run waits, durably


class ErrorInfo(BaseModel):
    """An error, as data: its failure mode, message and exception type."""

    model_config = ConfigDict(frozen=True)

    failure_mode: FailureMode
    message: str
    type: str = "DagenticError"
    details: dict[str, Any] = Field(default_factory=dict)

    # No secret dagentic holds (an API key an endpoint echoed, say) stays in an error.
    _redact_message = field_validator("message", "details")(redact_value)
    _redact_output = field_serializer("message", "details")(redact_value)

    @field_validator("message")
    @classmethod
    def _cut_message(cls, message: str) -> str:
        """At most MAX_ERROR_SIZE characters (after redaction: no secret is cut in two),
        with a marker saying how many were cut: an error quoting a huge value stays small."""
        if len(message) <= MAX_ERROR_SIZE:
            return message
        return f"{message[:MAX_ERROR_SIZE]}<cut: {len(message) - MAX_ERROR_SIZE:,} more characters>"

    @field_validator("details")
    @classmethod
    def _cut_details(cls, details: dict[str, Any]) -> dict[str, Any]:
        cut: dict[str, Any] = cut_value(details, size=MAX_ERROR_SIZE)
        return cut

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        message = exc.message if isinstance(exc, DagenticError) else str(exc) or repr(exc)
        details = exc.fields if isinstance(exc, DagenticError) else {}
        return cls(
            failure_mode=failure_mode_of(exc),
            message=message,
            type=type(exc).__name__,
            details=details,
        )


class Provenance(BaseModel):
    """Where a step's output came from, and whether it may be trusted as instructions."""

    model_config = ConfigDict(frozen=True)

    trusted: bool = True
    source: str | None = Field(None, description="The tool that produced it, 'tool:<name>'.")
    untrusted_from: tuple[str, ...] = Field(
        default=(), description="Untrusted tools whose data flowed into it."
    )


class StepResult(BaseModel):
    id: str
    tool: str | None = None
    status: StepStatus = StepStatus.PENDING
    output: Any = None
    error: ErrorInfo | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = Field(None, description="Seconds from start to finish.")
    provenance: Provenance = Field(default_factory=Provenance)
    cache: Literal["hit", "miss", "store"] | None = Field(
        None,
        description="The tool-result cache: hit (the output came from it: the tool was not "
        "called), miss, or store (the output was kept); none when the call is not cacheable.",
    )


class Usage(BaseModel):
    steps: int = Field(
        0,
        description="Steps that ran in this run (not skipped, never started, waiting, or "
        "reused from an earlier run).",
    )
    tool_calls: int = Field(0, description="Tool invocations, every attempt and item included.")
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    wall_time: float = Field(0.0, description="Seconds from start to finish of the run.")
    cache_hits: int = Field(
        0,
        description="Model calls and tool steps answered from the cache (they are not counted "
        "as calls).",
    )


class ModelCall(BaseModel):
    """One model call of a run: what it was for, its usage, and how it ended."""

    purpose: str = Field(description="plan, repair, judge, critique, answer or verify.")
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    started_at: datetime
    duration: float = 0.0
    error: ErrorInfo | None = None
    replayed: bool = Field(
        False,
        description="The reply came from the journal of the run being resumed: no model "
        "call was made, nothing was spent.",
    )
    cache: Literal["hit", "miss", "store"] | None = Field(
        None,
        description="The response cache: hit (the reply came from it: no call was made, "
        "nothing was spent), miss, or store (the reply was kept); none when the call is not "
        "cacheable (a temperature above 0).",
    )
    fallback_from: str | None = Field(
        None, description="The model that failed before this one took the call over."
    )
    fallback_reason: str | None = Field(
        None, description="Why it failed: rate_limited, timeout, unavailable or error."
    )
    redacted: list[str] = Field(
        default_factory=list,
        description="What the outbound guardrails redacted from the prompt, by kind.",
    )


class RunResult(BaseModel):
    run_id: str
    plan: str
    goal: str | None = None
    status: RunStatus
    steps: dict[str, StepResult]
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    started_at: datetime
    finished_at: datetime
    replan_requested: list[str] = Field(
        default_factory=list,
        description="Check steps that failed with on_fail: replan; an agent replans on these.",
    )
    waiting: list[str] = Field(
        default_factory=list,
        description="Steps that wait for a person's decision (status waiting): `dagentic "
        "approvals` lists them, `dagentic approve` or `deny` decides, `dagentic resume` "
        "goes on.",
    )

    def __repr__(self) -> str:
        # Short on purpose: asyncio (3.11) may repr the result of the main task on exit.
        return (
            f"RunResult(run_id={self.run_id!r}, plan={self.plan!r}, "
            f"status={self.status.value!r}, steps={len(self.steps)})"
        )

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    def to_json(self, indent: int | None = 2) -> str:
        """The result as JSON text, whatever its values hold: a value too deep or too
        large to be written whole (a tool's output nested thousands of levels, a cycle) is
        written cut, with a marker where it was cut, and a value that is not JSON as its
        text. What ``dagentic run --json`` prints."""
        try:
            return self.model_dump_json(indent=indent)
        except (PydanticSerializationError, ValueError, RecursionError):
            pass
        steps = {
            sid: step.model_copy(update={"output": cut_value(step.output)})
            for sid, step in self.steps.items()
        }
        outputs = {key: cut_value(value) for key, value in self.outputs.items()}
        shown = self.model_copy(update={"outputs": outputs, "steps": steps})
        return shown.model_dump_json(indent=indent, fallback=str)

    def failures(self) -> list[StepResult]:
        """Steps that failed, in plan order."""
        return [s for s in self.steps.values() if s.status is StepStatus.FAILED]
