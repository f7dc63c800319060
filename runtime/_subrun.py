"""Running a sub-plan step: the plan a ``plan:`` step names runs as a child run of the
same executor, once per call of the step (once per ``foreach`` item).

The child shares the executor's backend, tools, their concurrency limits, approver,
judge, tracing and settings; its run span is a child of the step's span (of the item's, in
a ``foreach``), so ``dagentic trace`` draws it under the step. Its outputs are the step's
output, kept in the caller's output budget; its steps and tool calls count in the caller's
usage. What it is given and gives back keeps its provenance: an input built from
untrusted data is untrusted in the child (its write and egress steps need their own
``allow_untrusted``/``allow_egress``), an input built from a step's output counts as one
there (it cannot say where data goes without ``allow_egress``), and untrusted data of the
child's steps makes the step's output untrusted.

Per call: the inputs are resolved and checked against the plan's declared inputs
(``invalid_args`` when they do not fit), ``approval: required`` asks about the whole
sub-plan (as ``plan:NAME``, with its inputs), ``timeout`` is the child run's deadline (none
but the caller's own when not set), and ``retry`` runs the child again, from the start,
when it failed in a mode ``retry.on`` names (only if every tool it calls is idempotent or
uses its idempotency key). A failed child fails the step with the child's failure mode.

Durability: the child's steps are not in the journal on their own; the step is, as any
step. A caller resumed after its sub-plan step finished reuses the step's output; a step
that was running when the caller stopped runs its child again from the start, with the
same run id (so the same idempotency keys), and only after a person allows it if the child
calls a tool that may not run twice. A child's step cannot wait for an approval: set
``approval: required`` on the caller's step instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._inputs import resolve_inputs
from ._step_rules import backoff, retryable, tainted
from .errors import DagenticError, EvaluationError, FailureMode, InvalidArgsError, PlanError

if TYPE_CHECKING:
    from ._active_run import StepState
    from ._pipeline import StepPipeline

__all__ = ["SubPlanFailedError", "call_subplan"]


class SubPlanFailedError(DagenticError, RuntimeError):
    """A sub-plan's run failed; ``failure_mode`` is its run's."""

    def __init__(self, message: str, mode: FailureMode, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.failure_mode = mode


async def call_subplan(
    pipeline: StepPipeline,
    state: StepState,
    scope: Mapping[str, Any],
    item: tuple[int, int] | None = None,
) -> Any:
    """One run of ``state``'s sub-plan with its inputs resolved in ``scope``: approval,
    then attempts until one succeeds or its failure is not retried; its outputs, kept."""
    run, spec = pipeline.run, state.spec
    sub = spec.subplan
    assert sub is not None
    index = None if item is None else item[0]
    if not run.can_keep(index):
        raise run.over_budget(state, index)
    try:
        raw = spec.args(scope)
    except EvaluationError as exc:
        raise EvaluationError(f"step '{spec.id}': inputs: {exc.message}") from None
    try:
        values = resolve_inputs(sub.compiled.plan, raw)
    except PlanError as exc:
        raise InvalidArgsError(
            f"step '{spec.id}': plan '{sub.name}' rejected its inputs: "
            + "; ".join(p.message for p in exc.problems),
            plan=sub.name,
        ) from None
    input_taint = {
        key: pipeline.taint(spec.arg_sources.get(key, frozenset()))
        | run.tainted_inputs(spec.arg_inputs.get(key, frozenset()))
        for key in raw
    }
    from_steps = frozenset(
        key
        for key in raw
        if spec.arg_sources.get(key)
        or run.inputs_from_steps & spec.arg_inputs.get(key, frozenset())
    )
    rerun = (spec.id, index) in run.rerun_gates
    if spec.step.approval == "required" or rerun:
        await pipeline._approve(spec, sub.tool, values, item, rerun=rerun)
    retry = spec.step.retry
    attempts = retry.attempts if retry else 1
    child_id = f"{run.run_id}.{spec.id}" + ("" if index is None else f".{index}")
    durable = run.durable
    for attempt in range(1, attempts + 1):
        state.attempts += 1
        run.event("attempt", state, side_effects=sub.tool.side_effects, egress=(), item=index)
        if durable is not None and sub.tool.side_effects == "write":
            await durable.flush()  # its writes start after the journal has this attempt
        child = type(run)(  # an ActiveRun like its caller's
            run.executor,
            sub.compiled,
            values,
            child_id,
            timeout=spec.step.timeout,
            trace_attributes={"dagentic.subplan": sub.name, "dagentic.caller.step": spec.id},
            parent_id=run.run_id,
            journal=None,
            input_taint={k: v for k, v in input_taint.items() if v},
            inputs_from_steps=from_steps,
        )
        result = await child.execute()
        run.sub_usage[0] += result.usage.steps
        run.sub_usage[1] += result.usage.tool_calls
        untrusted = {
            source
            for step in result.steps.values()
            if step.provenance is not None
            for source in step.provenance.untrusted_from
        }
        if untrusted:  # what its steps read may be in its outputs, or its error
            state.provenance = tainted(state.provenance, untrusted)
        if result.succeeded:
            return run.keep(state, result.outputs, index)
        error = result.error
        mode = error.failure_mode if error is not None else FailureMode.TOOL_ERROR
        message = error.message if error is not None else f"it ended {result.status.value}"
        failed = SubPlanFailedError(
            f"step '{spec.id}': plan '{sub.name}' failed: {message}",
            mode,
            plan=sub.name,
            run_id=child_id,
        )
        if attempt == attempts or not retryable(failed, retry, sub.tool):
            raise failed
        if pipeline.spans is not None:
            pipeline.spans.record_retry(failed, attempt)
        await anyio.sleep(backoff(retry, attempt))
    raise AssertionError("unreachable")  # pragma: no cover
