"""The runs of ``dagentic serve``: started, resumed, cancelled and decided in the server's
event loop, every one kept in the durable journal.

:class:`RunManager` owns one :class:`~dagentic.Executor` (the settings' tools, the
durable journal, no approver: a step that needs approval waits in the journal) and a task
group that lives as long as the app. A submitted run is answered once the journal has
committed its start, so a run the API accepted outlives the server: at start, and every
few seconds after, the manager goes on with the journal's interrupted runs (as ``dagentic
resume`` would), and with the waiting runs whose every waiting call was decided. On a
clean stop the runs it was running are handed back to the journal as interrupted (owner
none), for the next start, or ``dagentic resume``, to go on with.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import DagenticError, FailureMode, JournalError
from ..journal import Journals, StepEvent, get_logger
from ..redact import redact
from ..result import ErrorInfo
from ..threads import run_in_thread

if TYPE_CHECKING:
    from ..agent import Agent
    from ..durable import ApprovalRecord, DurableJournal, RunRecord, RunStore
    from ..executor import Executor
    from ..graph import CompiledPlan
    from ..settings import Settings
    from ..tools import ToolRegistry

__all__ = ["FINAL", "ApiError", "Hub", "RunManager", "approval_id", "parse_approval_id"]

FINAL = frozenset({"succeeded", "failed", "cancelled"})
_EVENTS_PAGE = 500  # events one read of a stream takes at most


class ApiError(Exception):
    """What a request gets instead of its answer: an HTTP status and an exact message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def approval_id(a: ApprovalRecord) -> str:
    """The id of a waiting call in the API: ``RUN_ID:STEP_ID``, ``:ITEM`` for a foreach item."""
    return f"{a.run_id}:{a.step_id}" + ("" if a.item is None else f":{a.item}")


def parse_approval_id(given: str) -> tuple[str, str, int | None] | None:
    """``(run_id, step_id, item)`` of an approval id, or None if it is not one."""
    import re

    from ..plan import STEP_ID_PATTERN

    rest, _, tail = given.rpartition(":")
    item = None
    if tail.isdigit() and tail.isascii() and len(tail) < 10:
        item = int(tail)
        rest, _, tail = rest.rpartition(":")
    if not rest or not re.match(STEP_ID_PATTERN, tail):
        return None
    return rest, tail, item


class Hub:
    """A journal that wakes whoever follows a run when the run has news (the events
    themselves are read back from the durable journal, so that their ids are its
    sequence numbers)."""

    def __init__(self) -> None:
        self._news: dict[str, anyio.Event] = {}
        self._started: dict[str, anyio.Event] = {}

    def record(self, event: StepEvent) -> None:
        if event.kind == "run_started":
            started = self._started.pop(event.run_id, None)
            if started is not None:
                started.set()
        if event.kind != "progress":
            self.wake(event.run_id)

    def wake(self, run_id: str) -> None:
        news = self._news.pop(run_id, None)
        if news is not None:
            news.set()

    def news(self, run_id: str) -> anyio.Event:
        """An event set at the run's next news."""
        news = self._news.get(run_id)
        if news is None:
            if len(self._news) >= 10_000:  # runs followed once and never again: let go
                for old in list(self._news):
                    self.wake(old)  # whoever waits reads the journal again, and waits anew
            news = self._news[run_id] = anyio.Event()
        return news

    def expect(self, run_id: str) -> anyio.Event:
        """An event set when run ``run_id`` starts."""
        started = self._started[run_id] = anyio.Event()
        return started

    def forget(self, run_id: str) -> None:
        started = self._started.pop(run_id, None)
        if started is not None:
            started.set()
        self.wake(run_id)


@dataclass(slots=True)
class _Active:
    kind: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancelled: bool = False  # by a request, not by the server stopping


