"""Guard layer 2: a dedicated, locked-down DuckDB, in a process of its own, and query
execution with limits that hold.

The engine process (:mod:`._worker`) registers the configured sources (CSV/Parquet/JSON files
as views, DuckDB files attached), then turns external access off except for exactly those
files, keeps extensions from installing or loading, caps memory, threads and spilling, and
locks its configuration. A query that slipped past layer 1 still cannot read or write host
files. Every file a plan-named source reads must resolve inside ``sql.allowed_roots``.

Limits: each query runs on its own cursor with rows capped while fetching and an output-size
cap. At its deadline the query is interrupted; a query that does not stop within
:data:`GRACE` seconds (DuckDB sees an interrupt only between chunks of work, not inside one
long function call such as ``repeat('x', 2000000000)``) has its process killed, and the
next query starts a new one. The process runs under an address-space limit of
``memory_limit`` plus headroom, because DuckDB's ``memory_limit`` does not count the values
an expression builds. A cancelled step (its own ``timeout``, a run deadline) stops its query
the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from dagentic import (
    DagenticError,
    InvalidArgsError,
    PolicyBlockedError,
    ResourceLimitError,
    StepTimeoutError,
    ToolError,
    run_in_thread,
)

from ._worker import to_json_value

__all__ = ["GRACE", "SqlEngine", "to_json_value"]

WORKER = Path(__file__).with_name("_worker.py")
GRACE = 1.0  # seconds an interrupted query has to stop before its process is killed
START_TIMEOUT = 120.0  # seconds to open the sources
FRAME_LIMIT = 64 * 2**20  # the largest reply read from the engine process
ENV_KEPT = {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "SYSTEMROOT"}
ERRORS: dict[str, type[DagenticError]] = {
    "ToolError": ToolError,
    "InvalidArgsError": InvalidArgsError,
    "PolicyBlockedError": PolicyBlockedError,
    "ResourceLimitError": ResourceLimitError,
}
_LIVE: weakref.WeakSet[_Process] = weakref.WeakSet()


class _Call:
    """One request to the engine process, answered once."""

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.done = threading.Event()
        self.reply: dict[str, Any] = {}
        self._wake: Callable[[], None] | None = None

    def answer(self, reply: dict[str, Any]) -> None:
        if not self.done.is_set():
            self.reply = reply
            self.done.set()
            wake = self._wake
            if wake is not None:
                wake()

    async def wait(self) -> None:
        """Until the call is answered; on the event loop, so no thread waits for a query."""
        if self.done.is_set():
            return
        event = anyio.Event()
        token = anyio.lowlevel.current_token()

        def wake() -> None:  # from the reader thread
            with contextlib.suppress(Exception):  # the loop is gone: nobody waits any more
                anyio.from_thread.run_sync(event.set, token=token)

        self._wake = wake
        try:
            if not self.done.is_set():  # answered before wake was set: done is seen here
                await event.wait()
        finally:
            self._wake = None


class _Process:
    """The engine process: requests out, a reader thread that hands each reply to its call."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.temp = tempfile.mkdtemp(prefix="dagentic-sql-")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), json.dumps({**init, "temp_directory": self.temp})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C is the parent's to handle
            env=_worker_env(),
        )
        self.lock = threading.Lock()  # calls and ended
        self.writing = threading.Lock()  # one frame at a time to the process
        self.calls: dict[int, _Call] = {0: _Call(0)}
        self.ids = itertools.count(1)
        self.ended: str | None = None  # why the process is gone (or going), once it is
        _LIVE.add(self)
        self.reader = threading.Thread(target=self._read, daemon=True, name="dagentic-sql-reader")
        self.reader.start()

    @property
    def alive(self) -> bool:
        return self.ended is None

    def submit(self, request: dict[str, Any]) -> _Call:
        with self.lock:
            call = _Call(next(self.ids))
            ended = self.ended
            if ended is None:
                self.calls[call.id] = call
        if ended is not None:
            call.answer({"error": _ended(ended)})
        else:
            self._send({**request, "id": call.id})
        return call

    def interrupt(self, call: _Call) -> None:
        self._send({"op": "interrupt", "id": call.id})

    def kill(self, why: str) -> None:
        """End the process now; the calls still waiting are answered with ``why``."""
        with self.lock:
            self.ended = self.ended or why  # no new call goes to it from now on
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """Let the process finish (its stdin closes), and kill it if it does not."""
        with self.writing, contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill("the SQL engine was closed")
            self.proc.wait()
        self.reader.join(timeout=5)  # it closes stdout and removes the temporary folder

    def _send(self, request: dict[str, Any]) -> None:
        body = json.dumps(request, ensure_ascii=False).encode()
        try:
            with self.writing:
                if self.proc.stdin is not None:
                    self.proc.stdin.write(struct.pack(">I", len(body)) + body)
                    self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the process is gone: the reader answers every waiting call

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            head = out.read(4)
            if len(head) < 4:
                break
            (size,) = struct.unpack(">I", head)
            if size > FRAME_LIMIT:
                self.kill("the SQL engine sent a reply larger than it may")
                break
            body = out.read(size)
            if len(body) < size:
                break
            try:
                reply = json.loads(body)
                call = self.calls.pop(int(reply["id"]))
            except (ValueError, KeyError, TypeError):
                self.kill("the SQL engine sent a reply that is not one")
                break
            call.answer(reply)
        code = self.proc.wait()
        with self.lock:
            why = self.ended or f"the SQL engine process ended unexpectedly (exit code {code})"
            self.ended = why
            waiting, self.calls = list(self.calls.values()), {}
        for call in waiting:
            call.answer({"error": _ended(why)})
        with self.writing, contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        out.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def _worker_env() -> dict[str, str]:
    """The engine process's environment: no secret of this process (API keys) goes along,
    since nothing there needs one."""
    kept = {k: v for k, v in os.environ.items() if k in ENV_KEPT or k.startswith("LC_")}
    return {**kept, "MALLOC_ARENA_MAX": "2"}


