"""What running one step means, from its ``when`` to its output.

:meth:`StepPipeline.execute` takes a step the scheduler started through its stages: a step
an earlier run already finished is reused; ``when`` may skip it; a ``check:`` step goes to
:mod:`._checks`; a tool step has its provenance checked, then one call — or one per
``foreach`` item — through :meth:`StepPipeline.call`: arguments resolved and validated,
approval asked, then per attempt a slot of the tool's concurrency limit, the
:class:`~dagentic.backend.ExecutionBackend` call under the step's timeout (waiting for the
slot does not count), and retries with backoff. Whatever fails becomes the step's error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from ._checks import run_check
from .approvals import call_approver
from .bounds import cut_value
from .errors import (
    EvaluationError,
    FailureMode,
    InvalidArgsError,
    PolicyBlockedError,
    StepTimeoutError,
    ToolError,
    failure_mode_of,
)
from .expressions import type_name
from .graph import CompiledStep
from .plan import Retry
from .result import ErrorInfo, StepStatus
from .tools import Tool, ToolContext
from .tracing import fail_span

if TYPE_CHECKING:
    from ._active_run import ActiveRun, StepState

NEVER_RETRIED = frozenset(
    {
        FailureMode.INVALID_ARGS,
        FailureMode.INVALID_TOOL,
        FailureMode.POLICY_BLOCKED,
        FailureMode.PLAN_INVALID,
        FailureMode.BUDGET_EXCEEDED,
        FailureMode.CANCELLED,
    }
)
_SUCCEEDED, _FAILED, _SKIPPED = StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED


class StepPipeline:
    """Runs the steps of ``run``, one :meth:`execute` per step."""

    def __init__(self, run: ActiveRun) -> None:
        self.run = run
        self.executor = run.executor
        self.settings = run.settings
        self.spans = run.spans
        self.scope = run.scope

    async def execute(self, state: StepState) -> None:
        """Run ``state``'s step; its status, output, error and times say how it went."""
        spec, run, spans = state.spec, self.run, self.spans
        state.started = time.perf_counter()
        reused = run.reuse.get(spec.id)
        if spans is not None:
            state.span = spans.start_step(state, reused=reused is not None)
        if reused is not None:
            state.output, state.status = reused.output, _SUCCEEDED
            run.event("reused", state)
            return
        run.event("started", state)
        # The step's span is current while it runs: model calls in a tool or a check's
        # judge nest under it.
        token = (
            otel_context.attach(trace.set_span_in_context(state.span))
            if spans is not None
            else None
        )
        try:
            if spec.when is not None and not self.evaluate(spec, "when", spec.when, self.scope):
                state.status = _SKIPPED
                return
            if spec.step.check is not None:
                await run_check(run, state)
                return
            assert spec.tool is not None
            _check_provenance(spec, spec.tool)
            if spec.foreach is None:
                state.output = await self.call(state, self.scope)
            else:
                state.output = await self._fan_out(state)
            state.status = _SUCCEEDED
        except _ItemFailure as failure:
            state.status = _FAILED
            info = ErrorInfo.from_exception(failure.error)
            named = f"step '{spec.id}': "
            message = info.message.removeprefix(named)
            prefix = named if len(message) < len(info.message) else ""
            state.error = info.model_copy(
                update={"message": f"{prefix}item {failure.index}: {message}"}
            )
        except Exception as exc:  # noqa: BLE001 - a step wrapper records any tool failure
            state.status = _FAILED
            state.error = ErrorInfo.from_exception(exc)
            if spans is not None:
                spans.record_failure(state, exc)
        finally:
            state.finished = time.perf_counter()
            if token is not None:
                otel_context.detach(token)

    @staticmethod
    def evaluate(spec: CompiledStep, where: str, expression: Any, scope: Mapping[str, Any]) -> Any:
        """The value of one of ``spec``'s expressions (``when``, ``foreach``, ...); an error
        names the step and ``where``."""
        if isinstance(expression, bool | list):
            return expression
        try:
            return expression.evaluate(scope)
        except EvaluationError as exc:
            raise EvaluationError(f"step '{spec.id}': {where}: {exc.message}") from None

    async def _fan_out(self, state: StepState) -> list[Any]:
        """One call per ``foreach`` item, ``max_parallel`` at a time, results in order; the
        first item to fail cancels the others."""
        spec, spans, scope = state.spec, self.spans, self.scope
        items = self.evaluate(spec, "foreach", spec.foreach, scope)
        if not isinstance(items, list | tuple):
            raise EvaluationError(
                f"step '{spec.id}': foreach must give a list, got {type_name(items)}"
            )
        results: list[Any] = [None] * len(items)
        failure: list[tuple[int, Exception]] = []
        work = iter(enumerate(items))
        width = spec.step.max_parallel or self.settings.foreach_concurrency

        async def worker(group: anyio.abc.TaskGroup) -> None:
            for index, item in work:
                span = spans.start_item(state, index) if spans is not None else None
                token = (
                    otel_context.attach(trace.set_span_in_context(span))
                    if span is not None
                    else None
                )
                try:
                    results[index] = await self.call(
                        state, {**scope, "item": item}, item=(index, len(items))
                    )
                except Exception as exc:  # noqa: BLE001 - re-raised below for the step
                    if span is not None:
                        fail_span(span, exc)
                    failure.append((index, exc))
                    group.cancel_scope.cancel()
                    return
                except BaseException:
                    if span is not None:
                        fail_span(
                            span,
                            None,
                            mode=FailureMode.CANCELLED,
                            message="cancelled: another item of the step failed or the run ended",
                        )
                    raise
                finally:
                    if token is not None:
                        otel_context.detach(token)
                    if span is not None:
                        span.end()

        async with anyio.create_task_group() as group:
            for _ in range(min(width, len(items))):
                group.start_soon(worker, group)
        if failure:
            raise _ItemFailure(*failure[0])
        return results

    async def call(
        self, state: StepState, scope: Mapping[str, Any], item: tuple[int, int] | None = None
    ) -> Any:
        """One call of the step's tool with its arguments resolved in ``scope``: approval,
        then attempts until one succeeds or the error is not retried."""
        spec, tool = state.spec, state.spec.tool
        assert tool is not None
        args = _arguments(spec, tool, scope)
        if spec.step.approval == "required":
            await self._approve(spec, tool, args, item)
        retry = spec.step.retry
        attempts = retry.attempts if retry else 1
        timeout = spec.step.timeout or tool.timeout or self.settings.default_timeout
        limiter = self.executor.limiter(tool.name)
        backend = self.executor.backend
        spans = self.spans
        if spans is not None:
            spans.record_arguments(args)
        for attempt in range(1, attempts + 1):
            state.attempts += 1
            self.run.event("attempt", state)
            context = (
                ToolContext(
                    self.run.run_id,
                    spec.id,
                    attempt,
                    self.settings,
                    tuple(sorted(spec.untrusted_inputs)),
                )
                if tool.context_param
                else None
            )
            try:
                if limiter is not None:  # waiting for a slot is not part of the timeout
                    await limiter.acquire()
                try:
                    with anyio.move_on_after(timeout) as deadline:
                        output = await backend.call(tool, dict(args), context)
                finally:
                    if limiter is not None:
                        limiter.release()
                if deadline.cancelled_caught:
                    raise StepTimeoutError(
                        f"step '{spec.id}': tool '{tool.name}' did not finish within {timeout:g}s",
                        timeout=timeout,
                    )
                return cut_value(
                    output.model_dump(mode="json") if isinstance(output, BaseModel) else output
                )
            except Exception as exc:
                if attempt == attempts or not _retryable(exc, retry, tool):
                    raise
                if spans is not None:  # the attempt that will be retried, as an event
                    spans.record_retry(exc, attempt)
                await anyio.sleep(_backoff(retry, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _approve(
        self, spec: CompiledStep, tool: Tool, args: dict[str, Any], item: tuple[int, int] | None
    ) -> None:
        approver = self.executor.approver
        if approver is None:
            raise PolicyBlockedError(
                f"step '{spec.id}' requires approval and no approver "
                "is configured (CLI: --yes approves every step)"
            )
        if not await call_approver(approver, spec.id, tool, args, item):
            raise PolicyBlockedError(f"step '{spec.id}': approval was denied")


class _ItemFailure(Exception):
    """One foreach item failed; the step reports that item's own error."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _arguments(spec: CompiledStep, tool: Tool, scope: Mapping[str, Any]) -> dict[str, Any]:
    """The step's arguments resolved in ``scope`` and validated by the tool's model."""
    try:
        raw = spec.args(scope)
    except EvaluationError as exc:
        raise EvaluationError(f"step '{spec.id}': args: {exc.message}") from None
    try:
        # The validated model's fields, by name (extra="forbid": nothing else is there).
        return tool.args_model.model_validate(raw).__dict__
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "missing" else "")
            for e in exc.errors(include_url=False)
        )
        raise InvalidArgsError(
            f"step '{spec.id}': tool '{tool.name}' rejected its arguments: {problems}",
            tool=tool.name,
        ) from None


def _check_provenance(spec: CompiledStep, tool: Tool) -> None:
    """Refuse untrusted data flowing into a tool that writes, unless the step allows it."""
    if tool.side_effects != "write" or not spec.untrusted_inputs or spec.step.allow_untrusted:
        return
    sources = ", ".join(sorted(spec.untrusted_inputs))
    raise PolicyBlockedError(
        f"step '{spec.id}': tool '{tool.name}' writes, and its arguments carry untrusted "
        f"data from {sources}; set 'allow_untrusted: true' on the step if that is "
        "intended",
        step=spec.id,
        untrusted=sorted(spec.untrusted_inputs),
    )


def _retryable(exc: Exception, retry: Retry | None, tool: Tool) -> bool:
    mode = failure_mode_of(exc)
    if retry is None or mode in NEVER_RETRIED or mode not in retry.on:
        return False
    if isinstance(exc, ToolError):
        return exc.retryable
    # A tool that is not idempotent may have done its work before failing.
    return tool.idempotent


def _backoff(retry: Retry | None, attempt: int) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    if retry is None:
        return 0.0
    delay = min(retry.max_backoff, retry.backoff * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)
