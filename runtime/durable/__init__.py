"""Durable runs: the run journal in a database, so that a run can be resumed after a crash,
wait for a person's approval across restarts, and be listed afterwards.

:func:`open_journal` gives the :class:`DurableJournal` the settings ask for (``journal.*``:
an embedded SQLite file under ``runs_dir`` by default, or PostgreSQL), one per database in a
process. The executor tells it every state change (:class:`~dagentic.journal.Journal`);
:meth:`Executor.resume <dagentic.Executor.resume>` reads it back (:mod:`.resume`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JournalError
from ..journal import StepEvent
from .store import (
    INSERT_EVENT,
    ApprovalRecord,
    RunRecord,
    RunStore,
    dumps,
    owner_id,
    pack_output,
    text,
)

if TYPE_CHECKING:
    from ..graph import CompiledPlan
    from ..settings import Settings

__all__ = [
    "ApprovalRecord",
    "DurableJournal",
    "RunRecord",
    "RunStore",
    "close_journals",
    "durable_of",
    "open_journal",
    "open_store",
    "plan_json",
    "store_location",
]

_OPEN: dict[str, DurableJournal] = {}
_OPEN_LOCK = threading.Lock()


def _after_fork() -> None:
    """A forked child has none of its parent's writer threads: it opens its own."""
    global _OPEN_LOCK
    _OPEN.clear()
    _OPEN_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
_OUTPUT_KINDS = frozenset({"finished", "item_finished"})


def store_location(settings: Settings) -> str:
    """The journal's URL: ``journal.url``, else the SQLite file in ``runs_dir``."""
    url = settings.journal.url
    if url is not None:
        return url.get_secret_value()
    return f"sqlite:///{Path(settings.runs_dir).resolve() / 'journal.sqlite'}"


def open_store(url: str) -> RunStore:
    """A store for ``url``: ``sqlite:///PATH`` (or a plain path) or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if "://" in path:
        raise JournalError(
            f"journal.url {url.split('://')[0]}://... is not a journal database: use "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
    from .sqlite import SqliteStore

    return SqliteStore(path)


def durable_of(journal: Any, holder: str) -> DurableJournal:
    """The durable journal among ``journal``'s, which resuming needs; else a
    :class:`~dagentic.JournalError` saying that ``holder`` (an executor, an agent) has
    none."""
    durable: DurableJournal | None = getattr(journal, "durable", None)
    if durable is None:
        raise JournalError(
            f"resuming needs the durable journal, and this {holder} has none "
            "(journal.enabled is false, or journal=None was given)"
        )
    return durable


def open_journal(settings: Settings) -> DurableJournal | None:
    """The durable journal of ``settings`` (shared by every executor of the process that
    uses the same database), or None when ``journal.enabled`` is false."""
    if not settings.journal.enabled:
        return None
    url = store_location(settings)
    with _OPEN_LOCK:
        journal = _OPEN.get(url)
        if journal is None or journal.store.failure is not None or journal.closed:
            journal = _OPEN[url] = DurableJournal(open_store(url), lease=settings.journal.lease)
        return journal


def close_journals() -> None:
    """Commit and close every journal this process opened (tests; the process's exit
    does it too)."""
    with _OPEN_LOCK:
        for journal in _OPEN.values():
            journal.close()
        _OPEN.clear()


def plan_json(compiled: CompiledPlan) -> tuple[str, str]:
    """The plan as canonical JSON (what the journal stores) and its SHA-256."""
    encoded = json.dumps(
        compiled.plan.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        sort_keys=True,
        separators=(",", ":"),
    )
    return encoded, hashlib.sha256(encoded.encode()).hexdigest()


class DurableJournal:
    """A :class:`~dagentic.journal.Journal` that persists every event in ``store``.

    :meth:`record` queues (it never blocks the event loop); :meth:`flush` waits for the
    commit. ``lease`` is how long a run's owner holds it without renewing. A step's
    ``scheduled`` is stored with its ``started`` (as ``scheduled_at``) when that comes
    next, as it nearly always does at once, else as a row of its own."""

    def __init__(self, store: RunStore, *, lease: float = 30.0) -> None:
        self.store = store
        self.lease = lease
        self.closed = False
        self._seq: dict[str, int] = {}
        self._scheduled: dict[tuple[str, str | None], StepEvent] = {}

    @property
    def durable(self) -> DurableJournal:
        return self

    # -- runs -----------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        compiled: CompiledPlan,
        inputs: Mapping[str, Any],
        *,
        owner: str,
        kind: str = "plan",
        parent_id: str | None = None,
        last_seq: int = 0,
    ) -> None:
        """Queue the run's start: a new run's plan and inputs, or a resumed run's new
        owner (whose lease :meth:`Executor.resume` took already), its events going on
        after the ``last_seq`` th."""
        now = time.time()
        self._seq[run_id] = last_seq
        encoded, digest = plan_json(compiled)
        self.store.add_run(
            {
                "run_id": run_id,
                "kind": kind,
                "parent_id": parent_id,
                "plan_name": compiled.name,
                "plan_json": encoded,
                "plan_hash": digest,
                "plan_file": str(compiled.file) if compiled.file else None,
                "goal": compiled.plan.goal,
                "inputs_json": dumps(dict(inputs)),
                "at": now,
                "owner": owner,
                "lease_until": now + self.lease,
            }
        )

    def start_agent_run(
        self,
        run_id: str,
        goal: str,
        inputs: Mapping[str, Any],
        *,
        owner: str,
        records: int = 0,
    ) -> None:
        """Queue an agent run's start (``records``: how many records a resumed one has)."""
        now = time.time()
        self._seq[run_id] = records
        self.store.add_run(
            {
                "run_id": run_id,
                "kind": "agent",
                "plan_name": "(agent)",
                "plan_json": "{}",
                "plan_hash": "",
                "goal": goal,
                "inputs_json": dumps(dict(inputs)),
                "at": now,
                "owner": owner,
                "lease_until": now + self.lease,
            }
        )

    def add_record(self, run_id: str, kind: str, data: Any) -> None:
        """Queue a record of an agent run: a plan version, a model call, the answer."""
        seq = self._seq[run_id] = self._seq.get(run_id, 0) + 1
        self.store.add_record(run_id, seq, kind, data)

    async def claim_run(self, run_id: str, kind: str = "plan") -> tuple[RunRecord, str]:
        """Run ``run_id`` (a run of ``kind``: plan or agent) to resume, and the owner id
        this process now holds it as. Raises :class:`~dagentic.JournalError` when it is
        not in the journal, has finished, or another process runs it."""
        from ..threads import run_in_thread

        store = self.store
        what = "agent run" if kind == "agent" else "run"
        record = await run_in_thread(store.run, run_id)
        if record is None or record.kind != kind:
            raise JournalError(f"there is no {what} '{run_id}' in the journal {store.label}")
        if record.status in ("succeeded", "failed"):
            again = "ask again" if kind == "agent" else "start the plan again"
            raise JournalError(
                f"{what} '{run_id}' {record.status} already: there is nothing to resume "
                f"({again} to run it again)"
            )
        owner = owner_id()
        if not await run_in_thread(store.take_lease, run_id, owner, time.time() + self.lease):
            held = await run_in_thread(store.run, run_id)
            who = held.owner if held is not None else None
            raise JournalError(
                f"{what} '{run_id}' is being run by another process ({who}); it can be "
                "resumed when that one stops, or after its lease runs out",
                owner=who,
            )
        return record, owner

    def renew(self, run_id: str, owner: str) -> None:
        self.store.renew_lease(run_id, owner, time.time() + self.lease)

    def end_run(
        self, run_id: str, status: str, error: Any, outputs: Mapping[str, Any] | None
    ) -> None:
        self.store.end_run(
            run_id,
            status,
            None if error is None else error.model_dump(mode="json"),
            None if outputs is None else (lambda: dict(outputs)),
            time.time(),
        )
        self._seq.pop(run_id, None)

    # -- events ---------------------------------------------------------------------------

    def record(self, event: StepEvent) -> None:
        kind = event.kind
        if kind == "progress":
            return  # how far a call got is shown, not kept
        if kind == "scheduled":
            # Kept until the step's next event, microseconds later (its start, mostly),
            # and stored with it: one row, not two, for most steps.
            self._scheduled[event.run_id, event.step_id] = event
            return
        held = self._scheduled.pop((event.run_id, event.step_id), None) if self._scheduled else None
        if kind in ("run_started", "run_finished"):  # the runs table has them
            if kind == "run_finished" and self._scheduled:
                for key in [k for k in self._scheduled if k[0] == event.run_id]:
                    self._write(self._scheduled.pop(key))
            return
        if held is not None:
            if kind == "started":
                self._write(event, held.at)
                return
            self._write(held)
        self._write(event)

    def _write(self, event: StepEvent, scheduled_at: float | None = None) -> None:
        run_id = event.run_id
        seq = self._seq[run_id] = self._seq.get(run_id, 0) + 1
        self.store.write(INSERT_EVENT, lambda: _event_row(event, seq, scheduled_at))

    async def flush(self) -> None:
        """Wait (off the event loop) until everything recorded so far is committed."""
        from ..threads import run_in_thread

        token = self.store.write("", ())  # a marker: committed with everything before it
        await run_in_thread(self.store.flush, token)

    def close(self) -> None:
        self.closed = True
        self.store.close()


