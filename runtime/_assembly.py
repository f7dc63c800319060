"""A run's result, assembled from its steps' bookkeeping.

:func:`step_result` is built as each step finishes (while others still wait), and
:func:`run_result` once at the end: the run's status and error (its stop reason, its
deadline, or the first failed step), the plan's outputs and the usage.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import EvaluationError, FailureMode
from .result import ErrorInfo, RunResult, RunStatus, StepResult, StepStatus, Usage

if TYPE_CHECKING:
    from ._active_run import ActiveRun, StepState

_FAILED, _SKIPPED, _CANCELLED, _WAITING = (
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.CANCELLED,
    StepStatus.WAITING,
)


def step_result(run: ActiveRun, state: StepState) -> StepResult:
    """``state`` as a :class:`StepResult`, its times on the run's clock."""
    started_at = run.started_at
    begun = ended = duration = None
    if state.started is not None:
        begun = started_at + timedelta(seconds=state.started - run.t0)
    if state.finished is not None:
        ended = started_at + timedelta(seconds=state.finished - run.t0)
        if state.started is not None:
            duration = state.finished - state.started
    return StepResult(
        id=state.spec.id,
        tool=state.spec.called,
        status=state.status,
        output=state.output,
        error=state.error,
        attempts=state.attempts,
        started_at=begun,
        finished_at=ended,
        duration=duration,
        provenance=state.provenance,
        cache=state.cache,
    )


def run_result(run: ActiveRun) -> RunResult:
    """The :class:`RunResult` of ``run``, every step ended."""
    wall = time.perf_counter() - run.t0
    steps: dict[str, StepResult] = {}
    calls = ran = hits = 0
    for sid, state in run.states.items():
        calls += state.attempts if state.spec.tool else 0
        hits += state.cache == "hit"
        ran += (
            state.started is not None
            and state.status not in (_SKIPPED, _WAITING)
            and sid not in run.reuse  # done by an earlier run (a replan, a resume)
        )
        steps[sid] = state.result or step_result(run, state)
    failed = next((s for s in run.states.values() if s.status is _FAILED), None)
    waiting = [sid for sid, s in run.states.items() if s.status is StepStatus.WAITING]
    if run.stop_status is _CANCELLED:
        status, error = RunStatus.CANCELLED, run.stop_error
    elif run.stop_error is not None and run.stop_error.failure_mode is FailureMode.TIMEOUT:
        status, error = RunStatus.FAILED, run.stop_error
    elif failed is not None:
        assert failed.error is not None
        status = RunStatus.FAILED
        message = failed.error.message
        if not message.startswith(f"step '{failed.spec.id}'"):
            message = f"step '{failed.spec.id}' failed: {message}"
        error = failed.error.model_copy(update={"message": message})
    elif waiting:
        status, error = RunStatus.WAITING, None
    else:
        status, error = RunStatus.SUCCEEDED, None
    outputs: dict[str, Any] = {}  # a waiting run's come when it is resumed
    output_error = None
    if status is not RunStatus.WAITING:
        outputs, output_error = _outputs(run, strict=status is RunStatus.SUCCEEDED)
    if output_error is not None:
        status, error = RunStatus.FAILED, output_error
    return RunResult(
        run_id=run.run_id,
        plan=run.plan.name,
        goal=run.plan.plan.goal,
        status=status,
        steps=steps,
        outputs=outputs,
        error=error,
        usage=Usage(
            steps=ran + run.sub_usage[0],
            tool_calls=calls + run.sub_usage[1],
            wall_time=wall,
            cache_hits=hits,
        ),
        started_at=run.started_at,
        finished_at=run.started_at + timedelta(seconds=wall),
        replan_requested=run.replan_requested,
        waiting=waiting,
    )


def _outputs(run: ActiveRun, *, strict: bool) -> tuple[dict[str, Any], ErrorInfo | None]:
    """The plan's outputs; with ``strict``, the first that cannot be evaluated is an error."""
    outputs: dict[str, Any] = {}
    for key, resolve in run.plan.output_resolvers():  # one allowance for them all
        try:
            outputs[key] = resolve(run.scope)
        except EvaluationError as exc:
            outputs[key] = None
            if strict:
                return outputs, ErrorInfo(
                    failure_mode=FailureMode.INVALID_ARGS,
                    message=f"output '{key}': {exc.message}",
                    type="EvaluationError",
                )
    return outputs, None
