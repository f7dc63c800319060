"""What running one step means, from its ``when`` to its output.

:meth:`StepPipeline.execute` takes a step the scheduler started through its stages: a step
an earlier run already finished is reused; ``when`` may skip it; a ``check:`` step goes to
:mod:`._checks`; a tool step makes one call — or one per ``foreach`` item — through
:meth:`StepPipeline.call`: arguments resolved and validated, the call's effects asked of
the tool (:meth:`~dagentic.Tool.call_effects`), the data policy checked against them,
approval asked, then per attempt a slot of the tool's concurrency limit, the
:class:`~dagentic.backend.ExecutionBackend` call under the step's timeout (waiting for the
slot does not count), and retries with backoff. The output is cut to the bounds of one
value, then kept only if it fits what the run may still keep (:meth:`ActiveRun.keep
<dagentic._active_run.ActiveRun.keep>`; a refused output is not retried), and no tool is
called once nothing more fits. Whatever fails becomes the step's error.

Provenance is followed while the run runs: a step's data is untrusted when the data of a
step it reads is (as each of those turned out, not only as the plan says) or its tool is
untrusted, or when its tool marks its output so (read from a store holding untrusted data,
see :meth:`~dagentic.ToolContext.mark_untrusted`).

The data policy, per call: untrusted data may reach a call that writes only with
``allow_untrusted: true`` on the step; and with ``allow_egress: true`` only, untrusted data
an argument that leaves the machine, or any step's output an argument that says where data
goes (a URL).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from ._checks import run_check
from ._step_rules import backoff, retryable, tainted
from .approvals import LATER, approver_name, call_approver
from .attributes import CACHE, TOOL_EGRESS, TOOL_SIDE_EFFECTS
from .backend import CallSite
from .bounds import cut_and_size, cut_value
from .durable.store import ApprovalRecord, dumps
from .errors import (
    DagenticError,
    EvaluationError,
    FailureMode,
    InvalidArgsError,
    PolicyBlockedError,
    ResourceLimitError,
    StepTimeoutError,
    ToolError,
)
from .expressions import type_name
from .graph import CompiledStep
from .result import ErrorInfo, Provenance, StepStatus
from .tools import Effects, Tool, ToolContext
from .tracing import fail_span

if TYPE_CHECKING:
    from ._active_run import ActiveRun, StepState

_SUCCEEDED, _FAILED, _SKIPPED, _WAITING = (
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.WAITING,
)
_QUOTED_SIZE = 200  # characters and items of an argument quoted in an error


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
        if state.kept:  # it runs again (a check's retry): its old output is gone
            run.release(state)
        reused = run.reuse.get(spec.id)
        if spans is not None:
            state.span = spans.start_step(state, reused=reused is not None)
        if reused is not None:
            state.provenance = reused.provenance
            try:
                state.output, state.status = run.keep(state, reused.output), _SUCCEEDED
            except ResourceLimitError as exc:  # kept by an earlier run, too much for this one
                state.status, state.error = _FAILED, ErrorInfo.from_exception(exc)
                state.finished = time.perf_counter()
                if spans is not None:
                    spans.record_failure(state, exc)
                return
            run.event("reused", state)
            return
        state.provenance = _provenance(spec, self.taint_of(spec))
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
                state.output = run.keep(state, state.output)
                return
            assert spec.tool is not None or spec.subplan is not None
            if spec.foreach is None:
                state.output = await self.call(state, self.scope)
            else:
                state.output = await self._fan_out(state)
            state.status = _SUCCEEDED
        except StepWaiting:
            run.release(state)
            state.status = _WAITING
        except _ItemFailure as failure:
            run.release(state)  # the items that succeeded are dropped with the step
            state.status = _FAILED
            info = ErrorInfo.from_exception(failure.error)
            named = f"step '{spec.id}': "
            message = info.message.removeprefix(named)
            prefix = named if len(message) < len(info.message) else ""
            state.error = info.model_copy(
                update={"message": f"{prefix}item {failure.index}: {message}"}
            )
        except Exception as exc:  # noqa: BLE001 - a step wrapper records any tool failure
            run.release(state)
            state.status = _FAILED
            state.error = ErrorInfo.from_exception(exc)
            if spans is not None:
                spans.record_failure(state, exc)
        finally:
            state.finished = time.perf_counter()
            if token is not None:
                otel_context.detach(token)

    def taint(self, steps: Iterable[str]) -> frozenset[str]:
        """Where the untrusted data in the results of ``steps`` came from, as they ran."""
        states = self.run.states
        return frozenset().union(*(states[sid].provenance.untrusted_from for sid in steps))

    def taint_of(self, spec: CompiledStep) -> frozenset[str]:
        """Where the untrusted data ``spec`` reads came from: the steps it reads and, in a
        sub-plan, the inputs its caller built from untrusted data."""
        found = self.taint(spec.data_deps)
        return found | self.run.tainted_inputs(spec.input_reads) if self.run.input_taint else found

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
        waiting: list[int] = []
        done = self.run.done_items.get(spec.id, {})
        work = iter(enumerate(items))
        width = spec.step.max_parallel or self.settings.foreach_concurrency
        run = self.run

        async def worker(group: anyio.abc.TaskGroup) -> None:
            for index, item in work:
                stored = done.get(index) if done else None
                if stored is not None and stored.item_hash == item_hash(item):
                    # done before the run was resumed: its output (and taint) stands
                    results[index] = run.keep(state, stored.output, index)
                    if not stored.provenance.trusted:
                        state.provenance = tainted(
                            state.provenance, stored.provenance.untrusted_from
                        )
                    continue
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
                    if run.journal is not None:
                        run.event(
                            "item_finished",
                            state,
                            item=index,
                            status="succeeded",
                            output=results[index],
                            detail={"item_hash": item_hash(item)} if run.durable else None,
                        )
                except StepWaiting:
                    waiting.append(index)  # the other items go on
                    if span is not None:
                        span.set_attribute("dagentic.status", "waiting")
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
        if waiting:
            raise StepWaiting
        return results

    async def call(
        self, state: StepState, scope: Mapping[str, Any], item: tuple[int, int] | None = None
    ) -> Any:
        """One call of the step's tool with its arguments resolved in ``scope``: its effects,
        the data policy, approval, then attempts until one succeeds or the error is not
        retried. A sub-plan step runs its plan instead (see ``_subrun.py``)."""
        if state.spec.subplan is not None:
            from ._subrun import call_subplan

            return await call_subplan(self, state, scope, item)
        spec, tool = state.spec, state.spec.tool
        assert tool is not None
        index = None if item is None else item[0]
        if not self.run.can_keep(index):  # no output could be kept: the call is not made
            raise self.run.over_budget(state, index)
        raw, args = _arguments(spec, tool, scope)
        effects = _effects(spec, tool, args, self.settings)
        sent = tuple(sorted(a for a in effects.egress if args.get(a) is not None))
        untrusted = self.taint_of(spec)
        self._check_policy(spec, tool, effects, sent, untrusted)
        rerun = (spec.id, index) in self.run.rerun_gates
        if spec.step.approval == "required" or rerun:  # the approver sees what it does
            called = (
                tool
                if (effects.side_effects, effects.egress) == (tool.side_effects, tool.egress)
                else replace(tool, side_effects=effects.side_effects, egress=effects.egress)
            )
            await self._approve(spec, called, args, item, rerun=rerun)
        cache = self.executor.tool_cache
        lookup = (
            cache.lookup(spec.step, tool, args, effects.side_effects, self.settings)
            if cache is not None
            else None
        )
        if lookup is not None:  # a read whose output may be kept from an earlier call
            assert cache is not None
            found = await cache.get(lookup)
            self._cached(state, "miss" if found is None else "hit")
            if found is not None:
                if found.untrusted:
                    state.provenance = tainted(state.provenance, found.untrusted)
                return self.run.keep(state, found.output, index)
        key = self.run.idempotency_key(spec.id, index)
        durable = self.run.durable
        retry = spec.step.retry
        attempts = retry.attempts if retry else 1
        timeout = spec.step.timeout or tool.timeout or self.settings.default_timeout
        limiter = self.executor.limiter(tool.name)
        backend = self.executor.backend
        call_site = CallSite(spec.step.resources or {}, raw)
        takes_call_site = self.executor.backend_takes_call_site
        spans = self.spans
        if spans is not None:
            spans.record_arguments(args)
            trace.get_current_span().set_attributes(
                {TOOL_SIDE_EFFECTS: effects.side_effects, TOOL_EGRESS: sent}
            )
        for attempt in range(1, attempts + 1):
            state.attempts += 1
            self.run.event(
                "attempt",
                state,
                side_effects=effects.side_effects,
                egress=sent,
                item=index,
                detail={"key": key} if tool.uses_idempotency_key else None,
            )
            if durable is not None and effects.side_effects == "write":
                # No write starts before what it depends on, and this attempt, is durable.
                await durable.flush()
            context = (
                ToolContext(
                    self.run.run_id,
                    spec.id,
                    attempt,
                    self.settings,
                    tuple(sorted(untrusted)),
                    allow_untrusted=spec.step.allow_untrusted,
                    idempotency_key=key,
                    progress=self._progress(state, index),
                )
                if tool.context_param
                else None
            )
            try:
                if limiter is not None:  # waiting for a slot is not part of the timeout
                    await limiter.acquire()
                try:
                    with anyio.move_on_after(timeout) as deadline:
                        output = await (
                            backend.call(tool, dict(args), context, call_site)
                            if takes_call_site
                            else backend.call(tool, dict(args), context)
                        )
                finally:
                    if limiter is not None:
                        limiter.release()
                    if context is not None and context.untrusted_output:
                        # what it read may be in its output or its error, even a partial one
                        state.provenance = tainted(state.provenance, context.untrusted_output)
                if deadline.cancelled_caught:
                    raise StepTimeoutError(
                        f"step '{spec.id}': tool '{tool.name}' did not finish within {timeout:g}s",
                        timeout=timeout,
                    )
                output, size = cut_and_size(
                    output.model_dump(mode="json") if isinstance(output, BaseModel) else output
                )
            except Exception as exc:
                if attempt == attempts or not retryable(exc, retry, tool):
                    raise
                if spans is not None:  # the attempt that will be retried, as an event
                    spans.record_retry(exc, attempt)
                await anyio.sleep(backoff(retry, attempt))
                continue
            if lookup is not None:
                assert cache is not None
                await cache.put(lookup, output, context.untrusted_output if context else [])
                self._cached(state, "store")
            # Outside the attempts: an output too large to keep is not asked for again.
            return self.run.keep(state, output, index, size)
        raise AssertionError("unreachable")  # pragma: no cover

    def _cached(self, state: StepState, outcome: str) -> None:
        """Say what the tool-result cache did for a call: on its span, and on its step (a
        foreach step's says hit only when every item's call was one)."""
        if outcome != "hit" or state.cache is None:
            state.cache = outcome
        if self.spans is not None:
            trace.get_current_span().set_attribute(CACHE, outcome)

    def _progress(
        self, state: StepState, index: int | None
    ) -> Callable[[float, float | None, str | None], None] | None:
        """What a tool calls to report its progress: a ``progress`` event of the step (the
        live table shows it), brought to the run's event loop from whatever thread the
        tool reports from."""
        run = self.run
        if run.journal is None:
            return None
        token = anyio.lowlevel.current_token()
        loop_thread = threading.get_ident()

        def emit(done: float, total: float | None, message: str | None) -> None:
            detail = {"done": done, "total": total, "message": message}
            run.event("progress", state, item=index, detail=detail)

        def report(done: float, total: float | None, message: str | None) -> None:
            if threading.get_ident() == loop_thread:
                emit(done, total, message)
                return
            with contextlib.suppress(Exception):  # the run ended meanwhile: nobody watches
                anyio.from_thread.run_sync(emit, done, total, message, token=token)

        return report

    def _check_policy(
        self,
        spec: CompiledStep,
        tool: Tool,
        effects: Effects,
        sent: tuple[str, ...],
        untrusted: frozenset[str],
    ) -> None:
        """Refuse untrusted data flowing into a write, and step outputs leaving the machine,
        unless the step opts in (``allow_untrusted``, ``allow_egress``)."""
        step = spec.step
        if effects.side_effects == "write" and untrusted and not step.allow_untrusted:
            raise PolicyBlockedError(
                f"step '{spec.id}': tool '{tool.name}' writes, and its arguments carry "
                f"untrusted data from {', '.join(sorted(untrusted))}; set 'allow_untrusted: "
                "true' on the step if that is intended",
                step=spec.id,
                untrusted=sorted(untrusted),
            )
        if step.allow_egress:
            return
        run = self.run
        for arg in sent:
            read = spec.arg_sources.get(arg, frozenset())
            inputs = (
                spec.arg_inputs.get(arg, frozenset())
                if run.input_taint or run.inputs_from_steps
                else frozenset()
            )
            from_caller = run.inputs_from_steps & inputs  # a sub-plan's, built by its caller
            if not read and not from_caller:
                continue  # written in the plan, or from its inputs
            what = f"step '{spec.id}': tool '{tool.name}' sends argument '{arg}' off this machine"
            tainted = self.taint(read) | run.tainted_inputs(inputs)
            if tainted:
                raise PolicyBlockedError(
                    f"{what}, and it carries untrusted data from {', '.join(sorted(tainted))}; "
                    "set 'allow_egress: true' on the step if that is intended",
                    step=spec.id,
                    argument=arg,
                    untrusted=sorted(tainted),
                )
            if effects.egress[arg] == "destination":
                if not read:  # an input of a sub-plan, built from its caller's step output
                    raise PolicyBlockedError(
                        f"{what}, and it is built from input"
                        f"{'s' if len(from_caller) > 1 else ''} "
                        f"{', '.join(repr(i) for i in sorted(from_caller))}, which the calling "
                        "plan built from a step's output, so it decides where data goes; set "
                        "'allow_egress: true' on the step if that is intended",
                        step=spec.id,
                        argument=arg,
                        inputs=sorted(from_caller),
                    )
                steps = ", ".join(f"'{sid}'" for sid in sorted(read))
                raise PolicyBlockedError(
                    f"{what}, and it is built from the output of step"
                    f"{'s' if len(read) > 1 else ''} {steps}, which so decides where data "
                    "goes; write the destination in the plan, or set 'allow_egress: true' on "
                    "the step if that is intended",
                    step=spec.id,
                    argument=arg,
                    steps=sorted(read),
                )

    async def _approve(
        self,
        spec: CompiledStep,
        tool: Tool,
        args: dict[str, Any],
        item: tuple[int, int] | None,
        *,
        rerun: bool = False,
    ) -> None:
        """Ask for this call's approval: a decision already in the journal stands, else the
        approver is asked; "later" (or no approver, with a durable journal) makes the step
        wait. ``rerun``: the call was running when the run stopped, and its tool may not
        run twice safely, so a person decides whether it runs again."""
        run = self.run
        index = None if item is None else item[0]
        durable = run.durable
        shown = cut_value(args)  # what a person is shown, and decides on
        decided = run.decisions.get((spec.id, index))
        if decided is not None and dumps(decided.args) != dumps(shown):
            decided = None  # decided on other arguments (the plan changed): asked again
        if decided is not None and decided.decision is not None:
            if decided.decision == "approved":
                return
            why = f": {decided.reason}" if decided.reason else ""
            raise PolicyBlockedError(
                f"step '{spec.id}': {'running it again' if rerun else 'approval'} was denied "
                f"by {decided.decided_by}{why}",
                step=spec.id,
                decided_by=decided.decided_by,
            )
        approver = self.executor.approver
        if rerun:
            answer: Any = LATER  # a person, not a policy, decides whether it may write twice
        elif approver is not None:
            answer = await call_approver(approver, spec.id, tool, args, item)
        elif durable is not None:
            answer = LATER
        else:
            raise PolicyBlockedError(
                f"step '{spec.id}' requires approval and no approver "
                "is configured (CLI: --yes approves every step)"
            )
        request = ApprovalRecord(
            run.run_id,
            spec.id,
            index,
            "rerun" if rerun else "approval",
            tool.name,
            shown,
            tool.side_effects,
            time.time(),
        )
        if answer == LATER:
            if durable is None:
                raise PolicyBlockedError(
                    f"step '{spec.id}': the approver answered 'later', and this run has no "
                    "durable journal to wait in (journal.enabled is false)"
                )
            durable.store.ask(request)
            raise StepWaiting
        if durable is not None:  # the approver's decision, kept with who made it
            request.decision = "approved" if answer else "denied"
            request.decided_by = approver_name(approver)
            request.decided_at = request.requested_at
            durable.store.ask(request)
        if not answer:
            raise PolicyBlockedError(f"step '{spec.id}': approval was denied")


class StepWaiting(Exception):
    """A call of the step waits for a person's decision."""


