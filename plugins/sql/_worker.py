"""The SQL engine's own process: one locked-down DuckDB connection, queried over a pipe.

:class:`~.engine.SqlEngine` runs this file as ``python -I _worker.py``; it imports only the
standard library and duckdb. Requests come on stdin, replies go to stdout, each a frame: a
4-byte big-endian length and UTF-8 JSON. The first request opens the sources; each later one
runs on its own cursor in its own thread, so an ``interrupt`` request can stop it.

Why a process of its own: DuckDB's ``memory_limit`` covers its buffer pool only, not the
values one expression builds (``repeat('x', 2000000000)`` allocates gigabytes), and an
interrupt is seen only between chunks of work, not inside one long function call. So this
process runs under an address-space limit (an allocation past it fails as out of memory),
and the parent kills it when an interrupt goes unanswered.

Files: every file a source reads must resolve inside ``roots`` (when given). A data file is
opened here, checked by the path of what was opened (``/proc/self/fd/N``, so no symlink,
at any depth, and no swap after the check can redirect it), and DuckDB reads that very open
file through ``/proc/self/fd/N``. A DuckDB file is attached by its real path, and every file
DuckDB opened while attaching is checked the same way (and must be the very file checked
before). A hard link is the file it links to, wherever that lies, and no path tells it
apart: a file with more than one name (``st_nlink > 1``, of the file held open) is refused
in a plan-named source, even one whose other name is inside the roots too. Sources from
``sql.sources`` (the operator's) are read whatever they are.

Taint: a DuckDB source that untrusted data was written to keeps a record of it in a table
of its own, ``_dagentic_taint`` (where the data came from, which table, when), written in
the same transaction as the data, so the file carries it to every later run and reader. A
query's reply says which of the sources it read hold such data (``tainted``); its output
is then untrusted, and a write that reads such a source is refused unless the step opted
in (``allow_untrusted``; checked before the write runs and again before it commits). The
record is hidden from plans: no table of that name is listed, and no statement naming it
runs.

Idempotency keys: a write that comes with a key (a tool call's, stable across the attempts
of a step and across resumes of its run) records it in its source's table
``_dagentic_idempotency`` (key, when, rows changed, and the reply), in the same transaction
as the write. A write whose key is recorded there runs no statement: it gets the first
one's reply, marked ``replayed``. Writes with one key run one at a time. The table is
hidden from plans as the taint record is.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
import math
import os
import re
import resource
import stat
import struct
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import duckdb

FILE_KINDS = {
    ".csv": "read_csv_auto",
    ".tsv": "read_csv_auto",
    ".parquet": "read_parquet",
    ".json": "read_json_auto",
    ".ndjson": "read_json_auto",
    ".jsonl": "read_json_auto",
}
DB_SUFFIXES = (".duckdb", ".db")
TAINT_TABLE = "_dagentic_taint"  # in a DuckDB source: where untrusted data written to it came from
KEYS_TABLE = "_dagentic_idempotency"  # in a DuckDB source: the idempotency keys of its writes
INTERNAL_TABLES = (TAINT_TABLE, KEYS_TABLE)  # dagentic's own: never listed, never named
PROC_FD = "/proc/self/fd"
MAX_RUNNING = 4  # queries and schema calls at once; more wait their turn, in arrival order
HEADROOM = 512 * 2**20  # address space past memory_limit: what DuckDB does not count, threads
MESSAGE_CHARS = 20_000  # longest error message sent back
FETCH_BATCH = 64  # rows converted at once, so one batch of big values stays small
UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class Failure(Exception):
    """An error to send back: the name of the dagentic error to raise, message, fields."""

    def __init__(self, kind: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS]
        self.fields = fields


class Database:
    """One hardened DuckDB connection over a set of named sources."""

    def __init__(
        self,
        sources: dict[str, dict[str, Any]],
        *,
        roots: list[str] | None,
        memory_limit: str,
        threads: int,
        temp_directory: str,
    ) -> None:
        self.roots = roots
        self.real_roots = None if roots is None else [os.path.realpath(r) for r in roots]
        self.memory_limit = memory_limit
        self.writable: set[str] = set()
        self.tables: dict[str, str] = {}  # lower-case name -> source name
        self.relations: dict[str, str] = {}  # short name -> SQL that names it exactly
        self.pinned: dict[str, str] = {}  # /proc/self/fd/N -> the file it is, for messages
        # source -> where the untrusted data it holds came from; a source is marked here
        # before the data is written, so a reader that saw the data sees the mark
        self.tainted: dict[str, set[str]] = {}
        self.taint_lock = threading.Lock()
        self.keyed: set[str] = set()  # sources whose file has a KEYS_TABLE
        self.key_locks: dict[tuple[str, str], tuple[threading.Lock, list[int]]] = {}
        self.keys_lock = threading.Lock()  # key_locks, creating
        self.creating: dict[str, threading.Lock] = {}  # a source's KEYS_TABLE, until it is
        self.search_path: str | None = None
        self.connection = self._connect(sources, memory_limit, threads, temp_directory)
        self.table_functions = sorted(
            name
            for (name,) in self.connection.execute(
                "SELECT DISTINCT function_name FROM duckdb_functions() "
                "WHERE function_type IN ('table', 'table_macro') EXCEPT SELECT function_name "
                "FROM duckdb_functions() WHERE function_type NOT IN ('table', 'table_macro')"
            ).fetchall()
        )

    # -- setup ------------------------------------------------------------------------

    def _connect(
        self, sources: dict[str, dict[str, Any]], memory_limit: str, threads: int, temp: str
    ) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "memory_limit": memory_limit,
                "threads": threads,
                "temp_directory": temp,
            },
        )
        con.execute("SET enable_progress_bar = false")
        spill = 4 * memory_bytes(con)  # spilling to disk is bounded too
        con.execute(f"SET max_temp_directory_size = '{spill}B'")
        allowed: list[str] = []
        attached: list[str] = []
        for name, source in sources.items():
            allowed += self._register(con, name, source)
            if Path(source["path"]).suffix.lower() in DB_SUFFIXES:
                attached.append(f"{_ident(name)}.main")
        if allowed:
            con.execute("SET allowed_paths = ?", [allowed])
        # A DuckDB source's tables are readable by their short names too. search_path is
        # per connection, so every cursor sets it (it may, with the configuration locked).
        self.search_path = (
            f"SET search_path = {_literal(','.join(['main', *attached]))}" if attached else None
        )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def _register(
        self, con: duckdb.DuckDBPyConnection, name: str, source: dict[str, Any]
    ) -> list[str]:
        path = Path(source["path"]).expanduser().resolve()
        if not path.exists():
            raise Failure(
                "ToolError",
                f"sql: source {name!r}: {path} does not exist; fix the sql.sources setting",
            )
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_KINDS)
            if not files:
                raise Failure(
                    "ToolError",
                    f"sql: source {name!r}: {path} holds no .csv, .parquet or .json files",
                )
            pinned = [self._pin(file, name) for file in files]
            for file, opened in zip(files, pinned, strict=True):
                self._view(con, file.stem, file.suffix, opened, name)
            return pinned
        if path.suffix.lower() in DB_SUFFIXES:
            return self._attach(con, name, path, allow_write=bool(source.get("allow_write")))
        if path.suffix.lower() in FILE_KINDS:
            opened = self._pin(path, name)
            self._view(con, name, path.suffix, opened, name)
            return [opened]
        raise Failure(
            "ToolError",
            f"sql: source {name!r}: {path.name} is not a .duckdb, .csv, .parquet "
            "or .json file, nor a folder of them",
        )

    def _pin(self, file: Path, source: str) -> str:
        """Open ``file``, check what was opened, and return a path that reads that very
        open file (``/proc/self/fd/N``; its real path where there is no /proc)."""
        self._check_inside(file, os.path.realpath(file), source)  # before opening anything
        try:
            fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise Failure(
                "ToolError", f"sql: source {source!r}: cannot open {file}: {exc.strerror}"
            ) from exc
        try:
            pinned = f"{PROC_FD}/{fd}"
            real = os.readlink(pinned) if os.path.isdir(PROC_FD) else os.path.realpath(file)
            self._check_inside(file, real, source)  # what was opened, not what was named
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise Failure("ToolError", f"sql: source {source!r}: {file} is not a regular file")
            self._check_links(file, info.st_nlink, source)  # of the file held open
        except BaseException:
            os.close(fd)
            raise
        if not os.path.isdir(PROC_FD):
            os.close(fd)
            return real
        self.pinned[pinned] = str(file)
        return pinned

    def _check_inside(self, shown: Path, real: str, source: str) -> None:
        if self.real_roots is None:
            return
        if any(
            real == root or real.startswith(root.rstrip(os.sep) + os.sep)
            for root in self.real_roots
        ):
            return
        roots = ", ".join(str(r) for r in self.roots or []) or "none are set"
        raise Failure(
            "PolicyBlockedError",
            f"sql: refused: {str(shown)!r} in source {source!r} leads outside the folders "
            f"plans may read (sql.allowed_roots: {roots}); only files inside them are read",
            source=source,
        )

    def _check_links(self, shown: Path, links: int, source: str) -> None:
        """Refuse a file with more than one name (hard links) in a plan-named source: a
        hard link is the file it links to, wherever that lies, and no path tells it apart."""
        if self.real_roots is None or links <= 1:
            return
        roots = ", ".join(str(r) for r in self.roots or []) or "none are set"
        raise Failure(
            "PolicyBlockedError",
            f"sql: refused: {str(shown)!r} in source {source!r} is a hard link (the file has "
            f"{links} names); a hard link may point outside the folders plans may read "
            f"(sql.allowed_roots: {roots}) and no path shows it, so files with more than one "
            "name are not read; copy the file instead",
            source=source,
        )

    def _attach(
        self, con: duckdb.DuckDBPyConnection, name: str, path: Path, *, allow_write: bool
    ) -> list[str]:
        pinned = self._pin(path, name)
        real = os.readlink(pinned) if pinned.startswith(PROC_FD) else pinned
        held = os.stat(pinned)
        wal = real + ".wal"
        if os.path.lexists(wal):
            self._check_inside(Path(wal), os.path.realpath(wal), name)
            self._check_links(Path(wal), os.lstat(wal).st_nlink, name)
        before = _open_files()
        mode = "" if allow_write else " (READ_ONLY)"
        con.execute(f"ATTACH {_literal(real)} AS {_ident(name)}{mode}")
        for opened, info in _open_files() - before:  # what DuckDB itself opened
            self._check_inside(path, opened, name)
            self._check_links(Path(opened), info[2], name)
            if opened == real and info[:2] != (held.st_dev, held.st_ino) and self.real_roots:
                raise Failure(  # its name was given to another file after the check
                    "PolicyBlockedError",
                    f"sql: refused: {str(path)!r} in source {name!r} changed while it was "
                    "opened; try again",
                    source=name,
                )
        self._read_taint(con, name)
        for (table,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
            "AND table_name NOT IN (SELECT unnest(?::VARCHAR[]))",
            [name, list(INTERNAL_TABLES)],
        ).fetchall():
            self.tables[f"{name}.{table}".lower()] = name
            self.tables.setdefault(table.lower(), name)
            self.relations.setdefault(table.lower(), f"{_ident(name)}.{_ident(table)}")
            if allow_write:
                self.writable.add(f"{name}.{table}".lower())
                if self.tables[table.lower()] == name:
                    self.writable.add(table.lower())
        return [real, wal]

    def _has_table(self, con: duckdb.DuckDBPyConnection, name: str, table: str) -> bool:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
            [name, table],
        ).fetchone()
        return bool(found and found[0])

    def _read_taint(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """What the source's taint record says (kept in the file by earlier writes), and
        whether it keeps idempotency keys."""
        if self._has_table(con, name, KEYS_TABLE):
            self.keyed.add(name)
        if self._has_table(con, name, TAINT_TABLE):
            origins = con.execute(
                f"SELECT DISTINCT origin FROM {_ident(name)}.{_ident(TAINT_TABLE)}"
            ).fetchall()
            # a record without rows still says untrusted data was there
            self.tainted[name] = {str(o) for (o,) in origins} or {"an earlier write"}

    def tainted_among(self, reads: list[str] | None) -> dict[str, list[str]]:
        """The sources of ``reads`` (None: every source) that hold untrusted data, with
        where it came from."""
        with self.taint_lock:
            return {
                source: sorted(origins)
                for source, origins in self.tainted.items()
                if reads is None or source in reads
            }

    def _view(
        self, con: duckdb.DuckDBPyConnection, view: str, suffix: str, opened: str, source: str
    ) -> None:
        reader = FILE_KINDS[suffix.lower()]
        if view.lower() in self.tables:
            raise Failure(
                "ToolError",
                f"sql: source {source!r}: table {view!r} is already defined by "
                f"source {self.tables[view.lower()]!r}",
            )
        con.execute(f"CREATE VIEW {_ident(view)} AS SELECT * FROM {reader}({_literal(opened)})")
        self.tables[view.lower()] = source
        self.relations[view.lower()] = _ident(view)

    def close(self) -> None:
        """Close the connection and the files it reads through."""
        self.connection.close()
        for pinned in self.pinned:
            os.close(int(pinned.rsplit("/", 1)[1]))
        self.pinned.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "writable": sorted(self.writable),
            "relations": self.relations,
            "table_functions": self.table_functions,
            "tainted": self.tainted_among(None),
        }

    # -- queries ----------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self.connection.cursor()
        if self.search_path:
            cursor.execute(self.search_path)
        return cursor

    def query(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        params: list[Any] | None,
        max_rows: int,
        max_bytes: int,
        *,
        reads: list[str] | None = None,
        write_to: str | None = None,
        write_reads: list[str] | None = None,
        taint: list[str] | None = None,
        allow_untrusted: bool = False,
        step: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Run one statement; rows as JSON-safe dicts, cut at max_rows and max_bytes.
        ``reads`` are the sources it reads (None: it may read any), for the taint of its
        output; ``write_to`` the source a write statement writes, ``write_reads`` the
        sources whose rows that write reads (None: any), ``taint`` where untrusted data in
        its arguments came from, ``allow_untrusted`` the step's opt-in, ``key`` the write's
        idempotency key (see :meth:`_write`)."""
        self._check_statement(sql, writing=write_to is not None)
        if write_to is None:
            reply = self._execute(cursor, sql, params, max_rows, max_bytes)
        else:
            reply = self._write(
                cursor,
                sql,
                params,
                max_rows,
                max_bytes,
                str(write_to),
                write_reads,
                set(taint or ()),
                allow_untrusted=allow_untrusted,
                step=step,
                key=key or None,
            )
        # After the rows were read: a write that put untrusted data where they came from
        # had marked its source before, so this sees that mark.
        reply["tainted"] = self.tainted_among(reads)
        return reply

    def _write(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        params: list[Any] | None,
        max_rows: int,
        max_bytes: int,
        write_to: str,
        reads: list[str] | None,
        taint: set[str],
        *,
        allow_untrusted: bool,
        step: str | None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Run a write in a transaction of its own. Untrusted data reaches it only with the
        step's opt-in: a write reading a source that holds such data is refused without
        ``allow_untrusted``, and with it ``write_to`` is marked tainted (where the data came
        from), in the same transaction. The sources read are checked before the statement
        runs and again before it commits, so a write that tainted one meanwhile (and
        committed before this statement read it) is seen too.

        With an idempotency ``key``: if ``write_to`` recorded it, nothing runs and the
        reply is the recorded one, marked ``replayed``; else the key is recorded with the
        write, in its transaction (its primary key keeps a second record out even if
        this check were bypassed). Writes with one key wait for each other."""
        marked: set[str] = set()
        check = (cursor, sql, write_to, reads, taint, allow_untrusted, step)
        creating = bool(key) and write_to not in self.keyed  # its first keys: make the table
        with contextlib.ExitStack() as held:
            if key:
                held.enter_context(self._key_turn(write_to, key))
            if creating:
                held.enter_context(self._creating(write_to))
            cursor.execute("BEGIN TRANSACTION")
            try:
                earlier = self._recorded(cursor, write_to, key) if key else None
                if earlier is not None:
                    cursor.execute("ROLLBACK")
                    return earlier
                marked = self._taint_write(*check, marked)
                reply = self._execute(cursor, sql, params, max_rows, max_bytes)
                self._taint_write(*check, marked)
                if key:
                    self._record(cursor, write_to, key, reply, create=creating)
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    cursor.execute("ROLLBACK")
                raise
            if key:
                self.keyed.add(write_to)
        return reply

    @contextlib.contextmanager
    def _key_turn(self, source: str, key: str) -> Any:
        """Hold the turn of writes to ``source`` with idempotency ``key``."""
        with self.keys_lock:
            lock, users = self.key_locks.setdefault((source, key), (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self.keys_lock:
                users[0] -= 1
                if not users[0]:
                    del self.key_locks[(source, key)]

    @contextlib.contextmanager
    def _creating(self, source: str) -> Any:
        """Hold the making of ``source``'s key table, for the whole transaction that may
        make it: DuckDB refuses a second transaction making the same table at once, and a
        transaction whose snapshot is older than the table can neither see nor make it.
        Only the first keyed writes to a source wait for each other here."""
        with self.keys_lock:
            lock = self.creating.setdefault(source, threading.Lock())
        with lock:
            yield

    def _recorded(
        self, cursor: duckdb.DuckDBPyConnection, source: str, key: str
    ) -> dict[str, Any] | None:
        """The reply of the write to ``source`` that recorded ``key``, marked replayed."""
        if source not in self.keyed:
            return None
        row = cursor.execute(
            f"SELECT reply FROM {_ident(source)}.{_ident(KEYS_TABLE)} WHERE key = ?", [key]
        ).fetchone()
        if row is None:
            return None
        reply = json.loads(row[0])
        reply["replayed"] = True
        return reply

    def _record(
        self,
        cursor: duckdb.DuckDBPyConnection,
        source: str,
        key: str,
        reply: dict[str, Any],
        *,
        create: bool,
    ) -> None:
        """Record ``key`` in ``source``'s file, in the write's transaction, with the rows
        the write changed (its ``Count``, or the rows it returned; NULL when a RETURNING
        reply was cut) and its reply; ``create``: make the table if it is not there."""
        table = f"{_ident(source)}.{_ident(KEYS_TABLE)}"
        columns = [(c["name"], c["type"]) for c in reply["columns"]]
        if columns == [("Count", "BIGINT")] and reply["row_count"] == 1:
            changed = reply["rows"][0]["Count"]  # INSERT, UPDATE or DELETE
        else:
            changed = None if reply["truncated"] else reply["row_count"]
        if create:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key VARCHAR PRIMARY KEY, "
                '"at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp, '
                '"rows" BIGINT, reply VARCHAR NOT NULL)'
            )
        cursor.execute(
            f'INSERT INTO {table} (key, "rows", reply) VALUES (?, ?, ?)',
            [key, changed, json.dumps(reply, ensure_ascii=False)],
        )

    def _taint_write(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        write_to: str,
        reads: list[str] | None,
        taint: set[str],
        allow_untrusted: bool,
        step: str | None,
        marked: set[str],
    ) -> set[str]:
        """Refuse untrusted data (a tainted source among ``reads``, ``taint``) on its way
        into a write without the step's opt-in; with it, mark ``write_to`` with the origins
        not ``marked`` yet, and return all marked. The mark is made in memory before the
        data is written, so a reader that saw the data sees the mark."""
        tainted = self.tainted_among(reads)
        if (tainted or taint) and not allow_untrusted:
            raise Failure(
                "PolicyBlockedError",
                _untrusted_write(step, tainted, taint),
                **({"step": step} if step else {}),
                untrusted=sorted(taint | {f"sql:{source}" for source in tainted}),
            )
        # a tainted source writing into itself adds nothing to know
        new = (taint | {f"sql:{s}" for s in tainted if s != write_to}) - marked
        if new:
            with self.taint_lock:
                self.tainted.setdefault(write_to, set()).update(new)
            self._mark(cursor, write_to, sorted(new), sql)
        return marked | new

    def _mark(
        self, cursor: duckdb.DuckDBPyConnection, source: str, origins: list[str], sql: str
    ) -> None:
        """Record in ``source``'s file that untrusted data from ``origins`` goes into it."""
        table = f"{_ident(source)}.{_ident(TAINT_TABLE)}"
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (origin VARCHAR NOT NULL, "
            "statement VARCHAR, marked_at TIMESTAMP WITH TIME ZONE DEFAULT current_timestamp)"
        )
        cursor.executemany(
            f"INSERT INTO {table} (origin, statement) VALUES (?, ?)",
            [(origin, sql[:1000]) for origin in origins],
        )

    def _execute(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        params: list[Any] | None,
        max_rows: int,
        max_bytes: int,
    ) -> dict[str, Any]:
        try:
            cursor.execute(sql, params or None)
        except (duckdb.InterruptException, duckdb.OutOfMemoryException):
            raise
        except duckdb.Error as exc:
            raise self._explain(exc, sql) from exc
        if cursor.description is None:
            return {"columns": [], "rows": [], "row_count": 0, "truncated": False}
        columns = [{"name": d[0], "type": str(d[1])} for d in cursor.description]
        names = [c["name"] for c in columns]
        rows: list[dict[str, Any]] = []
        size = 2  # the brackets of the rows array
        truncated = False
        while len(rows) < max_rows and not truncated:
            batch = cursor.fetchmany(min(FETCH_BATCH, max_rows - len(rows)))
            if not batch:
                break
            for values in batch:
                row = {n: to_json_value(v) for n, v in zip(names, values, strict=True)}
                size += len(json.dumps(row, ensure_ascii=False).encode()) + (2 if rows else 0)
                if size > max_bytes:
                    truncated = True
                    break
                rows.append(row)
        if not truncated and len(rows) >= max_rows and cursor.fetchone() is not None:
            truncated = True
        return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}

    def _check_statement(self, sql: str, *, writing: bool) -> None:
        """DuckDB's own parser must see one SELECT (or, with writes allowed and the call
        made as a write, so its taint is checked, one INSERT, UPDATE or DELETE): COPY,
        ATTACH, DETACH, EXPORT... never reach execution."""
        for table in INTERNAL_TABLES:
            if table in sql.lower():
                raise Failure(
                    "PolicyBlockedError",
                    f"sql.query: refused by the engine: {table} is dagentic's own record",
                )
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise Failure("InvalidArgsError", f"sql.query: {str(exc).strip()}") from exc
        allowed = {duckdb.StatementType.SELECT}
        if self.writable and writing:
            allowed |= {
                duckdb.StatementType.INSERT,
                duckdb.StatementType.UPDATE,
                duckdb.StatementType.DELETE,
            }
        kinds = [s.type for s in statements]
        if len(kinds) != 1 or kinds[0] not in allowed:
            shown = ", ".join(k.name for k in kinds) or "nothing"
            raise Failure(
                "PolicyBlockedError",
                f"sql.query: refused by the engine: {shown} is not a single read-only query",
            )

    def columns(self, table: str) -> str:
        """``name TYPE, ...`` of one table, for error messages."""
        cursor = self.cursor()
        try:
            rows = cursor.execute(f"DESCRIBE {self.relations[table]}").fetchall()
        finally:
            cursor.close()
        return ", ".join(f"{row[0]} {row[1]}" for row in rows)

    def _explain(self, exc: duckdb.Error, sql: str) -> Failure:
        """DuckDB's error, with the schema a replan needs when a name was wrong: the columns
        of the tables the query names, and every table's name."""
        message = str(exc).strip()
        for pinned, file in self.pinned.items():  # name files as the user knows them
            message = message.replace(pinned, file)
        if isinstance(exc, duckdb.CatalogException | duckdb.BinderException):
            tables = ", ".join(sorted(self.relations))
            named = [
                t
                for t in sorted(self.relations)
                if re.search(rf"\b{re.escape(t)}\b", sql, re.IGNORECASE)
            ]
            columns = "".join(f"\nColumns of {t}: {self.columns(t)}" for t in named)
            return Failure(
                "InvalidArgsError",
                f"sql.query: {message}{columns}\nTables: {tables} (sql.schema describes them)",
            )
        if isinstance(exc, duckdb.InvalidInputException) and "read-only mode" in message:
            return Failure("PolicyBlockedError", f"sql.query: refused by the engine: {message}")
        if isinstance(exc, duckdb.InvalidInputException) and "parameter" in message.lower():
            return Failure("InvalidArgsError", f"sql.query: {message}")
        if isinstance(exc, duckdb.ParserException):
            return Failure("InvalidArgsError", f"sql.query: {message}")
        if isinstance(exc, duckdb.PermissionException) or (
            isinstance(exc, duckdb.InvalidInputException) and "configuration" in message
        ):
            return Failure("PolicyBlockedError", f"sql.query: refused by the engine: {message}")
        return Failure("ToolError", f"sql.query: {message}")

    def out_of_memory(self) -> Failure:
        return Failure(
            "ResourceLimitError",
            "sql.query: the query needs more memory than the SQL engine may use "
            f"(sql.memory_limit: {self.memory_limit}); aggregate, filter or LIMIT in SQL "
            "so that less is built or held at once",
        )

    def schema(self, cursor: duckdb.DuckDBPyConnection, sample_rows: int) -> list[dict[str, Any]]:
        """Tables with columns, types, row counts and a few rows, for a planner."""
        described = []
        for table in sorted(self.relations):
            ident = self.relations[table]
            columns = [
                {"name": r[0], "type": r[1]} for r in cursor.execute(f"DESCRIBE {ident}").fetchall()
            ]
            count = cursor.execute(f"SELECT count(*) FROM {ident}").fetchone()
            cursor.execute(f"SELECT * FROM {ident} LIMIT {int(sample_rows)}")
            names = [c["name"] for c in columns]
            samples = [
                {n: to_json_value(v) for n, v in zip(names, r, strict=True)}
                for r in cursor.fetchall()
            ]
            entry = {
                "table": table,
                "source": self.tables[table],
                "columns": columns,
                "row_count": count[0] if count else 0,
                "sample": samples,
            }
            if self.tables[table] in self.tainted_among(None):  # its rows may be anyone's
                entry["untrusted"] = True
            described.append(entry)
        return described


