"""The durable store of runs: one writer thread with group commit, and reads.

Writes (:meth:`RunStore.write`) never block their caller: they are queued, and one thread
per store takes whatever is queued, runs it in one transaction and commits, so that many
events cost one commit. :meth:`RunStore.flush` waits until everything queued before it is
committed: the executor calls it before a step that writes starts, and before it reports
a run's end. A write that fails (a full disk) fails every later write and flush with a
:class:`~dagentic.JournalError`, so a run stops instead of going on without durability.

The SQL is shared by SQLite (:mod:`.sqlite`) and PostgreSQL (:mod:`.postgres`); a dialect
only opens connections and spells parameters. The tables are in :mod:`.schema`.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import socket
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

from ..bounds import cut_value
from ..errors import JournalError
from .schema import MIGRATIONS, VERSION

__all__ = ["ApprovalRecord", "RunRecord", "RunStore", "owner_alive", "owner_id"]

BATCH = 5000  # writes in one transaction at most
LARGE_OUTPUT = 64 * 1024  # characters of an output's JSON past which it is stored compressed
FLUSH_TIMEOUT = 120.0  # seconds a flush waits for the writer before it gives up
Params = Sequence[Any] | Callable[[], Sequence[Any]]


def owner_id() -> str:
    """Who runs a run: this machine, this process, and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process that owns a run still lives: known only on its own machine
    (None elsewhere)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return None  # this process: its lease is its own to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # killed, and not yet reaped by its parent: gone all the same
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def dumps(value: Any) -> str:
    """JSON text of a stored value, in ASCII (a lone surrogate in a tool's text is kept as
    its escape). Whatever is not JSON is stored as its text, and a value too deep to be
    written whole is stored cut, with a marker where it was cut."""
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (RecursionError, ValueError):
        return json.dumps(cut_value(value), separators=(",", ":"), default=str)