class SqlEngine:
    """One hardened DuckDB, in its own process, over a set of named sources. ``roots``, when
    given, are the folders every file read must resolve inside (plan-named sources)."""

    def __init__(
        self,
        sources: dict[str, Any],
        *,
        memory_limit: str = "512MB",
        threads: int = 2,
        roots: list[Path] | None = None,
    ) -> None:
        self.sources = sources
        self._init = {
            "sources": {
                name: {"path": str(s.path), "allow_write": bool(s.allow_write)}
                for name, s in sources.items()
            },
            "roots": None if roots is None else [str(Path(r).expanduser()) for r in roots],
            "memory_limit": memory_limit,
            "threads": threads,
            "frame_limit": FRAME_LIMIT,
        }
        self._starting = threading.Lock()
        self._process: _Process | None = None
        described = self._start()
        self.tables: dict[str, str] = described["tables"]
        self.writable: set[str] = set(described["writable"])
        self.relations: dict[str, str] = described["relations"]
        self.table_functions: set[str] = set(described["table_functions"])

    @property
    def pid(self) -> int | None:
        """The engine process's id while it runs (to watch its memory, say)."""
        process = self._process
        return process.proc.pid if process is not None and process.alive else None

    def _start(self) -> dict[str, Any]:
        process = _Process(self._init)
        call = process.calls[0]
        if not call.done.wait(START_TIMEOUT):
            process.kill(f"the SQL engine did not open its sources within {START_TIMEOUT:g}s")
            call.done.wait()
        if "error" in call.reply:
            process.close()
            raise _error(call.reply["error"])
        self._process = process
        return call.reply["ok"]

    def _live(self) -> _Process:
        """The running engine process; a new one if the last was killed or died."""
        with self._starting:
            if self._process is None or not self._process.alive:
                self._start()
            assert self._process is not None
            return self._process

    # -- queries ----------------------------------------------------------------------

    async def run(
        self,
        sql: str,
        params: list[Any] | None,
        *,
        max_rows: int,
        max_bytes: int,
        timeout: float,
        reads: list[str] | None = None,
        write_to: str | None = None,
        write_reads: list[str] | None = None,
        taint: list[str] | None = None,
        allow_untrusted: bool = False,
        step: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Run one (already guarded) statement; rows as JSON-safe dicts, and under
        ``tainted`` the sources of ``reads`` (None: any) that hold untrusted data.

        A write to source ``write_to`` that carries untrusted data (``taint``: where the
        data in its arguments came from; or a tainted source among ``write_reads``, the
        sources whose rows it reads, None: any) is refused with ``policy_blocked`` naming
        ``step``, unless ``allow_untrusted`` (the step's opt-in); with it, the write marks
        ``write_to`` tainted (see ``_worker.py``).

        ``key``: the write's idempotency key. It is recorded in ``write_to``'s file with
        the write, in its transaction; a write whose key is recorded there runs nothing
        and answers what the first one did, with ``replayed: true``."""
        request = {
            "op": "query",
            "sql": sql,
            "params": params,
            "max_rows": max_rows,
            "max_bytes": max_bytes,
            "reads": reads,
            "write_to": write_to,
            "write_reads": write_reads,
            "taint": taint,
            "allow_untrusted": allow_untrusted,
            "step": step,
            "key": key or None,
        }
        message = f"sql.query: the query did not finish within {timeout:g}s and was interrupted"
        return await self._call(request, timeout, message)

    async def schema(self, sample_rows: int = 3, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Tables with columns, types, row counts and a few rows, for a planner."""
        late = f"sql.schema: describing the tables did not finish within {timeout:g}s"
        return await self._call({"op": "schema", "sample_rows": sample_rows}, timeout, late)

    async def _call(self, request: dict[str, Any], timeout: float, late: str) -> Any:
        process, call = await run_in_thread(self._submit, request)
        try:
            with anyio.move_on_after(timeout):
                await call.wait()
            if not call.done.is_set():
                _stop(process, call, OVERRAN)
                # answered by the query stopping, or by the kill GRACE later
                await call.wait()
                if "ok" not in call.reply:
                    raise StepTimeoutError(late, timeout=timeout)
        finally:
            if not call.done.is_set():  # cancelled: stop the query, whatever it is doing
                _stop(process, call, CANCELLED)
        if "error" in call.reply:
            raise _error(call.reply["error"], timeout=timeout, late=late)
        return call.reply["ok"]

    def _submit(self, request: dict[str, Any]) -> tuple[_Process, _Call]:
        process = self._live()
        return process, process.submit(request)

    @property
    def busy(self) -> bool:
        """Whether a query or schema call is waiting on the engine process."""
        process = self._process
        return process is not None and process.alive and bool(process.calls)

    def close(self) -> None:
        """End the engine process (it restarts if the engine is used again)."""
        with self._starting:
            if self._process is not None:
                self._process.close()


OVERRAN = (
    "the SQL engine was restarted: another query overran its time limit and did not stop "
    "when interrupted; run this query again"
)
CANCELLED = (
    "the SQL engine was restarted: a cancelled query did not stop when interrupted; run "
    "this query again"
)


def _stop(process: _Process, call: _Call, why: str) -> None:
    """Interrupt ``call`` and kill its process if the query has not stopped GRACE seconds
    later (in threads of their own: a frozen process must not block the caller)."""

    def stop() -> None:
        threading.Thread(target=process.interrupt, args=(call,), daemon=True).start()
        if not call.done.wait(GRACE):
            process.kill(why)

    threading.Thread(target=stop, daemon=True, name="dagentic-sql-stop").start()


def _ended(why: str) -> dict[str, Any]:
    return {"kind": "ended", "message": why, "fields": {}}


def _error(error: dict[str, Any], *, timeout: float = 0.0, late: str = "") -> DagenticError:
    kind, message = str(error.get("kind")), str(error.get("message"))
    fields = error.get("fields")
    if not isinstance(fields, dict):
        fields = {}
    if kind == "interrupted":
        return StepTimeoutError(late, timeout=timeout)
    if kind == "ended":
        return ToolError(f"sql: {message}", retryable=True)
    return ERRORS.get(kind, ToolError)(message, **fields)


@atexit.register
def _close_all() -> None:
    for process in list(_LIVE):
        if process.alive:
            process.close()
