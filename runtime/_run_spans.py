"""The spans of one run: the run's own, one per step, one per ``foreach`` item.

A step's span starts when the step does and ends when it is published, with its status,
attempts and failure mode; a step that never started gets an instant span. Retried
attempts are events on the step's span; arguments and outputs are recorded only with
``tracing.record_content``. The span tree is drawn in :mod:`dagentic.tracing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
from opentelemetry import trace

from .attributes import FAILURE_MODE, RUN_ID
from .errors import FailureMode, failure_mode_of
from .result import ErrorInfo, RunStatus, StepStatus
from .tracing import Tracing, fail_span

if TYPE_CHECKING:
    from ._active_run import ActiveRun, StepState

_SUCCEEDED, _CANCELLED = StepStatus.SUCCEEDED, StepStatus.CANCELLED


class RunSpans:
    """Starts and ends the spans of ``run`` through ``tracing``."""

    def __init__(
        self, run: ActiveRun, tracing: Tracing, attributes: Mapping[str, Any] | None = None
    ) -> None:
        self.run = run
        self.tracing = tracing
        self.attributes = dict(attributes or {})  # extra attributes of the run's span
        self.span: Any = None  # the run's, while it runs
        self.context: Any = None  # the context whose current span is the run's

    def start_run(self) -> Any:
        """Start the run's span; returns the token that files the trace under this run
        when it is the outermost dagentic run."""
        run = self.run
        self.span = span = self.tracing.tracer.start_span(
            f"run {run.plan.name}",
            attributes={
                RUN_ID: run.run_id,
                "dagentic.plan": run.plan.name,
                "dagentic.plan.steps": len(run.states),
                **self.attributes,
            },
        )
        self.context = trace.set_span_in_context(span)
        return self.tracing.enter_root(run.run_id, span)

    def end_run(self, status: RunStatus, error: ErrorInfo | None, root: Any) -> None:
        span = self.span
        if span is None:
            return
        self.span = None
        span.set_attribute("dagentic.status", status.value)
        if error is not None:
            fail_span(span, None, mode=error.failure_mode, message=error.message)
        span.end()
        self.tracing.ended(span)
        self.tracing.exit_root(root)

    def start_step(self, state: StepState, *, reused: bool = False) -> Any:
        spec = state.spec
        tool = spec.step.tool
        attributes: dict[str, Any] = {"dagentic.step.id": spec.id}
        if tool is not None:
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = tool
        elif spec.step.plan is not None:
            attributes["dagentic.subplan"] = spec.step.plan
        if state.waited_for is not None:  # what held it back: the critical path's links
            attributes["dagentic.step.waited_for"] = state.waited_for
        if reused:
            attributes["dagentic.step.reused"] = True
        return self.tracing.tracer.start_span(
            f"execute_tool {tool}"
            if tool is not None
            else (f"run_plan {spec.step.plan}" if spec.step.plan else f"check {spec.id}"),
            context=self.context,
            attributes=attributes,
        )

    def end_step(self, state: StepState) -> None:
        """End the step's span (a step skipped before it started gets an instant one)."""
        tracing, run = self.tracing, self.run
        span = state.span or self.start_step(state)
        state.span = None
        status = state.status.value
        span.set_attribute("dagentic.status", status)
        if state.attempts:
            span.set_attribute("dagentic.attempts", state.attempts)
        error = state.error
        if error is None and state.status is _CANCELLED:
            error = run.stop_error or (
                ErrorInfo(
                    failure_mode=FailureMode.TIMEOUT,
                    message=f"the run's deadline of {run.timeout}s passed",
                )
                if anyio.current_time() >= run.deadline
                else ErrorInfo(
                    failure_mode=FailureMode.CANCELLED,
                    message="the run ended before this step finished",
                )
            )
        if error is not None:
            fail_span(span, None, mode=error.failure_mode, message=error.message)
        elif tracing.record_content and state.status is _SUCCEEDED:
            span.set_attribute("gen_ai.tool.call.result", tracing.content(state.output))
        span.end()
        tracing.ended(span)

    def start_item(self, state: StepState, index: int) -> Any:
        """A span for one item of a foreach step, under the step's span."""
        tool = state.spec.step.tool
        if tool is None:  # a sub-plan step's item
            return self.tracing.tracer.start_span(
                f"run_plan {state.spec.step.plan}",
                attributes={
                    "dagentic.subplan": state.spec.step.plan or "",
                    "dagentic.step.id": state.spec.id,
                    "dagentic.item": index,
                },
            )
        return self.tracing.tracer.start_span(
            f"execute_tool {tool}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "dagentic.step.id": state.spec.id,
                "dagentic.item": index,
            },
        )

    def record_arguments(self, args: dict[str, Any]) -> None:
        """A tool call's arguments on the current span, with ``record_content``."""
        if self.tracing.record_content:
            trace.get_current_span().set_attribute(
                "gen_ai.tool.call.arguments", self.tracing.content(args)
            )

    def record_retry(self, exc: Exception, attempt: int) -> None:
        """An attempt that failed and will be retried, as an event on the current span."""
        trace.get_current_span().record_exception(
            exc,
            attributes={
                FAILURE_MODE: failure_mode_of(exc).value,
                "dagentic.attempt": attempt,
                "dagentic.retried": True,
            },
        )

    def record_failure(self, state: StepState, exc: Exception) -> None:
        """The exception that failed ``state``'s step, on its span."""
        if state.span is not None:
            assert state.error is not None
            state.span.record_exception(
                exc, attributes={FAILURE_MODE: state.error.failure_mode.value}
            )
