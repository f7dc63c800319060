"""What the API answers about runs, as JSON-ready dicts read from the durable journal:
a run in a list, a run whole (its steps, their graph, the critical path so far, outputs,
failures, usage), and what waits for a decision."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .runs import approval_id

if TYPE_CHECKING:
    from ..durable import ApprovalRecord, RunRecord, RunStore
    from ..graph import CompiledPlan
    from ..tools import ToolRegistry

__all__ = ["approval_json", "critical_path", "iso", "run_detail", "run_summary"]


def iso(at: float | None) -> str | None:
    """A time of the journal as ISO 8601, UTC."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def run_summary(record: RunRecord, waits: list[str] | None = None) -> dict[str, Any]:
    """A run as ``GET /api/runs`` lists it."""
    return {
        "run_id": record.run_id,
        "kind": record.kind,
        "parent_id": record.parent_id,
        "plan": record.plan_name,
        "goal": record.goal,
        "status": record.shown_status,
        "started_at": iso(record.created_at),
        "ended_at": iso(record.finished_at),
        "duration": round(max((record.finished_at or time.time()) - record.created_at, 0.0), 3),
        "waits": waits or [],
    }


def approval_json(a: ApprovalRecord) -> dict[str, Any]:
    """A call that waits for a decision, with its resolved arguments."""
    return {
        "id": approval_id(a),
        "run_id": a.run_id,
        "plan": a.plan_name,
        "step_id": a.step_id,
        "item": a.item,
        "tool": a.tool,
        "side_effects": a.side_effects,
        "args": a.args,
        "reason_asked": a.reason_asked,
        "asked_at": iso(a.requested_at),
    }


def _error(error: Any) -> dict[str, Any] | None:
    if not error:
        return None
    if hasattr(error, "model_dump"):
        error = error.model_dump(mode="json")
    return {"failure_mode": error.get("failure_mode"), "message": error.get("message")}


def run_detail(store: RunStore, record: RunRecord, tools: ToolRegistry) -> dict[str, Any]:
    """A run whole, as ``GET /api/runs/{id}`` gives it."""
    from ..durable.resume import fold, step_results
    from ..errors import PlanError
    from ..graph import compile_plan

    run_id = record.run_id
    ended = record.status in ("succeeded", "failed", "cancelled")
    waiting = [] if ended else store.approvals(run_id)  # a call of an ended run waits no more
    detail = run_summary(record, [approval_id(a) for a in waiting])
    detail.update(
        inputs=record.inputs,
        outputs=record.outputs or {},
        error=_error(record.error),
        approvals=[approval_json(a) for a in waiting],
    )
    if record.kind == "agent":
        return detail | _agent_detail(store, record)
    folded = fold(store.events(run_id))
    compiled: CompiledPlan | None
    try:
        compiled = compile_plan(record.plan, tools, judge=True)
    except PlanError:  # a tool that is no longer installed: the events tell what they can
        compiled = None
    steps: list[dict[str, Any]] = []
    if compiled is not None:
        results = step_results(folded, compiled)
        for sid in compiled.order:
            result, spec = results[sid], compiled.steps[sid]
            steps.append(
                {
                    "id": sid,
                    "tool": result.tool,
                    "status": str(result.status),
                    "attempts": result.attempts,
                    "started_at": result.started_at.isoformat() if result.started_at else None,
                    "ended_at": result.finished_at.isoformat() if result.finished_at else None,
                    "duration": result.duration,
                    "output": result.output,
                    "error": _error(result.error),
                    "depends_on": list(spec.deps),
                    "approval": spec.step.approval,
                    "foreach": spec.foreach is not None,
                }
            )
        nodes = [{"id": sid, "tool": compiled.steps[sid].step.tool} for sid in compiled.order]
        edges = [[dep, sid] for sid in compiled.order for dep in compiled.steps[sid].deps]
    else:
        for sid, s in folded.items():
            steps.append(
                {
                    "id": sid,
                    "tool": None,
                    "status": s.status if s.ended else "pending",
                    "attempts": s.attempts,
                    "started_at": iso(s.started_at),
                    "ended_at": iso(s.finished_at) if s.ended else None,
                    "duration": None,
                    "output": s.output if s.status == "succeeded" else None,
                    "error": _error(s.error.model_dump(mode="json") if s.error else None),
                    "depends_on": [],
                    "approval": None,
                    "foreach": bool(s.items),
                }
            )
        nodes = [{"id": s["id"], "tool": None} for s in steps]
        edges = []
    failures = [
        {"step_id": s["id"], **s["error"]}
        for s in steps
        if s["error"] and s["status"] in ("failed", "cancelled")
    ]
    if detail["error"] and not failures:
        failures.append({"step_id": None, **detail["error"]})
    detail.update(
        steps=steps,
        failures=failures,
        usage={
            "steps": sum(1 for s in steps if s["started_at"] is not None),
            "tool_calls": sum(s["attempts"] for s in steps if s["tool"]),
            "wall_time": detail["duration"],
        },
        plan_graph={"nodes": nodes, "edges": edges},
        critical_path=critical_path(steps),
    )
    return detail


def critical_path(steps: list[dict[str, Any]]) -> list[str]:
    """The chain of steps (each reading the one before) that took longest, so far: a step
    counts its duration, or the time since it started while it runs. ``steps`` in an
    order where a step comes after those it depends on."""
    now = time.time()
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for step in steps:
        seconds = 0.0
        if step["started_at"] is not None:
            start = datetime.fromisoformat(step["started_at"]).timestamp()
            end = (
                datetime.fromisoformat(step["ended_at"]).timestamp()
                if step["ended_at"] is not None
                else now
            )
            seconds = max(end - start, 0.0)
        deps = [d for d in step["depends_on"] if d in finish]
        prior = max(deps, key=lambda d: finish[d], default=None)
        finish[step["id"]] = seconds + (finish[prior] if prior is not None else 0.0)
        before[step["id"]] = prior
    started = {s["id"] for s in steps if s["started_at"] is not None}
    if not started:
        return []
    last: str | None = max(started, key=lambda sid: finish[sid])
    path = []
    while last is not None:
        path.append(last)
        last = before[last]
    return [sid for sid in reversed(path) if sid in started]


def _agent_detail(store: RunStore, record: RunRecord) -> dict[str, Any]:
    """What an agent run adds: its plan runs, plan versions, answer and model usage."""
    children = store.runs(parent_id=record.run_id)
    usage = {"model_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
    plans: list[dict[str, Any]] = []
    answer = None
    for _, kind, data in store.records(record.run_id):
        if kind == "model_call":
            reply = data.get("reply") or {}
            usage["model_calls"] += 1
            usage["input_tokens"] += int(reply.get("input_tokens") or 0)
            usage["output_tokens"] += int(reply.get("output_tokens") or 0)
            usage["cost"] += float(reply.get("cost") or 0.0)
        elif kind == "plan":
            plans.append(data)
        elif kind == "answer":
            answer = data.get("answer")
    error = _error(record.error)
    return {
        "steps": [],
        "plan_graph": {"nodes": [], "edges": []},
        "critical_path": [],
        "failures": [{"step_id": None, **error}] if error else [],
        "usage": usage | {"wall_time": run_summary(record)["duration"]},
        "runs": [run_summary(c) for c in reversed(children)],
        "plans": plans,
        "answer": answer,
    }