def _untrusted_write(step: str | None, tainted: dict[str, list[str]], taint: set[str]) -> str:
    """Why a write carrying untrusted data is refused, and the fix."""
    where = f"step '{step}': " if step else ""
    if tainted:
        many = len(tainted) > 1
        origins = sorted({origin for found in tainted.values() for origin in found})
        what = (
            f"its statement reads source{'s' if many else ''} "
            f"{', '.join(repr(source) for source in sorted(tainted))}, which "
            f"hold{'' if many else 's'} untrusted data (from {', '.join(origins)})"
        )
    else:
        what = f"its arguments carry untrusted data from {', '.join(sorted(taint))}"
    return (
        f"{where}tool 'sql.query' writes, and {what}; set 'allow_untrusted: true' on the step "
        "if that is intended"
    )


def to_json_value(value: Any) -> Any:
    """A DuckDB value as JSON: dates as ISO text, decimals as numbers, blobs as base64,
    NaN and infinities as null, nested lists/structs/maps converted throughout."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return str(value)


def memory_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's memory_limit in bytes (it reads it back as, say, ``488.2 MiB``)."""
    (shown,) = con.execute("SELECT current_setting('memory_limit')").fetchone() or ("0",)
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", str(shown))
    if match is None or match[2].lower() not in UNITS:
        raise Failure("ToolError", f"sql: cannot read DuckDB's memory_limit {shown!r}")
    return int(float(match[1]) * UNITS[match[2].lower()])


