"""The run journal: every state change of a run and its steps, through one interface.

The executor reports ``run_started``, then per step ``scheduled``, ``started``, ``attempt``
(per call: a ``foreach`` step's items each have theirs, and ``item_finished``) and
``finished`` (or ``skipped``, or ``reused`` for a step an earlier run did), then
``run_finished``. A tool may report ``progress`` meanwhile (not a state change: the durable
journal does not keep it). A step that waits for a person's decision finishes with status
``waiting``. A durable store implements
:class:`Journal` to persist them; :class:`LogJournal` turns them into structlog events.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "EventKind",
    "Journal",
    "Journals",
    "LogJournal",
    "MemoryJournal",
    "StepEvent",
    "get_logger",
]

EventKind = Literal[
    "run_started",
    "scheduled",
    "started",
    "reused",
    "attempt",
    "finished",
    "skipped",
    "item_finished",
    "progress",
    "run_finished",
]


@dataclass(slots=True)
class StepEvent:
    kind: EventKind
    run_id: str
    step_id: str | None = None
    attempt: int = 0
    status: str | None = None
    output: Any = None
    error: Any = None  # ErrorInfo
    at: float = field(default_factory=time.time)
    side_effects: str | None = None  # on "attempt": what this call does (none, read, write)
    egress: tuple[str, ...] = ()  # on "attempt": the arguments it sends off the machine
    item: int | None = None  # which foreach item (from 0), on "attempt" and "item_finished"
    provenance: Any = None  # Provenance, on "finished" and "item_finished"
    detail: dict[str, Any] | None = None  # more, for a durable journal (an idempotency key)


class Journal(Protocol):
    def record(self, event: StepEvent) -> None:
        """Called on the event loop; must not block."""


class Journals:
    """Several journals told of every event, in order; the durable one among them (if
    any) is :attr:`durable`."""

    def __init__(self, *journals: Journal | None) -> None:
        self.journals = tuple(j for j in journals if j is not None)
        self.durable = next(
            (d for j in self.journals if (d := getattr(j, "durable", None)) is not None), None
        )

    def record(self, event: StepEvent) -> None:
        for journal in self.journals:
            journal.record(event)


class MemoryJournal:
    """Keeps every event in a list (tests, resumable runs)."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []

    def record(self, event: StepEvent) -> None:
        self.events.append(event)

    def kinds(self, step_id: str | None = None) -> list[str]:
        return [e.kind for e in self.events if step_id is None or e.step_id == step_id]


def get_logger(name: str = "dagentic") -> Any:
    """structlog's logger when the application configured structlog, else one that goes
    through the standard ``logging`` module, silent unless the application turns it on."""
    import structlog  # here, not above: `dagentic --help` need not load it

    if structlog.is_configured():
        return structlog.get_logger(name)
    return structlog.wrap_logger(
        logging.getLogger(name),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.KeyValueRenderer(key_order=["event", "run_id", "step_id"]),
        ],
    )


class LogJournal:
    """Journal events as structlog events carrying ``run_id`` and ``step_id``."""

    def __init__(self, logger: Any = None) -> None:
        self.logger = logger or get_logger()

    def record(self, event: StepEvent) -> None:
        fields: dict[str, Any] = {"run_id": event.run_id}
        if event.step_id is not None:
            fields["step_id"] = event.step_id
        if event.attempt:
            fields["attempt"] = event.attempt
        if event.status is not None:
            fields["status"] = event.status
        if event.error is not None:
            fields["failure_mode"] = str(event.error.failure_mode)
            fields["error"] = event.error.message
            self.logger.warning(event.kind, **fields)
        elif event.kind in ("run_started", "run_finished"):
            self.logger.info(event.kind, **fields)
        else:
            self.logger.debug(event.kind, **fields)
