"""Reading a run back from its journal: where each step got to, what a resumed run may
reuse, what it must ask a person about before running it again, and how a changed plan
differs from the stored one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..result import (
    ErrorInfo,
    Provenance,
    RunResult,
    RunStatus,
    StepResult,
    StepStatus,
    Usage,
)

if TYPE_CHECKING:
    from ..graph import CompiledPlan
    from .store import ApprovalRecord, RunRecord, RunStore

__all__ = [
    "Resumption",
    "StoredItem",
    "StoredStep",
    "changed_and_after",
    "changed_steps",
    "fold",
    "resumption",
    "reusable",
    "step_results",
    "stored_result",
]

_ENDED = {"succeeded", "failed", "cancelled", "waiting", "skipped"}


@dataclass(slots=True)
class StoredItem:
    """A ``foreach`` item that succeeded."""

    output: Any
    provenance: Provenance
    item_hash: str | None


@dataclass(slots=True)
class StoredStep:
    """Where a step got to, as its events tell."""

    id: str
    status: str = "pending"  # pending, scheduled, running, or how it ended
    attempts: int = 0
    output: Any = None
    error: ErrorInfo | None = None
    provenance: Provenance | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # calls made and not known to have succeeded (running at a crash, cancelled, failed):
    # the items (None: the step's own call)
    in_flight: set[int | None] = field(default_factory=set)
    items: dict[int, StoredItem] = field(default_factory=dict)
    keys: dict[int | None, str] = field(default_factory=dict)  # item -> its last call's key
    reused: bool = False  # by a later leg: its times stay those of the leg that ran it

    @property
    def ended(self) -> bool:
        return self.status in _ENDED


@dataclass(slots=True)
class Resumption:
    """What a resumed run takes from its journal (see :meth:`Executor.resume
    <dagentic.Executor.resume>`), besides the steps it reuses."""

    owner: str  # who holds the run's lease now
    items: dict[str, dict[int, StoredItem]] = field(default_factory=dict)
    # the idempotency keys calls had before (a call keeps its key), and a new suffix for
    # the steps of a changed plan that are not the same calls any more
    keys: dict[tuple[str, int | None], str] = field(default_factory=dict)
    rekeyed: dict[str, str] = field(default_factory=dict)
    last_seq: int = 0  # the number of the run's last event: its new ones come after it
    gates: set[tuple[str, int | None]] = field(default_factory=set)
    decisions: dict[tuple[str, int | None], ApprovalRecord] = field(default_factory=dict)


def resumption(
    store: RunStore,
    run_id: str,
    owner: str,
    stored: CompiledPlan,
    compiled: CompiledPlan,
    changed: list[str],
) -> tuple[dict[str, StepResult], Resumption]:
    """What resuming run ``run_id`` (whose plan was ``stored`` and is ``compiled`` now,
    ``changed`` naming the steps that differ) takes from the journal: the steps it reuses,
    the ``foreach`` items done, the calls a person must allow to run again (one that may
    have done its work before the run stopped, by a tool that is neither idempotent nor
    uses its idempotency key), the decisions made, and
    the idempotency keys of calls (new ones for the calls a changed plan made new)."""
    from . import plan_json

    events = store.events(run_id)
    steps = fold(events)
    previous = step_results(steps, stored)
    reuse = (
        reusable(stored, previous, compiled)
        if changed
        else {sid: r for sid, r in previous.items() if r.status is StepStatus.SUCCEEDED}
    )
    decisions = {(a.step_id, a.item): a for a in store.approvals(run_id, waiting=False)}
    gates = {key for key, a in decisions.items() if a.reason_asked == "rerun"}
    for sid, step in steps.items():
        spec = compiled.steps.get(sid)
        if spec is None or sid in reuse:
            continue
        tool = spec.tool or (spec.subplan.tool if spec.subplan else None)  # a sub-plan's
        if tool is None:
            continue
        if not (tool.idempotent or tool.uses_idempotency_key):
            gates.update((sid, item) for item in step.in_flight)
    affected = changed_and_after(compiled, changed)
    items = {
        sid: dict(step.items)
        for sid, step in steps.items()
        if step.items and sid not in reuse and sid not in affected
    }
    keys = {
        (sid, item): key
        for sid, step in steps.items()
        if sid not in affected
        for item, key in step.keys.items()
    }
    suffix = f"~{plan_json(compiled)[1][:12]}"
    return reuse, Resumption(
        owner,
        items=items,
        gates=gates,
        decisions=decisions,
        keys=keys,
        rekeyed=dict.fromkeys(affected, suffix),
        last_seq=events[-1]["seq"] if events else 0,
    )


def fold(events: list[dict[str, Any]]) -> dict[str, StoredStep]:
    """Every step's state after ``events`` (in order)."""
    steps: dict[str, StoredStep] = {}
    for event in events:
        sid = event["step_id"]
        if sid is None:
            continue
        step = steps.get(sid)
        if step is None:
            step = steps[sid] = StoredStep(sid)
        kind = event["kind"]
        item = event["item"]
        if kind == "scheduled":
            step.status = "scheduled"
        elif kind == "started":
            step.status, step.started_at, step.reused = "running", event["at"], False
            step.in_flight.clear()
            step.output, step.error = None, None
        elif kind == "attempt":
            step.attempts = max(step.attempts, event["attempt"])
            step.in_flight.add(item)
            if "key" in event:
                step.keys[item] = event["key"]
        elif kind == "item_finished":
            step.in_flight.discard(item)
            if event["status"] == "succeeded":
                step.items[item] = StoredItem(
                    event.get("output"),
                    Provenance.model_validate(event.get("provenance") or {}),
                    event.get("item_hash"),
                )
        elif kind in ("finished", "skipped"):
            step.status = event["status"] or ("skipped" if kind == "skipped" else "failed")
            if not step.reused or step.finished_at is None:
                step.finished_at = event["at"]
            step.attempts = max(step.attempts, event["attempt"])
            if step.status in ("succeeded", "skipped"):
                step.in_flight.clear()  # else a call it made may have done its work
            if "output" in event:
                step.output = event["output"]
            if event.get("error"):
                step.error = ErrorInfo.model_validate(event["error"])
            if event.get("provenance"):
                step.provenance = Provenance.model_validate(event["provenance"])
        elif kind == "reused":  # its times stay those of the leg that ran it
            step.status, step.reused = "succeeded", True
            step.started_at = step.started_at or event["at"]
            step.finished_at = step.finished_at or event["at"]
    return steps


