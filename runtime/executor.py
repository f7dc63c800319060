"""The executor: runs compiled plans as DAGs on anyio (asyncio or trio).

:class:`Executor` holds what every run shares — tools, settings, the
:class:`~dagentic.backend.ExecutionBackend` tools run through, the optional
:class:`~dagentic.journal.Journal` told of every state change, the approver, the judge,
tracing, and per-tool concurrency limits — and starts one ``ActiveRun`` per plan run (see
``_active_run.py``: scheduling, the step pipeline, checks, spans and result assembly each
have a module of their own).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from anyio.lowlevel import RunVar

from ._active_run import ActiveRun
from ._inputs import resolve_inputs
from .backend import ExecutionBackend, backend_from_settings
from .cache.tools import ToolCache
from .durable import open_journal
from .errors import FailureMode, JournalError
from .graph import CompiledPlan, compile_plan, load_plan
from .journal import Journal
from .plan import Plan
from .plugin_manager import load_tools
from .result import ErrorInfo, RunResult, StepResult, StepStatus
from .settings import Settings
from .subplans import plan_folders
from .threads import run_in_thread, set_worker_threads
from .tools import Tool, ToolRegistry
from .tracing import Tracing, tracing_from_settings

if TYPE_CHECKING:
    from .durable import DurableJournal

__all__ = ["Approver", "Executor", "Judge", "Verdict", "resolve_inputs", "run_plan"]

SETTINGS: Any = object()  # "take it from the settings"


class Approver(Protocol):
    async def __call__(
        self, step_id: str, tool: Tool, args: dict[str, Any]
    ) -> bool | Literal["later"]:
        """Return True to let the call run; False refuses it (``policy_blocked``);
        ``"later"`` (:data:`dagentic.approvals.LATER`) lets it wait for a person: with a
        durable journal the step waits and the run ends ``waiting``, to be decided with
        ``dagentic approve``/``deny`` and resumed. ``tool`` carries what this call does
        (its per-call side effects and egress). An approver that also takes an ``item``
        keyword is told which ``foreach`` item the call is for, as ``(index, count)`` with
        ``index`` from 0, or None (see :mod:`dagentic.approvals`)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str = ""


class Judge(Protocol):
    async def __call__(self, criteria: str, evidence: dict[str, Any]) -> Verdict:
        """Decide whether ``evidence`` (outputs of the steps a check reads) meets
        ``criteria``."""


