"""Guard layer 2: a dedicated, locked-down DuckDB connection, and query execution.

The connection registers the configured sources (CSV/Parquet/JSON files as views, DuckDB
files attached), then turns external access off except for exactly those files, keeps
extensions from installing or loading, caps memory and threads, and locks its
configuration. A query that slipped past layer 1 still cannot read or write host files.
Each query runs on its own cursor in a worker thread, with rows capped while fetching, an
output-size cap, and a timeout that interrupts it and leaves the connection usable.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import duckdb
from dagentic import (
    InvalidArgsError,
    PolicyBlockedError,
    ResourceLimitError,
    StepTimeoutError,
    ToolError,
)

__all__ = ["SqlEngine", "to_json_value"]

FILE_KINDS = {
    ".csv": "read_csv_auto",
    ".tsv": "read_csv_auto",
    ".parquet": "read_parquet",
    ".json": "read_json_auto",
    ".ndjson": "read_json_auto",
    ".jsonl": "read_json_auto",
}
DB_SUFFIXES = (".duckdb", ".db")


class SqlEngine:
    """One hardened DuckDB connection over a set of named sources."""

    def __init__(
        self, sources: dict[str, Any], *, memory_limit: str = "512MB", threads: int = 2
    ) -> None:
        self.sources = sources
        self.writable: set[str] = set()
        self.tables: dict[str, str] = {}  # lower-case name -> source name
        self.relations: dict[str, str] = {}  # short name -> SQL that names it exactly
        self._search_path: str | None = None
        self.connection = self._connect(memory_limit, threads)
        self.table_functions = {
            name
            for (name,) in self.connection.execute(
                "SELECT DISTINCT function_name FROM duckdb_functions() "
                "WHERE function_type IN ('table', 'table_macro') EXCEPT SELECT function_name "
                "FROM duckdb_functions() WHERE function_type NOT IN ('table', 'table_macro')"
            ).fetchall()
        }

    # -- setup ------------------------------------------------------------------------

    def _connect(self, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "memory_limit": memory_limit,
                "threads": threads,
            },
        )
        allowed: list[str] = []
        attached: list[str] = []
        for name, source in self.sources.items():
            allowed += self._register(con, name, source)
            if Path(source.path).suffix.lower() in DB_SUFFIXES:
                attached.append(f"{_ident(name)}.main")
        if allowed:
            con.execute("SET allowed_paths = ?", [allowed])
        # A DuckDB source's tables are readable by their short names too. search_path is
        # per connection, so every cursor sets it (it may, with the configuration locked).
        self._search_path = (
            f"SET search_path = {_literal(','.join(['main', *attached]))}" if attached else None
        )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def _register(self, con: duckdb.DuckDBPyConnection, name: str, source: Any) -> list[str]:
        path = Path(source.path).expanduser().resolve()
        if not path.exists():
            raise ToolError(
                f"sql: source {name!r}: {path} does not exist; fix the sql.sources setting"
            )
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_KINDS)
            if not files:
                raise ToolError(
                    f"sql: source {name!r}: {path} holds no .csv, .parquet or .json files"
                )
            for file in files:
                self._view(con, file.stem, file, name)
            return [str(f) for f in files]
        if path.suffix.lower() in DB_SUFFIXES:
            mode = "" if source.allow_write else " (READ_ONLY)"
            con.execute(f"ATTACH {_literal(str(path))} AS {_ident(name)}{mode}")
            for (table,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [name]
            ).fetchall():
                self.tables[f"{name}.{table}".lower()] = name
                self.tables.setdefault(table.lower(), name)
                self.relations.setdefault(table.lower(), f"{_ident(name)}.{_ident(table)}")
                if source.allow_write:
                    self.writable.add(f"{name}.{table}".lower())
                    if self.tables[table.lower()] == name:
                        self.writable.add(table.lower())
            return [str(path), str(path) + ".wal"]
        if path.suffix.lower() in FILE_KINDS:
            self._view(con, name, path, name)
            return [str(path)]
        raise ToolError(
            f"sql: source {name!r}: {path.name} is not a .duckdb, .csv, .parquet "
            "or .json file, nor a folder of them"
        )

    def _view(self, con: duckdb.DuckDBPyConnection, view: str, file: Path, source: str) -> None:
        reader = FILE_KINDS[file.suffix.lower()]
        if view.lower() in self.tables:
            raise ToolError(
                f"sql: source {source!r}: table {view!r} is already defined by "
                f"source {self.tables[view.lower()]!r}"
            )
        con.execute(f"CREATE VIEW {_ident(view)} AS SELECT * FROM {reader}({_literal(str(file))})")
        self.tables[view.lower()] = source
        self.relations[view.lower()] = _ident(view)

    # -- queries ----------------------------------------------------------------------

    async def run(
        self, sql: str, params: list[Any] | None, *, max_rows: int, max_bytes: int, timeout: float
    ) -> dict[str, Any]:
        """Run one (already guarded) statement; rows as JSON-safe dicts."""
        cursor = self._cursor()
        done = threading.Event()

        def interrupt_later() -> None:
            if not done.wait(timeout):
                cursor.interrupt()

        watchdog = threading.Thread(target=interrupt_later, daemon=True)
        watchdog.start()
        start = time.monotonic()
        try:
            return await anyio.to_thread.run_sync(
                self._fetch, cursor, sql, params, max_rows, max_bytes
            )
        except duckdb.InterruptException as exc:
            raise StepTimeoutError(
                f"sql.query: the query did not finish within {timeout:g}s and was interrupted",
                timeout=timeout,
            ) from exc
        finally:
            done.set()
            cursor.close()
            if time.monotonic() - start >= timeout:
                watchdog.join(timeout=1)

    def _fetch(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        params: list[Any] | None,
        max_rows: int,
        max_bytes: int,
    ) -> dict[str, Any]:
        self._check_statement(sql)
        try:
            cursor.execute(sql, params or None)
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            raise _explain(exc, self, sql) from exc
        if cursor.description is None:
            return {"columns": [], "rows": [], "row_count": 0, "truncated": False}
        columns = [{"name": d[0], "type": str(d[1])} for d in cursor.description]
        names = [c["name"] for c in columns]
        rows: list[dict[str, Any]] = []
        size = 2  # the brackets of the rows array
        truncated = False
        while len(rows) < max_rows:
            batch = cursor.fetchmany(min(1024, max_rows - len(rows)))
            if not batch:
                break
            for values in batch:
                row = {n: to_json_value(v) for n, v in zip(names, values, strict=True)}
                size += len(json.dumps(row, ensure_ascii=False).encode()) + (2 if rows else 0)
                if size > max_bytes:
                    truncated = True
                    break
                rows.append(row)
            if truncated:
                break
        if not truncated and len(rows) >= max_rows and cursor.fetchone() is not None:
            truncated = True
        return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}

    def columns(self, table: str) -> str:
        """``name TYPE, ...`` of one table, for error messages."""
        cursor = self._cursor()
        try:
            rows = cursor.execute(f"DESCRIBE {self.relations[table]}").fetchall()
        finally:
            cursor.close()
        return ", ".join(f"{row[0]} {row[1]}" for row in rows)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self.connection.cursor()
        if self._search_path:
            cursor.execute(self._search_path)
        return cursor

    def _check_statement(self, sql: str) -> None:
        """DuckDB's own parser must see one SELECT (or, with writes allowed, one INSERT,
        UPDATE or DELETE): COPY, ATTACH, DETACH, EXPORT... never reach execution."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise InvalidArgsError(f"sql.query: {str(exc).strip()}") from exc
        allowed = {duckdb.StatementType.SELECT}
        if self.writable:
            allowed |= {
                duckdb.StatementType.INSERT,
                duckdb.StatementType.UPDATE,
                duckdb.StatementType.DELETE,
            }
        kinds = [s.type for s in statements]
        if len(kinds) != 1 or kinds[0] not in allowed:
            shown = ", ".join(k.name for k in kinds) or "nothing"
            raise PolicyBlockedError(
                f"sql.query: refused by the engine: {shown} is not a single read-only query"
            )

    def schema(self, sample_rows: int = 3) -> list[dict[str, Any]]:
        """Tables with columns, types, row counts and a few rows, for a planner."""
        cursor = self._cursor()
        try:
            described = []
            for table in sorted(self.relations):
                ident = self.relations[table]
                columns = [
                    {"name": r[0], "type": r[1]}
                    for r in cursor.execute(f"DESCRIBE {ident}").fetchall()
                ]
                count = cursor.execute(f"SELECT count(*) FROM {ident}").fetchone()
                cursor.execute(f"SELECT * FROM {ident} LIMIT {int(sample_rows)}")
                names = [c["name"] for c in columns]
                samples = [
                    {n: to_json_value(v) for n, v in zip(names, r, strict=True)}
                    for r in cursor.fetchall()
                ]
                described.append(
                    {
                        "table": table,
                        "source": self.tables[table],
                        "columns": columns,
                        "row_count": count[0] if count else 0,
                        "sample": samples,
                    }
                )
            return described
        finally:
            cursor.close()