class RunManager:
    """Starts, follows, decides and cancels the server's runs (see the module's doc).

    Args:
        settings: the server's settings (``serve.*``, ``journal.*``, everything a run uses).
        tools: every installed tool (a stored plan compiles with them).
        models: makes the models ``ask`` plans with (default: the settings' models),
            called once, when the first agent run needs them.
    """

    def __init__(
        self,
        settings: Settings,
        tools: ToolRegistry,
        *,
        models: Callable[[], Any] | None = None,
    ) -> None:
        from ..durable import open_journal
        from ..executor import Executor
        from ..tools import ToolRegistry
        from .plans import allowed_tool

        durable = open_journal(settings)
        if durable is None:
            raise DagenticError(
                "dagentic serve keeps every run in the durable journal, and it is off "
                "(journal.enabled is false): turn it on"
            )
        self.settings = settings
        self.tools = tools
        self.api_tools = ToolRegistry(t for t in tools if allowed_tool(settings, t.name))
        self.durable: DurableJournal = durable
        self.store: RunStore = durable.store
        self.hub = Hub()
        self.journal = Journals(durable, self.hub)
        self.executor: Executor = Executor(
            tools, settings=settings, journal=self.journal, approver=None
        )
        self._models_factory = models
        self._models: Any = None
        self.active: dict[str, _Active] = {}
        self._skip: dict[str, float] = {}  # runs not to resume again until they change
        self._stopped: dict[str, _Active] = {}  # runs the server's stop cancelled
        self._failures: dict[str, str] = {}  # why a run could not start
        self._tg: anyio.abc.TaskGroup | None = None
        self.log = get_logger("dagentic.serve")
        lease = settings.journal.lease
        self.recover_every = min(max(lease / 3, 0.5), 10.0)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled: the runs, and the loop that resumes what the journal holds
        (``serve.resume``). On the way out, hand the runs it ran back to the journal."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.settings.serve.resume:
                    tg.start_soon(self._recover_forever)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._hand_back()

    async def _hand_back(self) -> None:
        """The runs this server was running when it stopped, interrupted in the journal
        (not cancelled): the next server, or ``dagentic resume``, goes on with them."""
        stopped = [rid for rid, a in self._stopped.items() if not a.cancelled]
        self._stopped.clear()
        if not stopped:
            return
        try:
            await self.durable.flush()
            for run_id in stopped:
                await run_in_thread(
                    self.store.change,
                    "UPDATE runs SET status = 'running', owner = NULL, lease_until = NULL, "
                    "finished_at = NULL, error_json = NULL WHERE run_id = ? AND status = "
                    "'cancelled'",
                    (run_id,),
                )
        except JournalError as exc:
            self.log.error("runs not handed back", error=exc.message, runs=stopped)

    def _group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise ApiError(503, "the server is stopping: no run starts now")
        return self._tg

    def _room(self) -> None:
        limit = self.settings.serve.max_active_runs
        if len(self.active) >= limit:
            raise ApiError(
                503,
                f"the server runs {len(self.active)} run{'' if len(self.active) == 1 else 's'} "
                f"already (serve.max_active_runs is {limit}): try again when some have ended",
            )

    # -- starting runs --------------------------------------------------------------------

    async def submit(self, compiled: CompiledPlan, inputs: dict[str, Any]) -> str:
        """Start a run of ``compiled``; its id once the journal has committed its start."""
        self._room()
        self._group()
        run_id = uuid.uuid4().hex
        started = self.hub.expect(run_id)
        self._launch(run_id, "plan", partial(self.executor.run, compiled, inputs, run_id=run_id))
        await started.wait()
        await self._committed(run_id)
        return run_id

    async def ask(self, goal: str) -> str:
        """Start an agent run for ``goal``; its id once the journal has its start."""
        self._room()
        self._group()
        agent = await self._agent()
        run_id = uuid.uuid4().hex
        self._launch(run_id, "agent", partial(agent.run, goal, run_id=run_id))
        with anyio.move_on_after(10):  # the agent records its start once its task runs
            while run_id in self.active:
                await anyio.sleep(0.005)
                await self.durable.flush()
                if await run_in_thread(self.store.run, run_id) is not None:
                    break
        await self._committed(run_id)
        return run_id

    async def _committed(self, run_id: str) -> None:
        """Wait until the journal has committed what it was told of the run (its start);
        a 500 naming why when the run ended before it started."""
        await self.durable.flush()
        if run_id in self.active and run_id not in self._failures:
            return
        if await run_in_thread(self.store.run, run_id) is None:
            failure = self._failures.pop(run_id, "it ended before the journal had it")
            raise ApiError(500, f"run {run_id} could not start: {failure}")

    async def _agent(self) -> Agent:
        from ..agent import Agent

        if self._models is None:
            if self._models_factory is not None:
                from ..models.gateway import Models

                made = self._models_factory()
                self._models = made if isinstance(made, Models) else Models(made)
            else:
                from ..models import make_models

                try:
                    self._models = make_models(self.settings, None)
                except DagenticError as exc:
                    raise ApiError(503, exc.message) from exc
        memory = None
        if self.settings.memory.enabled:
            from ..memory import open_memory

            memory = open_memory(self.settings, self._models.for_purpose("memory"))
        return Agent(
            self._models,
            self.api_tools,
            settings=self.settings,
            journal=self.journal,
            approver=None,
            memory=memory,
            tracing=self.executor.tracing,
        )

    def _launch(self, run_id: str, kind: str, start: Callable[[], Awaitable[Any]]) -> None:
        """Run ``start()`` (a run, a resumption, an agent run) as run ``run_id``, in the
        server's task group; it counts as active from now on."""
        tg = self._group()
        active = self.active[run_id] = _Active(kind)
        tg.start_soon(self._drive, run_id, active, start)

    async def _drive(
        self, run_id: str, active: _Active, start: Callable[[], Awaitable[Any]]
    ) -> None:
        result: Any = None
        try:
            with active.scope:
                result = await start()
        except DagenticError as exc:
            self._failed(run_id, exc.message)
        except anyio.get_cancelled_exc_class():
            self._stopped[run_id] = active
            raise
        except Exception as exc:  # noqa: BLE001 - one run's bug must not stop the server
            self._failed(run_id, f"{type(exc).__name__}: {exc}")
        finally:
            self.active.pop(run_id, None)
            self.hub.forget(run_id)
        if result is not None and str(getattr(result, "status", "")) == "waiting":
            await self.continue_if_decided(run_id)

    def _failed(self, run_id: str, message: str) -> None:
        """Keep why run ``run_id`` could not be run (a submit answers with it), and log it."""
        if len(self._failures) >= 1000:
            self._failures.clear()
        self._failures[run_id] = message
        self.log.warning("run not run", run_id=run_id, error=message)

    # -- going on with the journal's runs -------------------------------------------------

    async def _recover_forever(self) -> None:
        while True:
            try:
                await self.recover()
            except JournalError as exc:
                self.log.error("the journal cannot be read", error=exc.message)
            await anyio.sleep(self.recover_every)

    async def recover(self) -> list[str]:
        """Resume every run of the journal that nobody runs and that can go on; their ids."""
        records = await run_in_thread(
            partial(self.store.runs, status=["running", "waiting"], limit=10_000)
        )
        resumed = []
        for record in reversed(records):  # oldest first
            if record.run_id in self.active or self._skip.get(record.run_id) == record.updated_at:
                continue
            if record.parent_id is not None:
                parent = await run_in_thread(self.store.run, record.parent_id)
                if parent is not None and parent.kind == "agent":
                    continue  # its agent goes on, and runs it
            if record.status == "running" and not record.interrupted:
                continue
            if record.status == "waiting" and await self._undecided(record):
                continue
            if len(self.active) >= self.settings.serve.max_active_runs:
                break
            self._skip[record.run_id] = record.updated_at
            self.log.info("resuming run", run_id=record.run_id, was=record.shown_status)
            self.resume(record)
            resumed.append(record.run_id)
        return resumed

    async def _undecided(self, record: RunRecord) -> bool:
        """Whether a call of the run (or of its agent's plan runs) waits for a decision."""
        if await run_in_thread(self.store.approvals, record.run_id):
            return True
        if record.kind != "agent":
            return False
        children = await run_in_thread(partial(self.store.runs, parent_id=record.run_id))
        for child in children:
            if await run_in_thread(self.store.approvals, child.run_id):
                return True
        return False

    def resume(self, record: RunRecord) -> None:
        """Go on with ``record``'s run in this server (as ``dagentic resume`` would)."""
        if record.kind == "agent":

            async def again() -> Any:
                agent = await self._agent()
                return await agent.resume(record.run_id)

            self._launch(record.run_id, "agent", again)
            return
        plan = None
        if record.plan_file is not None and Path(record.plan_file).is_file():
            plan = Path(record.plan_file)  # a changed plan is refused, naming its steps
        self._launch(record.run_id, "plan", partial(self.executor.resume, record.run_id, plan=plan))

    async def continue_if_decided(self, run_id: str) -> bool:
        """Resume run ``run_id`` (or the agent run it is part of) if it waits and nothing
        of it waits for a decision any more; whether it was resumed."""
        record = await run_in_thread(self.store.run, run_id)
        if record is not None and record.parent_id is not None:
            parent = await run_in_thread(self.store.run, record.parent_id)
            if parent is not None and parent.kind == "agent":
                record = parent
        if record is None or record.run_id in self.active or record.status != "waiting":
            return False
        if await self._undecided(record) or self._tg is None:
            return False
        self._skip[record.run_id] = record.updated_at
        self.resume(record)
        # answered once the journal shows it running: a client that reads it next sees it go on
        with anyio.move_on_after(10):
            while record.run_id in self.active:
                await self.durable.flush()
                now = await run_in_thread(self.store.run, record.run_id)
                if now is None or now.status != "waiting":
                    break
                await anyio.sleep(0.01)
        return True

    # -- requests about runs --------------------------------------------------------------

    async def cancel(self, run_id: str) -> str:
        """Cancel run ``run_id``: ``cancelling`` if this server runs it (it ends
        ``cancelled`` soon), ``cancelled`` if it waited or was interrupted."""
        active = self.active.get(run_id)
        if active is not None:
            active.cancelled = True
            if active.kind == "plan" and run_id in self.executor._runs:  # a clean end
                self.executor.cancel(run_id)
            else:
                active.scope.cancel()
            return "cancelling"
        record = await run_in_thread(self.store.run, run_id)
        if record is None:
            raise ApiError(404, f"there is no run '{run_id}' in the journal")
        status = record.shown_status
        if status in FINAL:
            raise ApiError(409, f"run '{run_id}' {status} already: there is nothing to cancel")
        if status == "running":
            raise ApiError(
                409,
                f"run '{run_id}' is being run by another process ({record.owner}): cancel it there",
            )
        try:
            await self.durable.claim_run(run_id, record.kind)
        except JournalError as exc:
            raise ApiError(409, exc.message) from exc
        self.durable.end_run(
            run_id,
            "cancelled",
            ErrorInfo(
                failure_mode=FailureMode.CANCELLED, message="the run was cancelled through the API"
            ),
            None,
        )
        await self.durable.flush()
        self.hub.wake(run_id)
        return "cancelled"

    async def decide(
        self, given: str, *, approve: bool, reason: str | None, by: str
    ) -> dict[str, Any]:
        """Record a decision on waiting call ``given`` (an approval id); the run goes on
        once nothing of it waits any more."""
        parsed = parse_approval_id(given)
        if parsed is not None:
            run_id, step_id, item = parsed
            record = await run_in_thread(self.store.run, run_id)
            if record is not None and record.status in FINAL:
                raise ApiError(
                    409, f"run '{run_id}' {record.status} already: nothing of it waits any more"
                )
            decided = await run_in_thread(
                partial(
                    self.store.decide,
                    run_id,
                    step_id,
                    item,
                    approved=approve,
                    by=by,
                    reason=reason,
                )
            )
        if parsed is None or not decided:
            raise ApiError(
                404,
                f"nothing waits for a decision as '{given[:300]}': GET /api/approvals lists "
                "what waits, with its id",
            )
        resumed = await self.continue_if_decided(run_id)
        self.hub.wake(run_id)
        left = await run_in_thread(self.store.approvals, run_id)
        return {
            "id": given,
            "run_id": run_id,
            "step_id": step_id,
            "item": item,
            "decision": "approved" if approve else "denied",
            "decided": decided,
            "waiting": [approval_id(a) for a in left],
            "resumed": resumed or run_id in self.active,
        }

    # -- following a run ------------------------------------------------------------------

    async def follow(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """A run's events after the ``after`` th, as server-sent events: ``step`` events
        from the journal (their ids its sequence numbers), ``record`` events of an agent
        run, a ``run`` event when it starts to wait, and one with its final status, last."""
        last = after
        told: str | None = None
        while True:
            news = self.hub.news(run_id)
            record = await run_in_thread(self.store.run, run_id)
            if record is None:
                return
            if record.kind == "agent":
                rows = await run_in_thread(self._records_after, run_id, last)
            else:
                rows = await run_in_thread(self._events_after, run_id, last)
            for seq, kind, data in rows:
                last = seq
                yield {
                    "id": str(seq),
                    "event": kind,
                    "data": redact(json.dumps(data, ensure_ascii=True)),
                }
            if len(rows) >= _EVENTS_PAGE:
                continue  # more to send before news is waited for
            status = record.shown_status
            if status in FINAL or (status != told and status in ("waiting", "interrupted")):
                told = status
                yield {
                    "event": "run",
                    "data": redact(
                        json.dumps(
                            {
                                "run_id": run_id,
                                "status": status,
                                "error": record.error,
                                "at": _iso(record.updated_at),
                            },
                            ensure_ascii=True,
                            default=str,
                        )
                    ),
                }
                if status in FINAL:
                    return
            elif status == "running":
                told = None
            with anyio.move_on_after(1.0) as quiet:
                await news.wait()
            if not quiet.cancelled_caught:  # news here: once it is committed, read it
                await self.durable.flush()
            # else: news of another process (a resume elsewhere) is read as it is committed

    def _events_after(self, run_id: str, after: int) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.store.read(
            "SELECT seq, kind, step_id, item, attempt, status, at, data FROM events "
            "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, _EVENTS_PAGE),
        )
        found = []
        for seq, kind, step_id, item, attempt, status, at, data in rows:
            extra = json.loads(data) if data else {}
            event: dict[str, Any] = {
                "seq": seq,
                "kind": kind,
                "step_id": step_id,
                "item": item,
                "status": status,
                "attempt": attempt,
                "at": _iso(at),
            }
            if extra.get("error"):
                error = extra["error"]
                event["error"] = {
                    "failure_mode": error.get("failure_mode"),
                    "message": error.get("message"),
                }
            if "scheduled_at" in extra:
                event["scheduled_at"] = _iso(extra["scheduled_at"])
            found.append((seq, "step", event))
        return found

    def _records_after(self, run_id: str, after: int) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.store.read(
            "SELECT seq, kind, data FROM records WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, _EVENTS_PAGE),
        )
        found = []
        for seq, kind, data in rows:
            value = json.loads(data)
            event: dict[str, Any] = {"seq": seq, "kind": kind}
            if kind == "plan":
                event["version"] = value.get("version")
                event["steps"] = [s.get("id") for s in value.get("steps", [])]
            elif kind == "model_call":
                reply = value.get("reply") or {}
                event.update(
                    purpose=value.get("purpose"),
                    model=reply.get("model"),
                    input_tokens=reply.get("input_tokens"),
                    output_tokens=reply.get("output_tokens"),
                )
            elif kind == "answer":
                event["answer"] = value.get("answer")
            found.append((seq, "record", event))
        return found


def _iso(at: float | None) -> str | None:
    from datetime import UTC, datetime

    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()
