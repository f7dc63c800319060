"""What past runs took, read back from the durable journal for estimates before a run
(:mod:`dagentic.estimate`): per tool the seconds of each call (a run's first call of a
tool apart: it pays for what the tool starts, an engine, a sandbox, an index), per plan
step how many items its ``foreach`` had and whether its ``when`` let it run, per run the
seconds it took besides its steps (starting, the journal's last writes), and per
model-call purpose the tokens (and seconds) of each.

Only the newest runs count (``runs``, 200 by default), so the numbers follow the machine
and the data as they are now. A call is timed from its step's start (a ``foreach`` item's
first attempt) to its end, retries included; steps that were skipped, reused or waited for
a person are left out.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .durable.store import RunStore
    from .settings import Settings

__all__ = ["HISTORY_RUNS", "History", "ModelUse", "percentile", "read_history"]

HISTORY_RUNS = 200  # newest finished runs read (plan runs; agent runs for model calls)
_TIMED = ("succeeded", "failed")  # a call that ended by itself: waiting or cancelled did not

_PLAN_RUNS = (
    "SELECT run_id, plan_name, plan_json, created_at, finished_at FROM runs WHERE kind = 'plan' "
    "AND status IN ('succeeded', 'failed') ORDER BY created_at DESC LIMIT ?"
)
_EVENTS = (
    "SELECT e.run_id, e.kind, e.step_id, e.item, e.status, e.at FROM events AS e JOIN ("
    "SELECT run_id FROM runs WHERE kind = 'plan' AND status IN ('succeeded', 'failed') "
    "ORDER BY created_at DESC LIMIT ?) AS r ON r.run_id = e.run_id "
    "WHERE e.kind IN ('started', 'finished', 'skipped', 'attempt', 'item_finished') "
    "ORDER BY e.run_id, e.seq"
)
_MODEL_CALLS = (
    "SELECT c.data FROM records AS c JOIN (SELECT run_id FROM runs WHERE kind = 'agent' "
    "ORDER BY created_at DESC LIMIT ?) AS r ON r.run_id = c.run_id "
    "WHERE c.kind = 'model_call'"
)


@dataclass(frozen=True, slots=True)
class ModelUse:
    """One model call of a past agent run."""

    input_tokens: int
    output_tokens: int
    seconds: float | None = None  # not kept by journals older than the estimate


@dataclass(slots=True)
class History:
    """What the newest runs took (empty: no journal, or nothing ran yet)."""

    calls: dict[str, list[float]] = field(default_factory=dict)  # tool -> seconds per call
    first_calls: dict[str, list[float]] = field(default_factory=dict)  # a run's first, by tool
    ran: dict[tuple[str, str], list[bool]] = field(default_factory=dict)  # (plan, step)
    items: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (plan, step)
    model_calls: dict[str, list[ModelUse]] = field(default_factory=dict)  # purpose -> calls
    overheads: list[float] = field(default_factory=list)  # a run's seconds besides its steps
    runs: int = 0  # plan runs read


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0..1) of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def read_history(settings: Settings, *, runs: int = HISTORY_RUNS) -> History:
    """The history in the durable journal of ``settings``: empty when the journal is off
    or its SQLite file does not exist yet (it is not made here). Raises
    :class:`~dagentic.JournalError` when it cannot be read."""
    from .durable import open_journal, store_location

    if not settings.journal.enabled:
        return History()
    url = store_location(settings)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return History()
    journal = open_journal(settings)
    return History() if journal is None else history_of(journal.store, runs=runs)


def history_of(store: RunStore, *, runs: int = HISTORY_RUNS) -> History:
    """The history of the newest ``runs`` finished runs in ``store``."""
    history = History()
    plans: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
    walls: dict[str, float] = {}
    for run_id, plan_name, plan_text, created_at, finished_at in store.read(_PLAN_RUNS, (runs,)):
        try:
            steps = json.loads(plan_text).get("steps") or []
        except (ValueError, AttributeError):
            continue
        plans[run_id] = (plan_name, {s["id"]: s for s in steps if isinstance(s, dict)})
        if finished_at is not None:
            walls[run_id] = finished_at - created_at
    bounds: dict[str, list[float]] = {}  # run -> its first step's start, its last step's end
    history.runs = len(plans)
    timed: defaultdict[str, list[tuple[float, str, float]]] = defaultdict(list)  # by run
    items: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    ran: defaultdict[tuple[str, str], list[bool]] = defaultdict(list)
    started: dict[tuple[str, str], float] = {}
    first_attempt: dict[tuple[str, str, int], float] = {}
    seen_items: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for run_id, kind, step_id, item, status, at in store.read(_EVENTS, (runs,)):
        plan = plans.get(run_id)
        if plan is not None and kind in ("started", "finished", "skipped"):
            span = bounds.setdefault(run_id, [at, at])
            span[0], span[1] = min(span[0], at), max(span[1], at)
        step = plan[1].get(step_id) if plan is not None and step_id is not None else None
        if plan is None or step is None or not step.get("tool"):
            continue
        key = (run_id, step_id)
        if kind == "started":
            started[key] = at
        elif kind == "attempt" and item is not None:
            first_attempt.setdefault((run_id, step_id, item), at)
            seen_items[key].add(item)
        elif kind == "item_finished" and item is not None and status in _TIMED:
            begun = first_attempt.get((run_id, step_id, item))
            if begun is not None:
                timed[run_id].append((begun, step["tool"], max(at - begun, 0.0)))
        elif kind == "skipped":
            if "when" in step:
                ran[plan[0], step_id].append(False)
        elif kind == "finished" and status in _TIMED:
            if "when" in step:
                ran[plan[0], step_id].append(True)
            if "foreach" in step:
                items[plan[0], step_id].append(len(seen_items.pop(key, ())))
            elif key in started:
                begun = started[key]
                timed[run_id].append((begun, step["tool"], max(at - begun, 0.0)))
    calls: defaultdict[str, list[float]] = defaultdict(list)
    first_calls: defaultdict[str, list[float]] = defaultdict(list)
    for run_calls in timed.values():
        seen: set[str] = set()
        for _, tool, seconds in sorted(run_calls):
            (calls if tool in seen else first_calls)[tool].append(seconds)
            seen.add(tool)
    history.calls = dict(calls)
    history.overheads = [
        max(walls[r] - (end - start), 0.0) for r, (start, end) in bounds.items() if r in walls
    ]
    history.first_calls = dict(first_calls)
    history.items = dict(items)
    history.ran = dict(ran)
    uses: defaultdict[str, list[ModelUse]] = defaultdict(list)
    for (text,) in store.read(_MODEL_CALLS, (runs,)):
        try:
            data = json.loads(text)
            reply = data["reply"]
            use = ModelUse(
                int(reply.get("input_tokens") or 0),
                int(reply.get("output_tokens") or 0),
                float(data["duration"]) if data.get("duration") is not None else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        uses[str(data.get("purpose") or "")].append(use)
    history.model_calls = dict(uses)
    return history