class Executor:
    """Runs plans. One executor can run many plans, one after another or at once.

    Args:
        tools: the tools steps may call.
        settings: concurrency, timeouts and limits (default: :class:`Settings` from files
            and environment).
        backend: where tool calls run (default: ``execution.backend`` of the settings, in
            process unless it says ray).
        journal: receives every state change (see :mod:`dagentic.journal`); default: the
            durable journal of the settings (``journal.*``), which :meth:`resume` reads.
            ``None`` keeps runs in memory only.
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
        journal: Journal | Any | None = SETTINGS,
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
        # Worker threads are the process's, shared by every executor (see threads.py).
        set_worker_threads(self.settings.worker_threads)
        self.backend = backend or backend_from_settings(self.settings)
        # A backend written before call sites existed takes (tool, args, context) only.
        self.backend_takes_call_site = (
            "call_site" in inspect.signature(self.backend.call).parameters
        )
        self.journal: Journal | None = (
            open_journal(self.settings) if journal is SETTINGS else journal
        )
        self.approver = approver
        self.judge = judge
        self.tool_cache = ToolCache.from_settings(self.settings)
        self.fail_fast = self.settings.fail_fast if fail_fast is None else fail_fast
        self._runs: dict[str, ActiveRun] = {}
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

    def compile(
        self,
        plan: Plan | CompiledPlan | Mapping[str, Any] | str | Path,
        *,
        source_file: str | None = None,
    ) -> CompiledPlan:
        """Validate ``plan`` against this executor's tools. Raises :class:`PlanError`.
        ``source_file``: the plan file ``plan`` was read from (its sub-plans' paths are
        relative to its folder)."""
        if isinstance(plan, CompiledPlan):
            return plan
        folders = partial(plan_folders, self.settings)  # read when a step names a plan
        judge = self.judge is not None
        if isinstance(plan, Path):
            return load_plan(plan, self.tools, judge=judge, plan_folders=folders)
        return compile_plan(
            plan, self.tools, judge=judge, plan_folders=folders, source_file=source_file
        )

    async def run(
        self,
        plan: Plan | CompiledPlan | Mapping[str, Any] | str | Path,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        reuse: Mapping[str, StepResult] | None = None,
        trace_attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> RunResult:
        """Run ``plan`` to the end and return its :class:`RunResult`.

        A run whose caller is cancelled cancels every running step and re-raises the
        cancellation; :meth:`cancel` ends a run early and still returns its result.
        ``reuse`` maps step ids to results of an earlier run that stand for this run's
        steps (a replan keeps what succeeded): those steps are not run again. A
        ``run_id`` of a run already in the durable journal starts that run anew (what the
        journal held of it is forgotten; :meth:`resume` keeps it), unless it is running
        elsewhere: then :class:`~dagentic.JournalError`.
        ``trace_attributes`` are added to the run's span; ``parent_id`` is the run (an
        agent run) this one is part of, in the journal.
        """
        compiled = self.compile(plan)
        values = resolve_inputs(compiled.plan, inputs or {})
        durable = self.durable
        if run_id is not None and durable is not None:
            await run_in_thread(durable.store.claim, run_id)
        run = ActiveRun(
            self,
            compiled,
            values,
            run_id or uuid.uuid4().hex,
            timeout=timeout,
            reuse=reuse,
            trace_attributes=trace_attributes,
            parent_id=parent_id,
        )
        self._runs[run.run_id] = run
        try:
            return await run.execute()
        finally:
            del self._runs[run.run_id]

    @property
    def durable(self) -> DurableJournal | None:
        """The durable journal among this executor's journals, if any."""
        return getattr(self.journal, "durable", None)

    async def resume(
        self,
        run_id: str,
        *,
        plan: Plan | CompiledPlan | Mapping[str, Any] | str | Path | None = None,
        plan_changed: Literal["refuse", "rerun"] = "refuse",
        timeout: float | None = None,
    ) -> RunResult:
        """Go on with a run of the durable journal that crashed, was cancelled, or waits.

        Steps that succeeded are not run again: their stored outputs (and provenance) feed
        the steps after them, and so do the ``foreach`` items that succeeded. A call that
        was running when the run stopped runs again if that is safe (its tool is
        idempotent or uses :attr:`~dagentic.ToolContext.idempotency_key`); any other waits
        for a person (``dagentic approve``). Decisions made on approvals
        stand. ``plan``: the plan as it is now (a plan file that may have changed); if its
        steps differ from the run's, resuming is refused naming them, unless
        ``plan_changed="rerun"``: then the succeeded steps that did not change (nor what
        they read) are reused and the rest run. Raises :class:`~dagentic.JournalError`
        when the run is not in the journal, has finished, or another process runs it."""
        from .durable import durable_of
        from .durable.resume import changed_steps, resumption

        durable = durable_of(self.journal, "executor")
        store = durable.store
        record, owner = await durable.claim_run(run_id)
        try:
            stored = self.compile(record.plan, source_file=record.plan_file)
            compiled = stored if plan is None else self.compile(plan)
            changed = changed_steps(stored, compiled) if plan is not None else []
            if changed and plan_changed != "rerun":
                raise JournalError(
                    f"the plan of run '{run_id}' changed since it started (steps: "
                    f"{', '.join(changed)}); resume with plan_changed='rerun' (CLI: "
                    "--plan-changed rerun) to run the changed steps and reuse the rest",
                    changed=changed,
                )
            reuse, resumed = await run_in_thread(
                resumption, store, run_id, owner, stored, compiled, changed
            )
        except BaseException:
            await run_in_thread(store.release_lease, run_id, owner)
            raise
        run = ActiveRun(
            self,
            compiled,
            dict(record.inputs),
            run_id,
            timeout=timeout,
            reuse=reuse,
            resumed=resumed,
            kind=record.kind,
            parent_id=record.parent_id,
        )
        self._runs[run_id] = run
        try:
            return await run.execute()
        finally:
            del self._runs[run_id]

    def cancel(self, run_id: str | None = None) -> None:
        """Cancel one run (or every active run): running steps are cancelled and the run
        returns with status ``cancelled``."""
        for rid, run in list(self._runs.items()):
            if run_id is None or rid == run_id:
                run.stop(
                    StepStatus.CANCELLED,
                    ErrorInfo(failure_mode=FailureMode.CANCELLED, message="the run was cancelled"),
                )


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