def text(value: str | None) -> str | None:
    """A string as a database takes it: a lone surrogate (from a file name, say) escaped."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def pack_output(value: Any) -> tuple[Any, bytes | None]:
    """An output as stored: inline JSON when small, else a zlib-compressed blob."""
    text = dumps(value)
    if len(text) <= LARGE_OUTPUT:
        return text, None
    return None, zlib.compress(text.encode(), 3)


def unpack_output(text: str | None, blob: bytes | memoryview | None) -> Any:
    if blob is not None:
        return json.loads(zlib.decompress(bytes(blob)))
    return None if text is None else json.loads(text)


@dataclass(slots=True)
class RunRecord:
    """One run as the journal keeps it (its events are read with :meth:`RunStore.events`)."""

    run_id: str
    kind: str
    parent_id: str | None
    plan_name: str
    plan: dict[str, Any]
    plan_hash: str
    plan_file: str | None
    goal: str | None
    inputs: dict[str, Any]
    status: str
    error: dict[str, Any] | None
    outputs: dict[str, Any] | None
    created_at: float
    updated_at: float
    finished_at: float | None
    owner: str | None
    lease_until: float | None

    @property
    def interrupted(self) -> bool:
        """Still ``running`` in the journal, but nobody runs it: its owner's lease ran out
        or its process is gone."""
        if self.status != "running":
            return False
        if self.owner is None or (self.lease_until or 0) < time.time():
            return True
        return owner_alive(self.owner) is False

    @property
    def shown_status(self) -> str:
        return "interrupted" if self.interrupted else self.status


@dataclass(slots=True)
class ApprovalRecord:
    """A call that waits for a person (or the decision they made)."""

    run_id: str
    step_id: str
    item: int | None
    reason_asked: str  # "approval": the step asks; "rerun": it was running at a crash
    tool: str
    args: dict[str, Any]
    side_effects: str | None
    requested_at: float
    decision: str | None = None  # approved | denied
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str | None = None
    plan_name: str = field(default="")


_RUN_COLUMNS = (
    "run_id, kind, parent_id, plan_name, plan_json, plan_hash, plan_file, goal, inputs_json, "
    "status, error_json, outputs_json, created_at, updated_at, finished_at, owner, lease_until"
)
_APPROVAL_COLUMNS = (
    "a.run_id, a.step_id, a.item, a.reason_asked, a.tool, a.args_json, a.side_effects, "
    "a.requested_at, a.decision, a.decided_by, a.decided_at, a.reason, r.plan_name"
)
INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, kind, step_id, item, attempt, status, at, data, output) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STORES: weakref.WeakSet[RunStore] = weakref.WeakSet()


class RunStore:
    """A journal database. Subclasses open connections (:meth:`connect`) and say how
    parameters and binary columns are spelled."""

    placeholder = "?"
    blob_type = "BLOB"
    without_rowid = " WITHOUT ROWID"
    label = "journal"  # where it is, for messages (never a password)

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[int, str, Params] | None] = SimpleQueue()
        self._tokens = itertools.count(1)
        self._last = 0  # the last token given out
        self._committed = 0
        self._done = threading.Condition()
        self._failure: BaseException | None = None
        self._reader: Any = None
        self._read_lock = threading.Lock()
        self._closed = False
        with self.connection() as conn:
            self._migrate(conn)
        self._writer = threading.Thread(
            target=self._write_loop, name="dagentic-journal-writer", daemon=True
        )
        self._writer.start()
        _STORES.add(self)

    # -- what a dialect provides ---------------------------------------------------------

    def connect(self) -> Any:
        """A new DB-API connection, in a transaction-per-commit mode."""
        raise NotImplementedError

    def begin(self, cur: Any) -> None:
        """Open a write transaction (a driver that opens them itself needs nothing)."""

    def explain(self, exc: BaseException) -> str:
        """Why a write failed, in words a person can act on."""
        return f"{type(exc).__name__}: {exc}"

    # -- connections and migrations -------------------------------------------------------

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    def _version(self, conn: Any) -> int:
        cur = conn.cursor()
        try:
            cur.execute("SELECT version FROM dagentic_schema")
            row = cur.fetchone()
        except Exception:  # noqa: BLE001 - no such table: a new database
            conn.rollback()
            return 0
        return int(row[0]) if row else 0

    def _migrate(self, conn: Any) -> None:
        """Bring the database to :data:`VERSION`, one migration per transaction."""
        version = self._version(conn)
        if version > VERSION:
            raise JournalError(
                f"the run journal {self.label} was written by a newer dagentic (schema "
                f"version {version}; this one knows up to {VERSION}): upgrade dagentic, or "
                "point journal.url at another database"
            )
        for number in range(version + 1, VERSION + 1):
            cur = conn.cursor()
            try:
                self.begin(cur)
                for statement in MIGRATIONS[number - 1]:
                    cur.execute(
                        statement.format(blob=self.blob_type, without_rowid=self.without_rowid)
                    )
                if number == 1:
                    cur.execute("INSERT INTO dagentic_schema (version) VALUES (1)")
                else:
                    cur.execute(
                        self.sql("UPDATE dagentic_schema SET version = ? WHERE version = ?"),
                        (number, number - 1),
                    )
                conn.commit()
            except Exception:
                conn.rollback()
                if self._version(conn) >= number:  # another process migrated it first
                    continue
                raise

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[Any]:
        """This store's reading connection, for one caller at a time; a failure of the
        database is a :class:`JournalError` saying the journal cannot be ``what``."""
        with self._read_lock:
            try:
                if self._reader is None:
                    self._reader = self.connect()
                yield self._reader
            except JournalError:
                raise
            except Exception as exc:
                self._drop_reader()
                raise JournalError(
                    f"the run journal {self.label} cannot be {what} ({self.explain(exc)})"
                ) from exc

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query, on this store's reading connection."""
        with self._reading("read") as conn:
            cur = conn.cursor()
            try:
                cur.execute(self.sql(sql), tuple(params))
                return list(cur.fetchall())
            finally:
                conn.rollback()  # never hold a snapshot (SQLite's WAL) or a transaction open

    def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement now, in its own transaction; how many rows it changed. For
        what must be decided at once (a lease, a decision), not for events."""
        with self._reading("written") as conn:
            cur = conn.cursor()
            try:
                self.begin(cur)
                cur.execute(
                    self.sql(sql), tuple(text(p) if isinstance(p, str) else p for p in params)
                )
                count = cur.rowcount
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return int(count)

    def _drop_reader(self) -> None:
        """Forget the reading connection after a failure (the next use opens another)."""
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
            self._reader = None

    # -- the writer -----------------------------------------------------------------------

    def write(self, sql: str, params: Params) -> int:
        """Queue a statement (``params`` may be a function that gives them, called by the
        writer); returns a token for :meth:`flush`. Never blocks."""
        if self._failure is not None:
            raise self._failed()
        if self._closed:
            raise JournalError(f"the run journal {self.label} is closed")
        token = self._last = next(self._tokens)
        self._queue.put((token, sql, params))
        return token

    def flush(self, token: int | None = None, timeout: float = FLUSH_TIMEOUT) -> None:
        """Wait until every write queued up to ``token`` (default: all so far) is
        committed. Raises :class:`JournalError` if the writer failed."""
        token = self._last if token is None else token
        deadline = time.monotonic() + timeout
        with self._done:
            while self._committed < token and self._failure is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self._writer.is_alive():
                    raise JournalError(
                        f"the run journal {self.label} did not commit within {timeout:g} s"
                    )
                self._done.wait(min(left, 1.0))
        if self._failure is not None:
            raise self._failed()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def _failed(self) -> JournalError:
        assert self._failure is not None
        return JournalError(
            f"the run journal {self.label} cannot be written ({self.explain(self._failure)}); "
            "the run stops here, since it could not be resumed: free space or fix the "
            "journal, then `dagentic resume` it",
        )

    def _write_loop(self) -> None:
        conn = None
        try:
            conn = self.connect()
            while True:
                op = self._queue.get()
                if op is None:
                    return
                batch = [op]
                stop = False
                while len(batch) < BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                if self._failure is None:
                    try:
                        self._commit(conn, batch)
                    except BaseException as exc:  # noqa: BLE001 - recorded, every later write fails
                        with contextlib.suppress(Exception):  # the failure above is the news
                            conn.rollback()
                        self._failure = exc
                with self._done:
                    self._committed = batch[-1][0]
                    self._done.notify_all()
                if stop:
                    return
        except BaseException as exc:  # noqa: BLE001 - cannot even connect
            self._failure = exc
            with self._done:
                self._done.notify_all()
        finally:
            if conn is not None:
                conn.close()

    def _commit(self, conn: Any, batch: list[tuple[int, str, Params]]) -> None:
        cur = conn.cursor()
        self.begin(cur)
        for sql, group in itertools.groupby(batch, key=lambda op: op[1]):
            if not sql:  # a flush's marker
                continue
            rows = [p() if callable(p) else p for _, _, p in group]
            if len(rows) == 1:
                cur.execute(self.sql(sql), tuple(rows[0]))
            else:
                cur.executemany(self.sql(sql), [tuple(r) for r in rows])
        conn.commit()

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(FLUSH_TIMEOUT)
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- runs -----------------------------------------------------------------------------

    def add_run(self, row: dict[str, Any]) -> int:
        """Queue a new run (``row``: the columns of ``runs``), or a resumed one's new
        start (its status, owner and lease, and its plan as it is now: a changed plan
        that was resumed with ``plan_changed="rerun"``); its inputs and start stand."""
        return self.write(
            "INSERT INTO runs (run_id, kind, parent_id, plan_name, plan_json, plan_hash, "
            "plan_file, goal, inputs_json, status, created_at, updated_at, owner, lease_until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET status = 'running', updated_at = "
            "excluded.updated_at, finished_at = NULL, owner = excluded.owner, "
            "lease_until = excluded.lease_until, plan_name = excluded.plan_name, "
            "plan_json = excluded.plan_json, plan_hash = excluded.plan_hash, "
            "plan_file = COALESCE(excluded.plan_file, runs.plan_file)",
            (
                text(row["run_id"]),
                row["kind"],
                text(row.get("parent_id")),
                text(row["plan_name"]),
                row["plan_json"],
                row["plan_hash"],
                text(row.get("plan_file")),
                text(row.get("goal")),
                row["inputs_json"],
                row["at"],
                row["at"],
                row["owner"],
                row["lease_until"],
            ),
        )

    def end_run(
        self,
        run_id: str,
        status: str,
        error: dict[str, Any] | None,
        outputs: Callable[[], Any] | None,
        at: float,
    ) -> int:
        def params() -> tuple[Any, ...]:
            return (
                status,
                None if error is None else dumps(error),
                None if outputs is None else dumps(outputs()),
                at,
                at,
                run_id,
            )

        return self.write(
            "UPDATE runs SET status = ?, error_json = ?, outputs_json = ?, updated_at = ?, "
            "finished_at = ?, owner = NULL, lease_until = NULL WHERE run_id = ?",
            params,
        )

    def renew_lease(self, run_id: str, owner: str, until: float) -> int:
        return self.write(
            "UPDATE runs SET lease_until = ? WHERE run_id = ? AND owner = ?",
            (until, run_id, owner),
        )

    def take_lease(self, run_id: str, owner: str, until: float) -> bool:
        """Make ``owner`` the run's owner if nobody holds it: no owner, a lease that ran
        out, or an owner whose process on this machine is gone. One of two processes
        trying at once wins."""
        rows = self.read("SELECT owner, lease_until FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return False
        held_by, lease_until = rows[0]
        now = time.time()
        free = held_by is None or (lease_until or 0) < now or owner_alive(held_by) is False
        if not free:
            return False
        if held_by is None:
            changed = self.change(
                "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ? AND owner IS NULL",
                (owner, until, run_id),
            )
        else:
            changed = self.change(
                "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ? AND owner = ?",
                (owner, until, run_id, held_by),
            )
        return changed == 1

    def release_lease(self, run_id: str, owner: str) -> None:
        self.change(
            "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?",
            (run_id, owner),
        )

    def run(self, run_id: str) -> RunRecord | None:
        rows = self.read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return _run_record(rows[0]) if rows else None

    def find_runs(self, prefix: str) -> list[str]:
        """Ids of runs that start with ``prefix`` (a person types the first few)."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.read(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created_at LIMIT 20",
            (like,),
        )
        return [r[0] for r in rows]

    def runs(
        self,
        *,
        status: Iterable[str] = (),
        since: float | None = None,
        kind: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        statuses = list(status)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.read(
            f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY created_at DESC LIMIT ?",
            (*params, limit),
        )
        return [_run_record(r) for r in rows]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's events in order, each a dict (``output`` unpacked)."""
        rows = self.read(
            "SELECT seq, kind, step_id, item, attempt, status, at, data, output FROM events "
            "WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        found = []
        for seq, kind, step_id, item, attempt, status, at, data, blob in rows:
            event = json.loads(data) if data else {}
            if blob is not None:
                event["output"] = unpack_output(None, blob)
            event.update(
                seq=seq,
                kind=kind,
                step_id=step_id,
                item=item,
                attempt=attempt,
                status=status,
                at=at,
            )
            found.append(event)
        return found

    def forget(self, run_id: str) -> None:
        """Remove a run and everything the journal holds of it."""
        for table in ("events", "approvals", "records", "runs"):
            self.change(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def claim(self, run_id: str) -> None:
        """Make ``run_id`` free for a new run: a run of that id that nobody runs now is
        forgotten; one that runs is a :class:`JournalError`."""
        record = self.run(run_id)
        if record is None:
            return
        if record.status == "running" and not record.interrupted:
            raise JournalError(
                f"run '{run_id}' is running in another process ({record.owner}); choose "
                "another run id"
            )
        self.forget(run_id)

    def prune(self, before: float) -> list[str]:
        """Remove finished runs (and what they hold) that ended before ``before``; their
        ids."""
        rows = self.read(
            "SELECT run_id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ? "
            "AND status IN ('succeeded', 'failed', 'cancelled')",
            (before,),
        )
        ids = [r[0] for r in rows]
        for run_id in ids:
            self.forget(run_id)
        return ids

    # -- approvals ------------------------------------------------------------------------

    def ask(self, record: ApprovalRecord) -> int:
        """Queue a request for a person's decision on a call, or (``record.decision`` set)
        the decision an approver made at once. It replaces what was there for the same
        step and item: a request about other arguments (the plan changed), whose decision
        does not stand for these."""
        return self.write(
            "INSERT INTO approvals (run_id, step_id, item, reason_asked, tool, args_json, "
            "side_effects, requested_at, decision, decided_by, decided_at, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, step_id, item) DO UPDATE SET reason_asked = "
            "excluded.reason_asked, tool = excluded.tool, args_json = excluded.args_json, "
            "side_effects = excluded.side_effects, requested_at = excluded.requested_at, "
            "decision = excluded.decision, decided_by = excluded.decided_by, "
            "decided_at = excluded.decided_at, reason = excluded.reason",
            lambda: (
                record.run_id,
                record.step_id,
                -1 if record.item is None else record.item,
                record.reason_asked,
                record.tool,
                dumps(record.args),
                record.side_effects,
                record.requested_at,
                record.decision,
                record.decided_by,
                record.decided_at,
                record.reason,
            ),
        )

    def decide(
        self,
        run_id: str,
        step_id: str,
        item: int | None,
        *,
        approved: bool,
        by: str,
        reason: str | None,
    ) -> int:
        """Record a decision on a waiting call (``item`` None: every waiting item of the
        step); how many it decided."""
        params: list[Any] = [
            "approved" if approved else "denied",
            by,
            time.time(),
            reason,
            run_id,
            step_id,
        ]
        where = "run_id = ? AND step_id = ? AND decision IS NULL"
        if item is not None:
            where += " AND item = ?"
            params.append(item)
        return self.change(
            f"UPDATE approvals SET decision = ?, decided_by = ?, decided_at = ?, reason = ? "
            f"WHERE {where}",
            params,
        )

    def approvals(self, run_id: str | None = None, *, waiting: bool = True) -> list[ApprovalRecord]:
        """Requests (of one run, or all), only those without a decision when ``waiting``."""
        where: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            where.append("a.run_id = ?")
            params.append(run_id)
        if waiting:
            where.append("a.decision IS NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.read(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals a LEFT JOIN runs r "
            f"ON r.run_id = a.run_id{clause} ORDER BY a.requested_at, a.step_id, a.item",
            params,
        )
        return [
            ApprovalRecord(
                run_id=r[0],
                step_id=r[1],
                item=None if r[2] == -1 else r[2],
                reason_asked=r[3],
                tool=r[4],
                args=json.loads(r[5]),
                side_effects=r[6],
                requested_at=r[7],
                decision=r[8],
                decided_by=r[9],
                decided_at=r[10],
                reason=r[11],
                plan_name=r[12] or "",
            )
            for r in rows
        ]

    # -- agent records --------------------------------------------------------------------

    def add_record(self, run_id: str, seq: int, kind: str, data: Any) -> int:
        """Queue a record of an agent run (a plan version, a model call, the answer)."""
        return self.write(
            "INSERT INTO records (run_id, seq, kind, data) VALUES (?, ?, ?, ?)",
            lambda: (run_id, seq, kind, dumps(data)),
        )

    def records(self, run_id: str) -> list[tuple[int, str, Any]]:
        rows = self.read(
            "SELECT seq, kind, data FROM records WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [(seq, kind, json.loads(data)) for seq, kind, data in rows]

    # -- feedback -------------------------------------------------------------------------

    def add_feedback(
        self, run_id: str, verdict: str, note: str | None, plan_name: str | None, at: float
    ) -> None:
        """Record a person's verdict (good or bad) on a run, and wait for the commit."""
        self.flush(
            self.write(
                "INSERT INTO feedback (run_id, at, verdict, note, plan_name) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, at, verdict, text(note), text(plan_name)),
            )
        )

    def feedback(
        self, run_id: str | None = None
    ) -> list[tuple[str, float, str, str | None, str | None]]:
        """Feedback as (run_id, at, verdict, note, plan_name), oldest first: of one run, or
        of every run."""
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        return [
            (r[0], r[1], r[2], r[3], r[4])
            for r in self.read(
                f"SELECT run_id, at, verdict, note, plan_name FROM feedback {where} ORDER BY at",
                params,
            )
        ]

    def feedback_by_plan(self) -> dict[str, tuple[int, int]]:
        """Per library plan, how many runs of it were called good and bad."""
        counts: dict[str, tuple[int, int]] = {}
        rows = self.read(
            "SELECT plan_name, verdict, count(*) FROM feedback WHERE plan_name IS NOT NULL "
            "GROUP BY plan_name, verdict"
        )
        for name, verdict, n in rows:
            good, bad = counts.get(name, (0, 0))
            counts[name] = (good + n, bad) if verdict == "good" else (good, bad + n)
        return counts


def _run_record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        kind=row[1],
        parent_id=row[2],
        plan_name=row[3],
        plan=json.loads(row[4]),
        plan_hash=row[5],
        plan_file=row[6],
        goal=row[7],
        inputs=json.loads(row[8]),
        status=row[9],
        error=json.loads(row[10]) if row[10] else None,
        outputs=json.loads(row[11]) if row[11] else None,
        created_at=row[12],
        updated_at=row[13],
        finished_at=row[14],
        owner=row[15],
        lease_until=row[16],
    )


@atexit.register
def _close_all() -> None:
    """Commit what every open store queued before the process exits."""
    for store in list(_STORES):
        with contextlib.suppress(Exception):  # exiting: nothing left to tell
            store.close()