def _explain(exc: duckdb.Error, engine: SqlEngine, sql: str) -> Exception:
    """DuckDB's error, with the schema a replan needs when a name was wrong: the columns
    of the tables the query names, and every table's name."""
    message = str(exc).strip()
    if isinstance(exc, duckdb.CatalogException | duckdb.BinderException):
        tables = ", ".join(sorted(engine.relations))
        named = [
            t
            for t in sorted(engine.relations)
            if re.search(rf"\b{re.escape(t)}\b", sql, re.IGNORECASE)
        ]
        columns = "".join(f"\nColumns of {t}: {engine.columns(t)}" for t in named)
        return InvalidArgsError(
            f"sql.query: {message}{columns}\nTables: {tables} (sql.schema describes them)"
        )
    if isinstance(exc, duckdb.InvalidInputException) and "read-only mode" in message:
        return PolicyBlockedError(f"sql.query: refused by the engine: {message}")
    if isinstance(exc, duckdb.InvalidInputException) and "parameter" in message.lower():
        return InvalidArgsError(f"sql.query: {message}")
    if isinstance(exc, duckdb.ParserException):
        return InvalidArgsError(f"sql.query: {message}")
    if isinstance(exc, duckdb.PermissionException) or (
        isinstance(exc, duckdb.InvalidInputException) and "configuration" in message
    ):
        return PolicyBlockedError(f"sql.query: refused by the engine: {message}")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return ResourceLimitError(f"sql.query: {message}")
    return ToolError(f"sql.query: {message}")


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


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