_PROVENANCE: dict[tuple[Any, ...], str] = {}


def _provenance(provenance: Any) -> str:
    """A provenance as stored, JSON (most steps share a few: each is encoded once)."""
    key = (provenance.trusted, provenance.source, provenance.untrusted_from)
    found = _PROVENANCE.get(key)
    if found is None:
        if len(_PROVENANCE) > 4096:
            _PROVENANCE.clear()
        found = _PROVENANCE[key] = dumps(provenance.model_dump(mode="json"))
    return found


def _event_row(event: StepEvent, seq: int, scheduled_at: float | None) -> tuple[Any, ...]:
    """An event as a row of ``events`` (built by the writer thread, off the event loop).
    Its ``data`` column is a JSON object put together from parts that are JSON already:
    this runs for every event, and most parts repeat."""
    parts = []
    blob = None
    if event.kind in _OUTPUT_KINDS:
        if event.status == "succeeded":
            output, blob = pack_output(event.output)
            if output is not None:
                parts.append(f'"output":{output}')
        if event.provenance is not None:
            parts.append(f'"provenance":{_provenance(event.provenance)}')
    if event.error is not None:
        parts.append(f'"error":{dumps(event.error.model_dump(mode="json"))}')
    if event.side_effects is not None:
        parts.append(f'"side_effects":{dumps(event.side_effects)}')
    if event.egress:
        parts.append(f'"egress":{dumps(list(event.egress))}')
    if event.detail:
        parts.extend(f"{dumps(str(k))}:{dumps(v)}" for k, v in event.detail.items())
    if scheduled_at is not None:
        parts.append(f'"scheduled_at":{scheduled_at!r}')
    return (
        text(event.run_id),
        seq,
        event.kind,
        event.step_id,
        event.item,
        event.attempt,
        event.status,
        event.at,
        f"{{{','.join(parts)}}}" if parts else None,
        blob,
    )
