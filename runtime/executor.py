"""The executor: runs a compiled plan as a DAG on anyio (asyncio or trio).

Scheduling is a ready queue, not levels: the moment a step's last dependency finishes,
the step is queued and started as soon as a slot of the run's concurrency is free. Tools
run through an :class:`~dagentic.backend.ExecutionBackend`; every state change goes to an
optional :class:`~dagentic.journal.Journal`.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.lowlevel import RunVar
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel, TypeAdapter, ValidationError

from .backend import ExecutionBackend, InProcessBackend
from .errors import (
    CheckFailedError,
    EvaluationError,
    FailureMode,
    InvalidArgsError,
    PlanError,
    PolicyBlockedError,
    Problem,
    StepTimeoutError,
    ToolError,
    failure_mode_of,
)
from .expressions import type_name
from .graph import CompiledPlan, CompiledStep, compile_plan, load_plan
from .journal import Journal, StepEvent
from .plan import InputSpec, Plan, Retry
from .plugin_manager import load_tools
from .result import (
    ErrorInfo,
    RunResult,
    RunStatus,
    StepResult,
    StepStatus,
    Usage,
)
from .settings import Settings
from .tools import Tool, ToolContext, ToolRegistry
from .tracing import FAILURE_MODE, RUN_ID, Tracing, fail_span, tracing_from_settings

__all__ = ["Approver", "Executor", "Judge", "Verdict", "resolve_inputs", "run_plan"]

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
YIELD_EVERY = 0.001  # seconds a worker may run steps back to back without yielding
SETTINGS: Any = object()  # "take it from the settings"
_PENDING, _SUCCEEDED, _FAILED, _SKIPPED, _CANCELLED = (
    StepStatus.PENDING,
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.CANCELLED,
)


class Approver(Protocol):
    async def __call__(self, step_id: str, tool: Tool, args: dict[str, Any]) -> bool:
        """Return True to let the call run; False refuses it (``policy_blocked``)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str = ""


class Judge(Protocol):
    async def __call__(self, criteria: str, evidence: dict[str, Any]) -> Verdict:
        """Decide whether ``evidence`` (outputs of the steps a check reads) meets
        ``criteria``."""


class _State:
    """Mutable bookkeeping of one step during one run."""

    __slots__ = (
        "attempts",
        "error",
        "finished",
        "output",
        "pending",
        "result",
        "span",
        "spec",
        "started",
        "status",
        "unclean",
        "waited_for",
    )

    def __init__(self, spec: CompiledStep) -> None:
        self.spec = spec
        self.status = _PENDING
        self.output: Any = None
        self.error: ErrorInfo | None = None
        self.attempts = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.pending = len(spec.deps)
        self.unclean = False  # a dependency ended without succeeding
        self.result: StepResult | None = None  # built when the step finishes
        self.span: Any = None  # its span while it runs, when tracing
        self.waited_for: str | None = None  # the dependency that finished last