def item_hash(item: Any) -> str:
    """What a ``foreach`` item is, in short: a resumed run reuses an item's stored output
    only for the same item."""
    return hashlib.sha256(dumps(item).encode()).hexdigest()[:16]


class _ItemFailure(Exception):
    """One foreach item failed; the step reports that item's own error."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _arguments(
    spec: CompiledStep, tool: Tool, scope: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The step's arguments resolved in ``scope``, as they are and as the tool's model
    validated them."""
    try:
        raw = spec.args(scope)
    except EvaluationError as exc:
        raise EvaluationError(f"step '{spec.id}': args: {exc.message}") from None
    try:
        # The validated model's fields, by name (extra="forbid": nothing else is there).
        return raw, tool.args_model.model_validate(raw).__dict__
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}"
            + (f" (got {_quoted(e['input'])})" if e["type"] != "missing" else "")
            for e in exc.errors(include_url=False)
        )
        raise InvalidArgsError(
            f"step '{spec.id}': tool '{tool.name}' rejected its arguments: {problems}",
            tool=tool.name,
        ) from None


def _quoted(value: Any) -> str:
    """``value`` as an error message quotes it: its ``repr``, cut (with a marker) to a few
    hundred characters, so a huge argument does not make a huge error."""
    return repr(cut_value(value, depth=3, size=_QUOTED_SIZE))


def _effects(spec: CompiledStep, tool: Tool, args: dict[str, Any], settings: Any) -> Effects:
    """What this call does, as its tool says; a tool's own refusal (a SQL statement that
    cannot be read, say) stands, any other failure names the step and the tool."""
    try:
        return tool.call_effects(args, settings)
    except DagenticError:
        raise
    except Exception as exc:
        raise ToolError(
            f"step '{spec.id}': tool '{tool.name}' cannot tell what this call does: its "
            f"effects function raised {type(exc).__name__}: {exc}",
            tool=tool.name,
        ) from exc


def _provenance(spec: CompiledStep, untrusted: frozenset[str]) -> Provenance:
    """The provenance of a step whose inputs carry data from ``untrusted`` sources."""
    tool = spec.tool
    own = frozenset() if tool is None or tool.trusted else frozenset([tool.name])
    found = tuple(sorted(untrusted | own))
    return Provenance(
        trusted=not found,
        untrusted_from=found,
        source=f"tool:{tool.name}" if tool is not None else None,
    )
