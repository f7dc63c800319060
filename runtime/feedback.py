"""Feedback on runs: a person says a run's outcome was good or bad (``dagentic feedback
RUN_ID good|bad [--note ...]``, :meth:`AgentResult.feedback`, :meth:`Agent.feedback`).

It is stored with the run in the durable journal (the ``feedback`` table), with the library
plan it is about: the library plan an agent run was routed to, the plan an agent run's
plan was saved as, or the plan a ``dagentic run`` ran. The plan library reads the counts
per plan: a plan with more bad than good feedback leaves the routing set, and good
feedback ranks it higher (:meth:`dagentic.library.Library.rank`). ``dagentic report``
shows the counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import DagenticError

if TYPE_CHECKING:
    from .durable.store import RunRecord, RunStore

__all__ = ["VERDICTS", "Feedback", "FeedbackError", "give_feedback", "plan_of_run"]

Verdict = Literal["good", "bad"]
VERDICTS = ("good", "bad")
MAX_NOTE = 2000  # characters of a note


class FeedbackError(DagenticError, ValueError):
    """A verdict that is neither good nor bad, or a run the journal does not have."""


@dataclass(frozen=True)
class Feedback:
    """One verdict on a run, and the library plan it counts for (None: no plan)."""

    run_id: str
    verdict: Verdict
    note: str | None
    plan: str | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "verdict": self.verdict,
            "note": self.note,
            "plan": self.plan,
            "at": self.at,
        }


def plan_of_run(store: RunStore, record: RunRecord) -> str | None:
    """The library plan a run is about: for an agent run, the plan it was routed to or
    the plan it saved; for a plan run, its plan's name (a plan file's name is its
    library name)."""
    if record.kind != "agent":
        return record.plan_name or None
    found: str | None = None
    for _, kind, data in store.records(record.run_id):
        if kind == "route" and isinstance(data, dict) and data.get("route") == "library":
            found = str(data.get("plan") or "") or found
        elif kind == "saved" and isinstance(data, dict) and data.get("plan"):
            found = str(data["plan"])
    return found


def give_feedback(store: RunStore, run_id: str, verdict: str, note: str | None = None) -> Feedback:
    """Record ``verdict`` (good or bad) on run ``run_id`` (exactly that id) of ``store``.
    Raises :class:`FeedbackError` for another verdict or an unknown run."""
    if verdict not in VERDICTS:
        raise FeedbackError(f"feedback is 'good' or 'bad', not {verdict!r}")
    record = store.run(run_id)
    if record is None:
        raise FeedbackError(f"there is no run '{run_id}' in the journal {store.label}")
    if record.parent_id is not None:  # a plan version of an agent run: the agent run's
        parent = store.run(record.parent_id)
        record = parent if parent is not None else record
    if note is not None:
        note = note.strip()[:MAX_NOTE] or None
    plan = plan_of_run(store, record)
    at = time.time()
    store.add_feedback(record.run_id, verdict, note, plan, at)
    return Feedback(record.run_id, verdict, note, plan, at)  # type: ignore[arg-type]