class Executor:
    """Runs plans. One executor can run many plans, one after another or at once.

    Args:
        tools: the tools steps may call.
        settings: concurrency, timeouts and limits (default: :class:`Settings` from files
            and environment).
        backend: where tool calls run (default: in process).
        journal: receives every state change (see :mod:`dagentic.journal`).
        approver: asked before a step with ``approval: required`` runs.
        judge: decides ``check.criteria``; without one, plans using criteria are invalid.
        fail_fast: cancel the rest of the run at its first failure.
        tracing: where spans and metrics go (default: the ``tracing`` settings; ``None``
            turns them off).
    """

    def __init__(
        self,
        tools: ToolRegistry,
        *,
        settings: Settings | None = None,
        backend: ExecutionBackend | None = None,
        journal: Journal | None = None,
        approver: Approver | None = None,
        judge: Judge | None = None,
        fail_fast: bool | None = None,
        tracing: Tracing | Any | None = SETTINGS,
    ) -> None:
        self.tools = tools
        self.settings = settings or Settings()
        self.tracing: Tracing | None = (
            tracing_from_settings(self.settings) if tracing is SETTINGS else tracing
        )
        self.backend = backend or InProcessBackend(self.settings.worker_threads)
        self.journal = journal
        self.approver = approver
        self.judge = judge
        self.fail_fast = self.settings.fail_fast if fail_fast is None else fail_fast
        self._runs: dict[str, _Run] = {}
        limits = {t.name: t.max_concurrency for t in tools if t.max_concurrency is not None}
        limits.update(self.settings.tool_concurrency)
        self._tool_limits = limits
        # Per-tool limiters hold across every run of this executor, one set per event loop.
        self._limiters: RunVar[dict[str, anyio.CapacityLimiter]] = RunVar(
            f"dagentic-tool-limiters-{id(self)}"
        )

    def limiter(self, tool_name: str) -> anyio.CapacityLimiter | None:
        """The limiter of a tool with a concurrency limit (``tool_concurrency`` setting or
        ``@tool(max_concurrency=...)``), shared by all runs on the current event loop."""
        count = self._tool_limits.get(tool_name)
        if count is None:
            return None
        try:
            limiters = self._limiters.get()
        except LookupError:
            limiters = {}
            self._limiters.set(limiters)
        limiter = limiters.get(tool_name)
        if limiter is None:
            limiter = limiters[tool_name] = anyio.CapacityLimiter(count)
        return limiter

    def compile(self, plan: Plan | CompiledPlan | Mapping[str, Any] | str | Path) -> CompiledPlan:
        """Validate ``plan`` against this executor's tools. Raises :class:`PlanError`."""
        if isinstance(plan, CompiledPlan):
            return plan
        if isinstance(plan, Path):
            return load_plan(plan, self.tools, judge=self.judge is not None)
        return compile_plan(plan, self.tools, judge=self.judge is not None)

    async def run(
        self,
        plan: Plan | CompiledPlan | Mapping[str, Any] | str | Path,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        reuse: Mapping[str, StepResult] | None = None,
        trace_attributes: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run ``plan`` to the end and return its :class:`RunResult`.

        A run whose caller is cancelled cancels every running step and re-raises the
        cancellation; :meth:`cancel` ends a run early and still returns its result.
        ``reuse`` maps step ids to results of an earlier run that stand for this run's
        steps (a replan keeps what succeeded): those steps are not run again.
        ``trace_attributes`` are added to the run's span.
        """
        compiled = self.compile(plan)
        values = resolve_inputs(compiled.plan, inputs or {})
        run = _Run(self, compiled, values, run_id or uuid.uuid4().hex, timeout)
        run.reuse = dict(reuse or {})
        run.trace_attributes = dict(trace_attributes or {})
        self._runs[run.run_id] = run
        try:
            return await run.execute()
        finally:
            del self._runs[run.run_id]

    def cancel(self, run_id: str | None = None) -> None:
        """Cancel one run (or every active run): running steps are cancelled and the run
        returns with status ``cancelled``."""
        for rid, run in list(self._runs.items()):
            if run_id is None or rid == run_id:
                run.stop(
                    _CANCELLED,
                    ErrorInfo(failure_mode=FailureMode.CANCELLED, message="the run was cancelled"),
                )


class _Run:
    def __init__(
        self,
        executor: Executor,
        plan: CompiledPlan,
        inputs: dict[str, Any],
        run_id: str,
        timeout: float | None,
    ) -> None:
        self.executor = executor
        self.plan = plan
        self.run_id = run_id
        self.timeout = timeout
        self.journal = executor.journal
        self.settings = executor.settings
        self.states = {sid: _State(spec) for sid, spec in plan.steps.items()}
        self.views: dict[str, dict[str, Any]] = {
            sid: {
                "output": None,
                "status": "pending",
                "error": None,
                "attempts": 0,
                "duration": None,
            }
            for sid in plan.steps
        }
        self.scope: dict[str, Any] = {"inputs": inputs, "steps": self.views}
        self.ready: deque[_State] = deque(s for s in self.states.values() if not s.pending)
        self.workers = 0
        self.starting = 0
        self.limit = self.settings.concurrency
        self.tg: anyio.abc.TaskGroup | None = None
        self.stop_status: StepStatus | None = None
        self.stop_error: ErrorInfo | None = None
        self.replan_requested: list[str] = []
        self.reuse: dict[str, StepResult] = {}
        self.t0 = 0.0
        self.started_at = datetime.now(UTC)  # reset when the run starts
        self.deadline = float("inf")
        self.tracing = executor.tracing
        self.trace_attributes: dict[str, Any] = {}
        self.span: Any = None
        self.span_context: Any = None  # the context whose current span is the run's

    # -- lifecycle ---------------------------------------------------------------------

    async def execute(self) -> RunResult:
        self.t0 = time.perf_counter()
        self.started_at = datetime.now(UTC)
        root = self._start_span() if self.tracing is not None else None
        try:
            result = await self._run_all()
        except Exception as exc:  # the runtime itself broke (a journal raised, say)
            self._end_span(RunStatus.FAILED, ErrorInfo.from_exception(exc), root)
            raise
        except BaseException:
            self._end_span(
                RunStatus.CANCELLED,
                ErrorInfo(
                    failure_mode=FailureMode.CANCELLED,
                    message="the run was cancelled by its caller",
                ),
                root,
            )
            raise
        self._end_span(result.status, result.error, root)
        return result

    async def _run_all(self) -> RunResult:
        self._event("run_started")
        self.deadline = deadline = (
            float("inf") if self.timeout is None else anyio.current_time() + self.timeout
        )
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                async with anyio.create_task_group() as tg:
                    self.tg = tg
                    self._dispatch()
        except BaseException:
            self._close_unfinished(
                ErrorInfo(
                    failure_mode=FailureMode.CANCELLED,
                    message="the run was cancelled by its caller",
                )
            )
            self._event("run_finished", status=RunStatus.CANCELLED)
            raise
        if scope.cancelled_caught:
            self.stop_error = ErrorInfo(
                failure_mode=FailureMode.TIMEOUT,
                message=f"the run's deadline of {self.timeout}s passed",
            )
            self.stop_status = _FAILED
            for state in self.states.values():
                if state.status is _CANCELLED and state.started is not None:
                    state.error, state.result = self.stop_error, None
        self._close_unfinished(
            self.stop_error
            or ErrorInfo(
                failure_mode=FailureMode.CANCELLED, message="the run ended before this step"
            )
        )
        return self._result(self.started_at)

    def _start_span(self) -> Any:
        """Start the run's span; returns the token that files the trace under this run
        when it is the outermost dagentic run."""
        assert self.tracing is not None
        self.span = span = self.tracing.tracer.start_span(
            f"run {self.plan.name}",
            attributes={
                RUN_ID: self.run_id,
                "dagentic.plan": self.plan.name,
                "dagentic.plan.steps": len(self.states),
                **self.trace_attributes,
            },
        )
        self.span_context = trace.set_span_in_context(span)
        return self.tracing.enter_root(self.run_id, span)

    def _end_span(self, status: RunStatus, error: ErrorInfo | None, root: Any) -> None:
        tracing, span = self.tracing, self.span
        if tracing is None or span is None:
            return
        self.span = None
        span.set_attribute("dagentic.status", status.value)
        if error is not None:
            fail_span(span, None, mode=error.failure_mode, message=error.message)
        span.end()
        tracing.ended(span)
        tracing.exit_root(root)

    def stop(self, status: StepStatus, error: ErrorInfo) -> None:
        """End the run early: running steps are cancelled, nothing new starts."""
        if self.stop_status is None:
            self.stop_status, self.stop_error = status, error
        if self.tg is not None:
            self.tg.cancel_scope.cancel()

    def _close_unfinished(self, error: ErrorInfo) -> None:
        now = time.perf_counter()
        for state in self.states.values():
            if state.status in (_PENDING, _CANCELLED) or state.finished is None:
                state.result = None
            if state.status is _PENDING:
                state.status, state.error = _CANCELLED, error
                if self.tracing is not None:  # a step that never started: an instant span
                    self._end_step_span(state)
            if state.status is _CANCELLED and state.error is None:
                state.error = error
            if state.started is not None and state.finished is None:
                state.finished = now

    # -- scheduling --------------------------------------------------------------------

    def _dispatch(self, reserved: int = 0) -> None:
        """Start workers for ready steps no worker will pick up. A worker calling this
        from a finished step reserves one ready step for itself."""
        assert self.tg is not None
        while (
            self.workers < self.limit
            and self.stop_status is None
            and len(self.ready) > self.starting + reserved
        ):
            self.workers += 1
            self.starting += 1
            self.tg.start_soon(self._worker, name="dagentic-worker")

    async def _worker(self) -> None:
        """Run ready steps until none is left. Workers, not tasks per step, keep the cost
        of a step low and memory bounded by the concurrency limit."""
        self.starting -= 1
        busy_since = time.perf_counter()
        try:
            while self.ready and self.stop_status is None:
                state = self.ready.popleft()
                self._event("scheduled", state)
                await self._run_step(state)
                if self.ready and time.perf_counter() - busy_since > YIELD_EVERY:
                    # Steps that never wait (no-op tools) must not starve the event loop.
                    await anyio.lowlevel.checkpoint()
                    busy_since = time.perf_counter()
        finally:
            self.workers -= 1

    async def _run_step(self, state: _State) -> None:
        try:
            await self._execute(state)
        except anyio.get_cancelled_exc_class():
            if state.status is _PENDING:
                state.status = _CANCELLED
            raise
        finally:
            if state.finished is None:
                state.finished = time.perf_counter()
            self._finish(state)

    def _finish(self, state: _State) -> None:
        self._publish(state)
        if state.status is _FAILED and self.executor.fail_fast:
            self.stop(
                _FAILED,
                ErrorInfo(
                    failure_mode=FailureMode.CANCELLED,
                    message=f"cancelled: step '{state.spec.id}' failed and fail_fast is on",
                ),
            )
        if self.stop_status is not None or state.status is _CANCELLED:
            return  # what waits on it stays pending and is closed with the run's reason
        done = [state]
        while done:
            finished = done.pop()
            clean = finished.status is _SUCCEEDED
            for sid in finished.spec.dependents:
                dependent = self.states[sid]
                dependent.pending -= 1
                if not clean:
                    dependent.unclean = True
                if dependent.pending:
                    continue
                dependent.waited_for = finished.spec.id  # its last dependency to finish
                reason = self._blocked(dependent) if dependent.unclean else None
                if reason is None:
                    self.ready.append(dependent)
                    continue
                dependent.status = _SKIPPED
                dependent.error = reason or None
                self._publish(dependent)
                done.append(dependent)
        self._dispatch(reserved=1)

    def _blocked(self, state: _State) -> ErrorInfo | bool | None:
        """Why ``state`` cannot run: an upstream failure, ``False`` for a plain skip
        (a dependency was skipped by its `when`), or None when it can run."""
        plain_skip = False
        for dep in state.spec.deps:
            other = self.states[dep]
            if other.status in (_FAILED, _CANCELLED) or (
                other.error is not None and other.error.failure_mode is FailureMode.UPSTREAM_FAILED
            ):
                return ErrorInfo(
                    failure_mode=FailureMode.UPSTREAM_FAILED,
                    message=f"skipped because step '{dep}' {other.status.value}"
                    if other.status is not _SKIPPED
                    else f"skipped because step '{dep}' was skipped after a failure",
                )
            if other.status is _SKIPPED and not state.spec.step.run_if_skipped:
                plain_skip = True
        return False if plain_skip else None

    def _publish(self, state: _State) -> None:
        view = self.views[state.spec.id]
        view["output"] = state.output
        view["status"] = state.status.value
        view["error"] = state.error.message if state.error else None
        view["attempts"] = state.attempts
        if state.started is not None and state.finished is not None:
            view["duration"] = state.finished - state.started
        # Built now, while other steps are still waiting, not all at the end of the run.
        state.result = self._step_result(state)
        if self.tracing is not None:
            self._end_step_span(state)
        self._event("skipped" if state.status is _SKIPPED else "finished", state)

    def _event(self, kind: Any, state: _State | None = None, **extra: Any) -> None:
        if self.journal is None:
            return
        if state is None:
            self.journal.record(StepEvent(kind, self.run_id, **extra))
        else:
            self.journal.record(
                StepEvent(
                    kind,
                    self.run_id,
                    state.spec.id,
                    attempt=state.attempts,
                    status=state.status.value,
                    output=state.output,
                    error=state.error,
                )
            )

    # -- one step ----------------------------------------------------------------------

    async def _execute(self, state: _State) -> None:
        spec = state.spec
        state.started = time.perf_counter()
        reused = self.reuse.get(spec.id)
        tracing = self.tracing
        if tracing is not None:
            state.span = self._step_span(state, reused=reused is not None)
        if reused is not None:
            state.output, state.status = reused.output, _SUCCEEDED
            self._event("reused", state)
            return
        self._event("started", state)
        # The step's span is current while it runs: model calls in a tool or a check's
        # judge nest under it.
        token = (
            otel_context.attach(trace.set_span_in_context(state.span))
            if tracing is not None
            else None
        )
        try:
            if spec.when is not None and not self._evaluate(spec, "when", spec.when, self.scope):
                state.status = _SKIPPED
                return
            if spec.step.check is not None:
                await self._check(state)
                return
            assert spec.tool is not None
            self._check_provenance(spec, spec.tool)
            if spec.foreach is None:
                state.output = await self._call(state, self.scope)
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
            if state.span is not None:
                state.span.record_exception(
                    exc, attributes={FAILURE_MODE: state.error.failure_mode.value}
                )
        finally:
            state.finished = time.perf_counter()
            if token is not None:
                otel_context.detach(token)

    def _step_span(self, state: _State, *, reused: bool = False) -> Any:
        spec = state.spec
        assert self.tracing is not None
        tool = spec.step.tool
        attributes: dict[str, Any] = {"dagentic.step.id": spec.id}
        if tool is not None:
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = tool
        if state.waited_for is not None:  # what held it back: the critical path's links
            attributes["dagentic.step.waited_for"] = state.waited_for
        if reused:
            attributes["dagentic.step.reused"] = True
        return self.tracing.tracer.start_span(
            f"execute_tool {tool}" if tool is not None else f"check {spec.id}",
            context=self.span_context,
            attributes=attributes,
        )

    def _end_step_span(self, state: _State) -> None:
        """End the step's span (a step skipped before it started gets an instant one)."""
        tracing = self.tracing
        assert tracing is not None
        span = state.span or self._step_span(state)
        state.span = None
        status = state.status.value
        span.set_attribute("dagentic.status", status)
        if state.attempts:
            span.set_attribute("dagentic.attempts", state.attempts)
        error = state.error
        if error is None and state.status is _CANCELLED:
            error = self.stop_error or (
                ErrorInfo(
                    failure_mode=FailureMode.TIMEOUT,
                    message=f"the run's deadline of {self.timeout}s passed",
                )
                if anyio.current_time() >= self.deadline
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

    def _evaluate(
        self, spec: CompiledStep, where: str, expression: Any, scope: Mapping[str, Any]
    ) -> Any:
        if isinstance(expression, bool | list):
            return expression
        try:
            return expression.evaluate(scope)
        except EvaluationError as exc:
            raise EvaluationError(f"step '{spec.id}': {where}: {exc.message}") from None

    def _check_provenance(self, spec: CompiledStep, tool: Tool) -> None:
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

    async def _fan_out(self, state: _State) -> list[Any]:
        spec = state.spec
        items = self._evaluate(spec, "foreach", spec.foreach, self.scope)
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
                span = self._item_span(state, index)
                token = (
                    otel_context.attach(trace.set_span_in_context(span))
                    if span is not None
                    else None
                )
                try:
                    results[index] = await self._call(state, {**self.scope, "item": item})
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

    async def _call(self, state: _State, scope: Mapping[str, Any]) -> Any:
        spec, tool = state.spec, state.spec.tool
        assert tool is not None
        args = self._arguments(spec, tool, scope)
        if spec.step.approval == "required":
            await self._approve(spec, tool, args)
        retry = spec.step.retry
        attempts = retry.attempts if retry else 1
        timeout = spec.step.timeout or tool.timeout or self.settings.default_timeout
        limiter = self.executor.limiter(tool.name)
        tracing = self.tracing
        if tracing is not None and tracing.record_content:
            trace.get_current_span().set_attribute(
                "gen_ai.tool.call.arguments", tracing.content(args)
            )
        for attempt in range(1, attempts + 1):
            state.attempts += 1
            self._event("attempt", state)
            context = (
                ToolContext(
                    self.run_id,
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
                        output = await self.executor.backend.call(tool, dict(args), context)
                finally:
                    if limiter is not None:
                        limiter.release()
                if deadline.cancelled_caught:
                    raise StepTimeoutError(
                        f"step '{spec.id}': tool '{tool.name}' did not finish within {timeout:g}s",
                        timeout=timeout,
                    )
                return output.model_dump(mode="json") if isinstance(output, BaseModel) else output
            except Exception as exc:
                if attempt == attempts or not _retryable(exc, retry, tool):
                    raise
                if tracing is not None:  # the attempt that will be retried, as an event
                    trace.get_current_span().record_exception(
                        exc,
                        attributes={
                            FAILURE_MODE: failure_mode_of(exc).value,
                            "dagentic.attempt": attempt,
                            "dagentic.retried": True,
                        },
                    )
                await anyio.sleep(_backoff(retry, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _item_span(self, state: _State, index: int) -> Any:
        """A span for one item of a foreach step, under the step's span."""
        if self.tracing is None:
            return None
        tool = state.spec.step.tool
        return self.tracing.tracer.start_span(
            f"execute_tool {tool}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "dagentic.step.id": state.spec.id,
                "dagentic.item": index,
            },
        )

    def _arguments(
        self, spec: CompiledStep, tool: Tool, scope: Mapping[str, Any]
    ) -> dict[str, Any]:
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

    async def _approve(self, spec: CompiledStep, tool: Tool, args: dict[str, Any]) -> None:
        approver = self.executor.approver
        if approver is None:
            raise PolicyBlockedError(
                f"step '{spec.id}' requires approval and no approver "
                "is configured (CLI: --yes approves every step)"
            )
        if not await approver(spec.id, tool, args):
            raise PolicyBlockedError(f"step '{spec.id}': approval was denied")

    async def _check(self, state: _State) -> None:
        spec = state.spec
        check = spec.step.check
        assert check is not None
        rounds = (
            (spec.step.retry.attempts if spec.step.retry else 3) if check.on_fail == "retry" else 1
        )
        for round_ in range(1, rounds + 1):
            state.attempts = round_
            reasons = await self._check_once(spec)
            if not reasons:
                state.output = {"passed": True}
                state.status = _SUCCEEDED
                return
            if round_ < rounds:
                await self._rerun(spec.deps)
        message = f"step '{spec.id}': check failed: " + "; ".join(reasons)
        if check.on_fail == "continue":
            state.output = {"passed": False, "reasons": reasons}
            state.status = _SUCCEEDED
            return
        if check.on_fail == "replan":
            self.replan_requested.append(spec.id)
        error = CheckFailedError(message, step=spec.id, on_fail=check.on_fail)
        if check.on_fail == "abort":
            self.stop(
                _FAILED,
                ErrorInfo(
                    failure_mode=FailureMode.CANCELLED,
                    message=f"cancelled: check '{spec.id}' failed with on_fail: abort",
                ),
            )
        raise error

    async def _check_once(self, spec: CompiledStep) -> list[str]:
        check = spec.step.check
        assert check is not None
        reasons = []
        if spec.check_assert is not None:
            try:
                if not self._evaluate(spec, "check.assert", spec.check_assert, self.scope):
                    reasons.append(f"assert {spec.check_assert.source} is false")
            except EvaluationError as exc:
                reasons.append(exc.message)
        if check.criteria is not None and self.executor.judge is not None:
            evidence = {dep: self.views[dep]["output"] for dep in spec.deps}
            verdict = await self.executor.judge(check.criteria, evidence)
            if not verdict.passed:
                reasons.append(f"criteria not met: {verdict.reason or check.criteria}")
        return reasons

    async def _rerun(self, step_ids: tuple[str, ...]) -> None:
        """Run the steps a failed check reads once more (on_fail: retry)."""
        async with anyio.create_task_group() as group:
            for sid in step_ids:
                state = self.states[sid]
                if state.spec.tool is None:
                    continue
                state.status, state.output, state.error = _PENDING, None, None
                group.start_soon(self._execute_and_publish, state)

    async def _execute_and_publish(self, state: _State) -> None:
        await self._execute(state)
        self._publish(state)

    # -- result ------------------------------------------------------------------------

    def _result(self, started_at: datetime) -> RunResult:
        wall = time.perf_counter() - self.t0
        steps: dict[str, StepResult] = {}
        calls = ran = 0
        for sid, state in self.states.items():
            calls += state.attempts if state.spec.tool else 0
            ran += state.started is not None and state.status is not _SKIPPED
            steps[sid] = state.result or self._step_result(state)
        failed = next((s for s in self.states.values() if s.status is _FAILED), None)
        if self.stop_status is _CANCELLED:
            status, error = RunStatus.CANCELLED, self.stop_error
        elif self.stop_error is not None and self.stop_error.failure_mode is FailureMode.TIMEOUT:
            status, error = RunStatus.FAILED, self.stop_error
        elif failed is not None:
            assert failed.error is not None
            status = RunStatus.FAILED
            message = failed.error.message
            if not message.startswith(f"step '{failed.spec.id}'"):
                message = f"step '{failed.spec.id}' failed: {message}"
            error = failed.error.model_copy(update={"message": message})
        else:
            status, error = RunStatus.SUCCEEDED, None
        outputs, output_error = self._outputs(strict=status is RunStatus.SUCCEEDED)
        if output_error is not None:
            status, error = RunStatus.FAILED, output_error
        self._event("run_finished", status=status.value, error=error)
        return RunResult(
            run_id=self.run_id,
            plan=self.plan.name,
            goal=self.plan.plan.goal,
            status=status,
            steps=steps,
            outputs=outputs,
            error=error,
            usage=Usage(steps=ran, tool_calls=calls, wall_time=wall),
            started_at=started_at,
            finished_at=started_at + timedelta(seconds=wall),
            replan_requested=self.replan_requested,
        )

    def _step_result(self, state: _State) -> StepResult:
        started_at = self.started_at
        begun = ended = duration = None
        if state.started is not None:
            begun = started_at + timedelta(seconds=state.started - self.t0)
        if state.finished is not None:
            ended = started_at + timedelta(seconds=state.finished - self.t0)
            if state.started is not None:
                duration = state.finished - state.started
        return StepResult(
            id=state.spec.id,
            tool=state.spec.step.tool,
            status=state.status,
            output=state.output,
            error=state.error,
            attempts=state.attempts,
            started_at=begun,
            finished_at=ended,
            duration=duration,
            provenance=state.spec.provenance,
        )

    def _outputs(self, *, strict: bool) -> tuple[dict[str, Any], ErrorInfo | None]:
        outputs: dict[str, Any] = {}
        for key, resolve in self.plan.outputs.items():
            try:
                outputs[key] = resolve(self.scope)
            except EvaluationError as exc:
                outputs[key] = None
                if strict:
                    return outputs, ErrorInfo(
                        failure_mode=FailureMode.INVALID_ARGS,
                        message=f"output '{key}': {exc.message}",
                        type="EvaluationError",
                    )
        return outputs, None


class _ItemFailure(Exception):
    """One foreach item failed; the step reports that item's own error."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


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


_INPUT_TYPES: dict[str, TypeAdapter[Any]] = {
    "string": TypeAdapter(str),
    "integer": TypeAdapter(int),
    "number": TypeAdapter(float),
    "boolean": TypeAdapter(bool),
    "array": TypeAdapter(list),
    "object": TypeAdapter(dict),
}


def resolve_inputs(plan: Plan, given: Mapping[str, Any]) -> dict[str, Any]:
    """Plan inputs from ``given`` (strings from a command line are converted to the
    declared type) and defaults. Raises :class:`PlanError` listing every bad input."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in plan.inputs:
            declared = ", ".join(sorted(plan.inputs)) or "none"
            problems.append(
                Problem(f"unknown input '{name}' (plan '{plan.name}' declares: {declared})")
            )
    for name, spec in plan.inputs.items():
        if name not in given:
            if spec.required:
                problems.append(
                    Problem(f"input '{name}' is required (give it with -i {name}=VALUE)")
                )
            values[name] = spec.default
            continue
        try:
            values[name] = _coerce(spec, given[name])
        except json.JSONDecodeError:
            example = '["a", "b"]' if spec.type == "array" else '{"key": "value"}'
            problems.append(
                Problem(
                    f"input '{name}' must be {spec.type}, given as JSON, "
                    f"e.g. -i {name}='{example}'; got {given[name]!r}"
                )
            )
        except (ValidationError, ValueError) as exc:
            problems.append(
                Problem(
                    f"input '{name}' must be {spec.type}, got "
                    f"{given[name]!r}: {_first_message(exc)}"
                )
            )
    if problems:
        raise PlanError(problems)
    return values


def _coerce(spec: InputSpec, value: Any) -> Any:
    if spec.type in ("array", "object") and isinstance(value, str):
        value = json.loads(value)
    return _INPUT_TYPES[spec.type].validate_python(value)


def _first_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return exc.errors(include_url=False)[0]["msg"]
    return str(exc)


async def run_plan(
    plan: Plan | CompiledPlan | Mapping[str, Any] | str | Path,
    inputs: Mapping[str, Any] | None = None,
    *,
    tools: ToolRegistry | None = None,
    **options: Any,
) -> RunResult:
    """Validate and run ``plan`` in one call. ``tools`` defaults to every installed plugin's
    tools; ``options`` go to :class:`Executor`."""
    if tools is None:
        tools = load_tools()
    if isinstance(plan, str) and plan.endswith((".yaml", ".yml")) and "\n" not in plan:
        plan = Path(plan)
    return await Executor(tools, **options).run(plan, inputs)
