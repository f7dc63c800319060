"""One run of a compiled plan while it runs: the bookkeeping the executor's parts share.

:class:`ActiveRun` (after Dagster's ``ActiveExecution``) holds the state of every step, the
views expressions read (``steps.<id>.output``), why the run stopped and its clock. It
starts and ends the run, reports every state change to the journal, and leaves each job to
its own module:

- :mod:`._scheduler`: the ready queue and the workers that drain it;
- :mod:`._pipeline`: what running one step means (``when``, ``foreach``, arguments,
  policy, approval, the backend call, timeouts and retries);
- :mod:`._checks`: reflection checkpoints (``check:`` steps);
- :mod:`._run_spans`: the spans of the run, its steps and their foreach items;
- :mod:`._assembly`: the :class:`RunResult` and its :class:`StepResult` objects.

What a run keeps is bounded: every step output it holds (each ``foreach`` item's as it
arrives, a reused step's too) is paid for out of one budget of
``settings.max_run_output_size`` characters and items (:meth:`ActiveRun.keep`), and given
back when the step fails or runs again.

A journal that can resume a run gives :class:`ActiveRun` the finished steps as ``reuse``:
they are not run again. A backend that runs tools elsewhere (Ray) plugs in below the
pipeline, at :class:`~dagentic.backend.ExecutionBackend`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._assembly import run_result, step_result
from ._pipeline import StepPipeline
from ._run_spans import RunSpans
from ._scheduler import Scheduler
from .bounds import deep_size
from .durable.resume import Resumption, StoredItem
from .durable.store import ApprovalRecord, owner_id
from .errors import FailureMode, JournalError, ResourceLimitError
from .graph import CompiledPlan, CompiledStep
from .journal import StepEvent
from .result import ErrorInfo, RunResult, RunStatus, StepResult, StepStatus

if TYPE_CHECKING:
    from .durable import DurableJournal
    from .executor import Executor

_EXECUTORS: Any = object()  # "the executor's"
_PENDING, _FAILED, _SKIPPED, _CANCELLED, _WAITING = (
    StepStatus.PENDING,
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.CANCELLED,
    StepStatus.WAITING,
)


class StepState:
    """Mutable bookkeeping of one step during one run."""

    __slots__ = (
        "attempts",
        "cache",
        "error",
        "finished",
        "kept",
        "output",
        "pending",
        "provenance",
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
        self.kept = 0  # what its output (its foreach items' so far) takes of the run's budget
        self.error: ErrorInfo | None = None
        self.attempts = 0
        self.cache: str | None = None  # hit, miss or store: what the tool-result cache did
        self.started: float | None = None
        self.finished: float | None = None
        self.pending = len(spec.deps)
        self.provenance = spec.provenance  # as the plan says; the run makes it exact
        self.unclean = False  # a dependency ended without succeeding
        self.result: StepResult | None = None  # built when the step finishes
        self.span: Any = None  # its span while it runs, when tracing
        self.waited_for: str | None = None  # the dependency that finished last


class ActiveRun:
    """One run of ``plan`` by ``executor``: create, :meth:`execute` once, :meth:`stop` to
    end it early."""

    def __init__(
        self,
        executor: Executor,
        plan: CompiledPlan,
        inputs: dict[str, Any],
        run_id: str,
        *,
        timeout: float | None = None,
        reuse: Mapping[str, StepResult] | None = None,
        trace_attributes: Mapping[str, Any] | None = None,
        resumed: Resumption | None = None,
        kind: str = "plan",
        parent_id: str | None = None,
        journal: Any = _EXECUTORS,
        input_taint: Mapping[str, frozenset[str]] | None = None,
        inputs_from_steps: frozenset[str] = frozenset(),
    ) -> None:
        self.executor = executor
        self.plan = plan
        self.run_id = run_id
        self.timeout = timeout
        # A sub-plan's run (see _subrun.py) has no journal of its own: its step has.
        self.journal = executor.journal if journal is _EXECUTORS else journal
        # A sub-plan's inputs built from its caller's data: the untrusted sources each
        # carries, and those built from a step's output.
        self.input_taint: Mapping[str, frozenset[str]] = input_taint or {}
        self.inputs_from_steps = inputs_from_steps
        self.sub_usage = [0, 0]  # steps and tool calls of its sub-plans' runs
        self.durable: DurableJournal | None = getattr(self.journal, "durable", None)
        self.resumed = resumed
        self.kind, self.parent_id = kind, parent_id
        self.owner = resumed.owner if resumed is not None else owner_id() if self.durable else ""
        # what a resumed run takes from its journal: foreach items done, calls a person
        # must allow to run again, and decisions made on approvals
        self.done_items: dict[str, dict[int, StoredItem]] = resumed.items if resumed else {}
        self.rerun_gates: set[tuple[str, int | None]] = resumed.gates if resumed else set()
        self.decisions: dict[tuple[str, int | None], ApprovalRecord] = (
            resumed.decisions if resumed else {}
        )
        self.settings = executor.settings
        self.reuse: dict[str, StepResult] = dict(reuse or {})  # steps that need not run
        self.states = {sid: StepState(spec) for sid, spec in plan.steps.items()}
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
        self.output_limit: int = self.settings.max_run_output_size
        self.output_left = self.output_limit  # what the step outputs may still take
        self.tg: anyio.abc.TaskGroup | None = None
        self.stop_status: StepStatus | None = None
        self.stop_error: ErrorInfo | None = None
        self.replan_requested: list[str] = []
        self.t0 = 0.0
        self.started_at = datetime.now(UTC)  # reset when the run starts
        self.deadline = float("inf")
        tracing = executor.tracing
        self.spans = RunSpans(self, tracing, trace_attributes) if tracing is not None else None
        self.pipeline = StepPipeline(self)
        self.scheduler = Scheduler(self)

    # -- lifecycle ---------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run every step that can run and return the result."""
        self.t0 = time.perf_counter()
        self.started_at = datetime.now(UTC)
        spans = self.spans
        root = spans.start_run() if spans is not None else None
        try:
            result = await self._run_all()
        except Exception as exc:  # the runtime itself broke (a journal raised, say)
            if spans is not None:
                spans.end_run(RunStatus.FAILED, ErrorInfo.from_exception(exc), root)
            raise
        except BaseException:
            if spans is not None:
                spans.end_run(
                    RunStatus.CANCELLED,
                    ErrorInfo(
                        failure_mode=FailureMode.CANCELLED,
                        message="the run was cancelled by its caller",
                    ),
                    root,
                )
            raise
        if spans is not None:
            spans.end_run(result.status, result.error, root)
        return result

    async def _run_all(self) -> RunResult:
        durable = self.durable
        if durable is not None:
            durable.start_run(
                self.run_id,
                self.plan,
                self.scope["inputs"],
                owner=self.owner,
                kind=self.kind,
                parent_id=self.parent_id,
                last_seq=self.resumed.last_seq if self.resumed is not None else 0,
            )
        self.event("run_started")
        self.deadline = deadline = (
            float("inf") if self.timeout is None else anyio.current_time() + self.timeout
        )
        try:
            if durable is None:
                scope = await self._schedule(deadline)
            else:
                async with anyio.create_task_group() as keeper:
                    keeper.start_soon(self._keep_lease, durable)
                    scope = await self._schedule(deadline)
                    keeper.cancel_scope.cancel()
        except BaseException:
            error = ErrorInfo(
                failure_mode=FailureMode.CANCELLED,
                message="the run was cancelled by its caller",
            )
            self.close_unfinished(error)
            self.event("run_finished", status=RunStatus.CANCELLED)
            if durable is not None:
                with anyio.CancelScope(shield=True):
                    await self._end_durably(durable, RunStatus.CANCELLED, error, None)
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
        waits = self.stop_status is None and any(s.status is _WAITING for s in self.states.values())
        if not waits:  # a waiting run's other steps wait with it
            self.close_unfinished(
                self.stop_error
                or ErrorInfo(
                    failure_mode=FailureMode.CANCELLED, message="the run ended before this step"
                )
            )
        result = run_result(self)
        self.event("run_finished", status=result.status.value, error=result.error)
        if durable is not None:
            failure = await self._end_durably(durable, result.status, result.error, result.outputs)
            if failure is not None:  # it is not durable: it did not succeed
                result = result.model_copy(
                    update={"status": RunStatus.FAILED, "error": result.error or failure}
                )
        return result

    async def _schedule(self, deadline: float) -> anyio.CancelScope:
        """Run the steps until none is left or ``deadline`` passes; the deadline's scope."""
        with anyio.CancelScope(deadline=deadline) as scope:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self.scheduler.start(tg)
        return scope

    async def _end_durably(
        self, durable: DurableJournal, status: str, error: Any, outputs: Any
    ) -> ErrorInfo | None:
        """Record the run's end and wait until the journal has it: a run is reported
        succeeded only once its journal says so. The journal's failure, if it failed."""
        try:
            durable.end_run(self.run_id, status, error, outputs)
            await durable.flush()
        except JournalError as exc:
            return ErrorInfo.from_exception(exc)
        return None

    async def _keep_lease(self, durable: DurableJournal) -> None:
        """Renew the run's lease while it runs, three times per lease."""
        while True:
            await anyio.sleep(durable.lease / 3)
            try:
                durable.renew(self.run_id, self.owner)
            except JournalError as exc:
                self.stop(_FAILED, ErrorInfo.from_exception(exc))
                return

    def stop(self, status: StepStatus, error: ErrorInfo) -> None:
        """End the run early: running steps are cancelled, nothing new starts."""
        if self.stop_status is None:
            self.stop_status, self.stop_error = status, error
        if self.tg is not None:
            self.tg.cancel_scope.cancel()

    def close_unfinished(self, error: ErrorInfo) -> None:
        """Give every step the run left unfinished its end: ``error`` for those that never
        started, the run's end as their finish time for those that did."""
        now = time.perf_counter()
        for state in self.states.values():
            if state.status in (_PENDING, _CANCELLED) or state.finished is None:
                state.result = None
            if state.status is _PENDING:
                state.status, state.error = _CANCELLED, error
                if self.spans is not None:  # a step that never started: an instant span
                    self.spans.end_step(state)
            if state.status is _CANCELLED and state.error is None:
                state.error = error
            if state.started is not None and state.finished is None:
                state.finished = now

    def idempotency_key(self, step_id: str, item: int | None) -> str:
        """The key of a call (see :attr:`~dagentic.ToolContext.idempotency_key`): the same
        for every attempt and resume; a step a changed plan made another call gets a new
        one."""
        resumed = self.resumed
        if resumed is not None:
            kept = resumed.keys.get((step_id, item))
            if kept is not None:
                return kept
            suffix = resumed.rekeyed.get(step_id, "")
        else:
            suffix = ""
        return f"{self.run_id}/{step_id}" + ("" if item is None else f"/{item}") + suffix

    def tainted_inputs(self, names: frozenset[str] | set[str]) -> frozenset[str]:
        """The untrusted sources the plan inputs ``names`` carry (a sub-plan's, built from
        its caller's data; nothing for inputs a person gave)."""
        taint = self.input_taint
        if not taint or not names:
            return frozenset()
        return frozenset().union(*(taint.get(name, frozenset()) for name in names))

    # -- what the run keeps ------------------------------------------------------------

    def keep(
        self, state: StepState, output: Any, item: int | None = None, size: int | None = None
    ) -> Any:
        """``output`` (``state``'s, or its ``foreach`` item ``item``'s), paid for out of the
        run's output budget before the run holds it: its :func:`~dagentic.bounds.deep_size`
        (``size`` when the caller measured it already), and an item's place in the step's
        list. Raises :class:`ResourceLimitError` when it does not fit; the output is then
        not kept."""
        left = self.output_left
        if size is None:
            size = deep_size(output, left)
        if item is not None:
            size += 1
        if size > left:
            raise self.over_budget(state, item)
        self.output_left = left - size
        state.kept += size
        return output

    def can_keep(self, item: int | None = None) -> bool:
        """Whether the smallest output (one ``null``; an item's place too) still fits:
        when not, the step's tool need not be called."""
        return self.output_left >= (1 if item is None else 2)

    def over_budget(self, state: StepState, item: int | None = None) -> ResourceLimitError:
        """The error of ``state`` (its item ``item``) returning more than the run may keep.
        The step names itself; ``foreach`` puts ``item N:`` after it."""
        sid, limit = state.spec.id, self.output_limit
        return ResourceLimitError(
            f"step '{sid}': its output would take the step outputs this run keeps past "
            f"{limit:,} characters and items, the most a run keeps (setting "
            f"max_run_output_size; {limit - self.output_left:,} kept before it); return less "
            "per step (a filter, a limit) or split the plan into smaller runs",
            step=sid,
            **({"item": item} if item is not None else {}),
            limit=limit,
        )

    def release(self, state: StepState) -> None:
        """``state``'s output is dropped (the step failed, or runs again): give back what
        it took of the budget."""
        self.output_left += state.kept
        state.kept = 0

    # -- state changes -----------------------------------------------------------------

    def publish(self, state: StepState) -> None:
        """A step finished (or was skipped): what expressions read of it, its result, its
        span's end and the journal's event."""
        view = self.views[state.spec.id]
        view["output"] = state.output
        view["status"] = state.status.value
        view["error"] = state.error.message if state.error else None
        view["attempts"] = state.attempts
        if state.started is not None and state.finished is not None:
            view["duration"] = state.finished - state.started
        # Built now, while other steps are still waiting, not all at the end of the run.
        state.result = step_result(self, state)
        if self.spans is not None:
            self.spans.end_step(state)
        self.event("skipped" if state.status is _SKIPPED else "finished", state)

    def event(self, kind: Any, state: StepState | None = None, **extra: Any) -> None:
        """Tell the journal (if any) about a state change of the run or of ``state``
        (``extra``: more fields of the :class:`StepEvent`)."""
        journal = self.journal
        if journal is None:
            return
        try:
            if state is None:
                journal.record(StepEvent(kind, self.run_id, **extra))
            elif extra:
                extra.setdefault("status", state.status.value)
                extra.setdefault("output", state.output)
                journal.record(
                    StepEvent(
                        kind,
                        self.run_id,
                        state.spec.id,
                        attempt=state.attempts,
                        error=state.error,
                        provenance=state.provenance,
                        **extra,
                    )
                )
            else:  # the common case, for every step: positional is cheapest
                journal.record(
                    StepEvent(
                        kind,
                        self.run_id,
                        state.spec.id,
                        state.attempts,
                        state.status.value,
                        state.output,
                        state.error,
                        time.time(),
                        None,
                        (),
                        None,
                        state.provenance,
                    )
                )
        except JournalError as exc:  # the run cannot stay durable: it stops here
            if self.stop_status is None:
                self.stop(_FAILED, ErrorInfo.from_exception(exc))
