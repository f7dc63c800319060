"""Reflection checkpoints: ``check:`` steps between the steps of a run.

A check passes when its ``assert`` expression is true and the judge finds its ``criteria``
met by the outputs of the steps it reads. When it fails, ``on_fail`` decides: ``continue``
(the check succeeds with the reasons as its output), ``retry`` (the steps it reads run
again, then the check), ``replan`` (the run asks its agent for a new plan) or ``abort``
(the whole run stops).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .errors import CheckFailedError, EvaluationError, FailureMode
from .graph import CompiledStep
from .result import ErrorInfo, StepStatus

if TYPE_CHECKING:
    from ._active_run import ActiveRun, StepState

_PENDING, _SUCCEEDED, _FAILED = StepStatus.PENDING, StepStatus.SUCCEEDED, StepStatus.FAILED


async def run_check(run: ActiveRun, state: StepState) -> None:
    """Decide ``state``'s check step: its output, or :class:`CheckFailedError`."""
    spec = state.spec
    check = spec.step.check
    assert check is not None
    rounds = (spec.step.retry.attempts if spec.step.retry else 3) if check.on_fail == "retry" else 1
    for round_ in range(1, rounds + 1):
        state.attempts = round_
        reasons = await _check_once(run, spec)
        if not reasons:
            state.output = {"passed": True}
            state.status = _SUCCEEDED
            return
        if round_ < rounds:
            await _rerun(run, spec.deps)
    message = f"step '{spec.id}': check failed: " + "; ".join(reasons)
    if check.on_fail == "continue":
        state.output = {"passed": False, "reasons": reasons}
        state.status = _SUCCEEDED
        return
    if check.on_fail == "replan":
        run.replan_requested.append(spec.id)
    error = CheckFailedError(message, step=spec.id, on_fail=check.on_fail)
    if check.on_fail == "abort":
        run.stop(
            _FAILED,
            ErrorInfo(
                failure_mode=FailureMode.CANCELLED,
                message=f"cancelled: check '{spec.id}' failed with on_fail: abort",
            ),
        )
    raise error


async def _check_once(run: ActiveRun, spec: CompiledStep) -> list[str]:
    """Why the check fails now (nothing when it passes)."""
    check = spec.step.check
    assert check is not None
    reasons = []
    if spec.check_assert is not None:
        try:
            if not run.pipeline.evaluate(spec, "check.assert", spec.check_assert, run.scope):
                reasons.append(f"assert {spec.check_assert.source} is false")
        except EvaluationError as exc:
            reasons.append(exc.message)
    judge = run.executor.judge
    if check.criteria is not None and judge is not None:
        evidence = {dep: run.views[dep]["output"] for dep in spec.deps}
        verdict = await judge(check.criteria, evidence)
        if not verdict.passed:
            reasons.append(f"criteria not met: {verdict.reason or check.criteria}")
    return reasons


async def _rerun(run: ActiveRun, step_ids: tuple[str, ...]) -> None:
    """Run the steps a failed check reads once more (on_fail: retry)."""
    async with anyio.create_task_group() as group:
        for sid in step_ids:
            state = run.states[sid]
            if state.spec.tool is None and state.spec.subplan is None:
                continue
            state.status, state.output, state.error = _PENDING, None, None
            group.start_soon(_execute_and_publish, run, state)


async def _execute_and_publish(run: ActiveRun, state: StepState) -> None:
    await run.pipeline.execute(state)
    run.publish(state)