def step_results(steps: Mapping[str, StoredStep], plan: CompiledPlan) -> dict[str, StepResult]:
    """The :class:`StepResult` of every step of ``plan`` as the journal has it."""
    results = {}
    for sid, spec in plan.steps.items():
        stored = steps.get(sid)
        if stored is None:
            results[sid] = StepResult(id=sid, tool=spec.called)
            continue
        status = stored.status if stored.ended else "pending"
        started = _time(stored.started_at)
        finished = _time(stored.finished_at) if stored.ended else None
        results[sid] = StepResult(
            id=sid,
            tool=spec.called,
            status=StepStatus(status),
            output=stored.output if status == "succeeded" else None,
            error=stored.error,
            attempts=stored.attempts,
            started_at=started,
            finished_at=finished,
            duration=(stored.finished_at - stored.started_at)
            if finished is not None
            and stored.started_at is not None
            and stored.finished_at is not None
            else None,
            provenance=stored.provenance or Provenance(),
        )
    return results


def stored_result(store: RunStore, record: RunRecord, plan: CompiledPlan) -> RunResult:
    """The :class:`RunResult` of a run the journal has finished (``record``: succeeded or
    failed), whose plan is ``plan``."""
    run_id = record.run_id
    steps = step_results(fold(store.events(run_id)), plan)
    started = _time(record.created_at)
    finished = _time(record.finished_at or record.updated_at)
    assert started is not None and finished is not None
    return RunResult(
        run_id=run_id,
        plan=record.plan_name,
        goal=record.goal,
        status=RunStatus(record.status),
        steps=steps,
        outputs=record.outputs or {},
        error=ErrorInfo.model_validate(record.error) if record.error else None,
        usage=Usage(
            steps=sum(1 for s in steps.values() if s.started_at is not None),
            tool_calls=sum(s.attempts for s in steps.values() if s.tool),
            wall_time=(finished - started).total_seconds(),
        ),
        started_at=started,
        finished_at=finished,
    )


def _time(at: float | None) -> datetime | None:
    return None if at is None else datetime.fromtimestamp(at, UTC)


def reusable(
    before: CompiledPlan, previous: Mapping[str, StepResult], after: CompiledPlan
) -> dict[str, StepResult]:
    """Steps of ``after`` that a succeeded step of a run of ``before`` stands for: same id,
    tool, args, foreach and when, and every step it reads reused too (replans, and resumed
    runs of a changed plan)."""
    reuse: dict[str, StepResult] = {}
    for sid in after.order:
        spec, old, done = after.steps[sid], before.steps.get(sid), previous.get(sid)
        if (
            old is None
            or done is None
            or done.status is not StepStatus.SUCCEEDED
            or spec.tool is None
            or not all(dep in reuse for dep in spec.deps)
        ):
            continue
        new, was = spec.step, old.step
        if (new.tool, new.args, new.foreach, new.when) == (
            was.tool,
            was.args,
            was.foreach,
            was.when,
        ):
            reuse[sid] = done
    return reuse


def changed_and_after(plan: CompiledPlan, changed: list[str]) -> set[str]:
    """The steps of ``plan`` in ``changed``, and every step that reads one of them
    (directly or not): their calls are not the ones the run made before."""
    affected: set[str] = set()
    for sid in plan.order:
        if sid in changed or any(dep in affected for dep in plan.steps[sid].deps):
            affected.add(sid)
    return affected


def changed_steps(before: CompiledPlan, after: CompiledPlan) -> list[str]:
    """Ids of the steps that differ between two versions of a plan (added, removed or
    changed), in the order of ``after`` then the removed ones."""
    old = {s.id: s.model_dump(mode="json", exclude={"description"}) for s in before.plan.steps}
    new = {s.id: s.model_dump(mode="json", exclude={"description"}) for s in after.plan.steps}
    changed = [sid for sid in new if old.get(sid) != new[sid]]
    changed += [sid for sid in old if sid not in new]
    if before.plan.outputs != after.plan.outputs or before.plan.inputs != after.plan.inputs:
        changed.append("(inputs or outputs)")
    return changed