def limit_address_space(extra: int) -> None:
    """Cap this process at the address space it has now plus ``extra`` bytes: a bigger
    allocation fails (DuckDB reports it as out of memory) instead of growing without end."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            size = re.search(r"VmSize:\s+(\d+) kB", status.read())
    except OSError:
        return  # no /proc: no address-space accounting to start from
    if size is not None:
        limit = int(size[1]) * 1024 + extra
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _open_files() -> set[tuple[str, tuple[int, int, int]]]:
    """The files this process has open (none where there is no /proc): the path and
    (device, inode, link count) of each, of what is open, not of what its path names now."""
    found = set()
    for fd in os.listdir(PROC_FD) if os.path.isdir(PROC_FD) else []:
        try:
            target = os.readlink(f"{PROC_FD}/{fd}")
            info = os.stat(f"{PROC_FD}/{fd}")  # the open file itself
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            found.add((target, (info.st_dev, info.st_ino, info.st_nlink)))
    return found


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- the process ------------------------------------------------------------------------


class Channel:
    """Frames in from stdin, frames out to a private copy of stdout (fd 1 goes to
    /dev/null, so nothing DuckDB prints can corrupt a frame)."""

    def __init__(self, frame_limit: int) -> None:
        self.inp: BinaryIO = sys.stdin.buffer
        self.out = os.fdopen(os.dup(1), "wb", buffering=0)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        self.frame_limit = frame_limit
        self.lock = threading.Lock()

    def read(self) -> dict[str, Any] | None:
        head = self.inp.read(4)
        if len(head) < 4:
            return None
        (size,) = struct.unpack(">I", head)
        body = self.inp.read(size)
        return json.loads(body) if len(body) == size else None

    def send(self, reply: dict[str, Any]) -> None:
        try:
            body = json.dumps(reply, ensure_ascii=False, allow_nan=False).encode()
        except (MemoryError, ValueError):
            body = b""
        if not body or len(body) > self.frame_limit:
            failure = Failure(
                "ResourceLimitError",
                "sql.query: the result is too large to send back; select fewer or smaller columns",
            )
            body = json.dumps({"id": reply.get("id"), "error": _error(failure)}).encode()
        with self.lock:
            self.out.write(struct.pack(">I", len(body)) + body)


def _error(failure: Failure) -> dict[str, Any]:
    return {"kind": failure.kind, "message": failure.message, "fields": failure.fields}


def serve(
    channel: Channel, db: Database, request: dict[str, Any], cursor: duckdb.DuckDBPyConnection
) -> None:
    """Answer one query or schema request on its own cursor."""
    reply: dict[str, Any] = {"id": request["id"]}
    try:
        if request["op"] == "schema":
            reply["ok"] = db.schema(cursor, int(request["sample_rows"]))
        else:
            reply["ok"] = db.query(
                cursor,
                request["sql"],
                request.get("params"),
                int(request["max_rows"]),
                int(request["max_bytes"]),
                reads=request.get("reads"),
                write_to=request.get("write_to"),
                write_reads=request.get("write_reads"),
                taint=request.get("taint"),
                allow_untrusted=bool(request.get("allow_untrusted")),
                step=request.get("step"),
                key=request.get("key"),
            )
    except Failure as failure:
        reply["error"] = _error(failure)
    except duckdb.InterruptException:
        reply["error"] = {"kind": "interrupted", "message": "interrupted", "fields": {}}
    except (MemoryError, duckdb.OutOfMemoryException):
        reply = {"id": request["id"], "error": _error(db.out_of_memory())}
    except Exception as exc:  # noqa: BLE001 - every failure goes back as a reply
        reply["error"] = _error(Failure("ToolError", f"sql.query: {type(exc).__name__}: {exc}"))
    finally:
        cursor.close()
    channel.send(reply)


def main() -> None:
    threading.stack_size(4 * 2**20)  # query threads live inside the address-space cap
    first = json.loads(sys.argv[1])
    channel = Channel(int(first["frame_limit"]))
    try:
        db = Database(
            first["sources"],
            roots=first["roots"],
            memory_limit=first["memory_limit"],
            threads=int(first["threads"]),
            temp_directory=first["temp_directory"],
        )
    except Failure as failure:
        channel.send({"id": 0, "error": _error(failure)})
        return
    except duckdb.Error as exc:
        channel.send({"id": 0, "error": _error(Failure("ToolError", f"sql: {exc}"))})
        return
    limit_address_space(memory_bytes(db.connection) + HEADROOM)
    channel.send({"id": 0, "ok": db.describe()})
    calls = _Calls(channel, db)
    while (request := channel.read()) is not None:
        if request["op"] == "interrupt":
            calls.interrupt(request["id"])
        else:
            calls.start(request)


class _Calls:
    """The requests being served, each on a thread and a cursor of its own, at most
    MAX_RUNNING at once: every cursor and thread takes memory inside the process's
    address-space cap, so twenty parallel steps must not open twenty."""

    def __init__(self, channel: Channel, db: Database) -> None:
        self.channel, self.db = channel, db
        self.lock = threading.Lock()
        self.turns = threading.Condition(self.lock)
        self.waiting: list[int] = []  # in arrival order
        self.running: dict[int, duckdb.DuckDBPyConnection | None] = {}
        self.interrupted: set[int] = set()  # while waiting

    def start(self, request: dict[str, Any]) -> None:
        with self.lock:
            self.waiting.append(request["id"])
        try:
            threading.Thread(target=self._serve, args=(request,), daemon=True).start()
        except RuntimeError:  # no thread can start: out of memory
            with self.lock:
                self.waiting.remove(request["id"])
            self.channel.send({"id": request["id"], "error": _error(self.db.out_of_memory())})

    def interrupt(self, request_id: int) -> None:
        with self.lock:
            cursor = self.running.get(request_id)
            if cursor is not None:
                cursor.interrupt()
            elif request_id in self.waiting or request_id in self.running:  # no cursor yet
                self.interrupted.add(request_id)
                self.turns.notify_all()

    def _serve(self, request: dict[str, Any]) -> None:
        request_id = request["id"]
        with self.turns:
            self.turns.wait_for(
                lambda: (
                    request_id in self.interrupted
                    or (
                        len(self.running) < MAX_RUNNING
                        and self.waiting.index(request_id) < MAX_RUNNING - len(self.running)
                    )
                )
            )
            self.waiting.remove(request_id)
            if request_id in self.interrupted:
                self.interrupted.discard(request_id)
                self.turns.notify_all()
                interrupted = {"kind": "interrupted", "message": "interrupted", "fields": {}}
                self.channel.send({"id": request_id, "error": interrupted})
                return
            self.running[request_id] = None  # its turn, before its cursor exists
        try:
            cursor = self.db.cursor()
        except (MemoryError, RuntimeError, duckdb.OutOfMemoryException):
            self._done(request_id)
            self.channel.send({"id": request_id, "error": _error(self.db.out_of_memory())})
            return
        with self.lock:
            self.running[request_id] = cursor
            if request_id in self.interrupted:  # while its cursor was being made
                self.interrupted.discard(request_id)
                cursor.interrupt()
        try:
            serve(self.channel, self.db, request, cursor)
        finally:
            self._done(request_id)

    def _done(self, request_id: int) -> None:
        with self.turns:
            self.running.pop(request_id, None)
            self.turns.notify_all()


if __name__ == "__main__":
    main()
    os._exit(0)  # stdin closed: the parent is done with this engine (or gone)
