"""Guard layer 1: only one read-only statement, over known tables, gets to the engine.

The SQL is transpiled to DuckDB from its dialect, parsed with sqlglot, and checked:
exactly one statement; a read-only kind (SELECT, WITH ... SELECT, set operations, VALUES,
DESCRIBE, SHOW) unless every written table belongs to a source that allows writes; no
functions that touch files, the network, the environment, settings or sequences; table
functions only from a short allowlist; every table a known one. What cannot be parsed or
classified is refused (fail closed). Layer 2 (:mod:`plugins.sql.engine`) holds even if
this layer is bypassed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from dagentic import InvalidArgsError, PolicyBlockedError
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import traverse_scope

__all__ = ["GuardedQuery", "check_sql", "classify_sql"]

READ_ONLY = (exp.Select, exp.SetOperation, exp.Values, exp.Describe, exp.Show)
WRITES = (exp.Insert, exp.Update, exp.Delete)
TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
DENIED_PREFIXES = (
    "read_",
    "parquet_",
    "pragma_",
    "duckdb_",
    "iceberg_",
    "delta_",
    "sqlite_",
    "postgres_",
    "mysql_",
)
DENIED_FUNCTIONS = {
    "glob",
    "query",
    "query_table",
    "getenv",
    "current_setting",
    "which_secret",
    "sniff_csv",
    "nextval",
    "currval",
    "setval",
    "lastval",
    "load_aws_credentials",
    "read_text",
    "read_blob",
    "set_config",
    "enable_profiling",
    "checkpoint",
    "force_checkpoint",
    "json_execute_serialized_sql",
    "json_serialize_sql",
    "json_deserialize_sql",
    "json_serialize_plan",
}
# Functions that change the database or its sequences: a query calling one writes.
WRITING_FUNCTIONS = {"nextval", "setval", "checkpoint", "force_checkpoint"}
DENIED_KEYWORDS = {
    "EXPORT",
    "IMPORT",
    "COPY",
    "ATTACH",
    "DETACH",
    "INSTALL",
    "LOAD",
    "SET",
    "RESET",
    "PRAGMA",
    "CALL",
    "CHECKPOINT",
    "VACUUM",
    "CREATE",
    "DROP",
    "ALTER",
    "INSERT",
    "UPDATE",
    "DELETE",
    "USE",
    "BEGIN",
    "COMMIT",
}
STATEMENT_NAMES = {
    "Copy": "COPY",
    "Pragma": "PRAGMA",
    "Set": "SET",
    "Command": "this command",
    "Attach": "ATTACH",
    "Detach": "DETACH",
    "Install": "INSTALL",
    "Use": "USE",
    "Create": "CREATE",
    "Drop": "DROP",
    "Alter": "ALTER",
    "Insert": "INSERT",
    "Update": "UPDATE",
    "Delete": "DELETE",
    "Merge": "MERGE",
    "Transaction": "BEGIN",
    "Commit": "COMMIT",
    "Rollback": "ROLLBACK",
    "Export": "EXPORT",
    "Summarize": "SUMMARIZE",
    "Column": "this statement",
}


@dataclass(frozen=True)
class GuardedQuery:
    """SQL that passed layer 1, in DuckDB's dialect. ``tables`` are every known table it
    names; ``reads`` those whose rows it reads: for a write, every table it names but its
    target, and the target too when it looks at the rows there (a WHERE, a SET from
    columns, RETURNING, ON CONFLICT, OR REPLACE)."""

    sql: str
    kind: str
    writes: tuple[str, ...] = ()
    tables: tuple[str, ...] = field(default=())
    reads: tuple[str, ...] = field(default=())


def check_sql(
    sql: str,
    *,
    dialect: str = "duckdb",
    tables: Iterable[str] = (),
    writable: Iterable[str] = (),
    table_functions: Iterable[str] = (),
) -> GuardedQuery:
    """Check ``sql`` against layer 1. ``tables`` are the known tables (lower case, may be
    qualified as ``source.table``); ``writable`` those a write statement may target;
    ``table_functions`` the engine's table functions (only a few of which are allowed,
    wherever they appear). Raises :class:`PolicyBlockedError` (refused) or
    :class:`InvalidArgsError` (unreadable).
    """
    known = {t.lower() for t in tables}
    short = {t.rsplit(".", 1)[-1] for t in known}
    table_fns = {f.lower() for f in table_functions}
    text, statements = _parse(sql, dialect)
    if len(statements) != 1:
        raise PolicyBlockedError(
            f"sql.query: refused: exactly one statement is allowed, found {len(statements)}; "
            "send one query per step",
            sql=sql,
        )
    root = statements[0]
    writes: tuple[str, ...] = ()
    target: exp.Table | None = None
    if isinstance(root, WRITES):
        target = _write_target(root)
        writes = _check_write(root, target, {t.lower() for t in writable})
    elif not isinstance(root, READ_ONLY):
        name = STATEMENT_NAMES.get(type(root).__name__, type(root).__name__.upper())
        if isinstance(root, exp.Command | exp.Column):
            name = _first_keyword(text) or name
        raise PolicyBlockedError(
            f"sql.query: refused: {name} is not allowed; only read-only queries (SELECT, "
            "WITH ... SELECT, UNION, VALUES, DESCRIBE, SHOW) run here",
            sql=sql,
            construct=name,
        )
    used: list[str] = []
    read: list[str] = []
    reads_target = target is not None and _reads_target(root)
    for table, ctes in _table_references(root):
        found = _check_table(table, ctes, known, short, sql)
        if found:
            used.append(found)
            if table is not target or reads_target:
                read.append(found)
    for node in root.walk():
        if (
            isinstance(node, exp.Query | exp.DDL | exp.DML | exp.Command)
            and node is not root
            and not isinstance(node, (*READ_ONLY, exp.Subquery))
        ):
            raise PolicyBlockedError(
                f"sql.query: refused: a nested {type(node).__name__.upper()} is not allowed",
                sql=sql,
                construct=type(node).__name__.upper(),
            )
        if isinstance(node, exp.Func) and not isinstance(node.parent, exp.Table):
            _check_function(node, table_fns, sql)  # FROM f(...) was checked as a table
    kind = type(root).__name__.upper()
    return GuardedQuery(
        root.sql(dialect="duckdb"),
        kind,
        writes,
        tuple(dict.fromkeys(used)),
        tuple(dict.fromkeys(read)),
    )


def classify_sql(sql: str, *, dialect: str = "duckdb") -> Literal["read", "write"]:
    """What running ``sql`` does, judged the safe way: ``read`` only when every statement
    is a read-only kind with nothing but reads inside (no INSERT hidden in a CTE, no
    function that changes a sequence or the database); anything else — a write, DDL, COPY,
    ATTACH, a command, a kind this guard does not know — is ``write``. Raises what
    :func:`check_sql` raises for SQL that cannot be read."""
    _, statements = _parse(sql, dialect)
    for root in statements:
        if not isinstance(root, READ_ONLY):
            return "write"
        for node in root.walk():
            if isinstance(node, exp.DDL | exp.DML | exp.Command) or (
                isinstance(node, exp.Query) and not isinstance(node, (*READ_ONLY, exp.Subquery))
            ):
                return "write"
            if isinstance(node, exp.Func) and _function_name(node) in WRITING_FUNCTIONS:
                return "write"
    return "read"


def _parse(sql: str, dialect: str) -> tuple[str, list[Any]]:
    """``sql`` in DuckDB's dialect and its statements; raises (refused or unreadable)."""
    text = _transpile(sql, dialect)
    try:
        statements = [
            s
            for s in sqlglot.parse(text, read="duckdb")
            if s is not None and not isinstance(s, exp.Semicolon)
        ]
    except (ParseError, TokenError) as exc:
        keyword = _first_keyword(text)
        if keyword in DENIED_KEYWORDS:
            raise PolicyBlockedError(
                f"sql.query: refused: {keyword} is not allowed; only read-only queries "
                "(SELECT, WITH ... SELECT, UNION, VALUES, DESCRIBE, SHOW) run here",
                sql=sql,
                construct=keyword,
            ) from exc
        detail = _first_error(exc) if isinstance(exc, ParseError) else str(exc)
        raise InvalidArgsError(f"sql.query: the SQL does not parse: {detail}", sql=sql) from exc
    except SqlglotError as exc:
        raise PolicyBlockedError(
            f"sql.query: refused: the SQL cannot be classified ({exc})", sql=sql
        ) from exc
    return text, statements


def _transpile(sql: str, dialect: str) -> str:
    if dialect.lower() in ("duckdb", ""):
        return sql
    try:
        return ";\n".join(sqlglot.transpile(sql, read=dialect.lower(), write="duckdb"))
    except ValueError as exc:  # unknown dialect
        raise InvalidArgsError(
            f"sql.query: unknown dialect {dialect!r}: {exc}", dialect=dialect
        ) from exc
    except ParseError as exc:
        raise InvalidArgsError(
            f"sql.query: the SQL does not parse as {dialect}: {_first_error(exc)}", dialect=dialect
        ) from exc
    except SqlglotError as exc:
        raise InvalidArgsError(
            f"sql.query: cannot translate the SQL from {dialect} to DuckDB: {exc}", dialect=dialect
        ) from exc


def _table_references(root: exp.Expression) -> list[tuple[exp.Table, set[str]]]:
    """Every table reference with the CTE names visible where it stands."""
    try:
        scopes = traverse_scope(root)
    except (SqlglotError, RecursionError):
        scopes = []
    found: list[tuple[exp.Table, set[str]]] = []
    seen: set[int] = set()
    for scope in scopes:
        visible = {name.lower() for name in scope.cte_sources}
        for table in scope.tables:
            seen.add(id(table))
            found.append((table, visible))
    # Tables outside any query scope (DESCRIBE t, SHOW ...) see no CTE at all.
    found += [(t, set()) for t in root.find_all(exp.Table) if id(t) not in seen]
    return found


def _first_keyword(text: str) -> str:
    words = _words(text)
    return words[0].upper() if words else ""


def _words(text: str) -> list[str]:
    """The words of ``text`` with SQL comments removed (no parser needed)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("--", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out).split()


def _first_error(exc: ParseError) -> str:
    errors = getattr(exc, "errors", None) or []
    if errors:
        first = errors[0]
        return (
            f"{first.get('description', 'syntax error')} at line {first.get('line')}, "
            f"column {first.get('col')}"
        )
    return str(exc).splitlines()[0]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()  # the identifier without its quotes
    return node.sql_name().lower()


def _check_function(node: exp.Func, table_functions: set[str], sql: str) -> None:
    name = _function_name(node)
    if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
        raise PolicyBlockedError(
            f"sql.query: refused: the function {name}() is not allowed: it reaches files, "
            "the network, the environment, settings or sequences",
            sql=sql,
            construct=name,
        )
    if name in table_functions and name not in TABLE_FUNCTIONS:
        raise _table_function_refused(name, sql)


def _table_function_refused(name: str, sql: str) -> PolicyBlockedError:
    return PolicyBlockedError(
        f"sql.query: refused: the table function {name}() is not allowed; only "
        f"{', '.join(sorted(TABLE_FUNCTIONS))} are",
        sql=sql,
        construct=name,
    )


def _check_table(
    node: exp.Table, ctes: set[str], known: set[str], short: set[str], sql: str
) -> str | None:
    target = node.this
    if isinstance(target, exp.Func):  # a table function: FROM range(10)
        name = _function_name(target)
        if name not in TABLE_FUNCTIONS:
            raise _table_function_refused(name, sql)
        return None
    name = node.name.lower()
    qualified = ".".join(p.lower() for p in (node.catalog, node.db, node.name) if p)
    if not node.db and name in ctes:
        return None
    if node.db.lower() == "information_schema":
        return qualified
    if qualified in known or (not node.db and name in short):
        return qualified
    if any(ch in node.name for ch in "/\\") or "." in node.name:
        raise PolicyBlockedError(
            f"sql.query: refused: {node.name!r} looks like a file path; only the configured "
            "tables can be read",
            sql=sql,
            construct="file table",
        )
    close = difflib.get_close_matches(name, sorted(short | known), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InvalidArgsError(
        f"sql.query: unknown table {qualified!r}{hint}; the tables are: "
        f"{', '.join(sorted(short)) or 'none'} (sql.schema describes them)",
        sql=sql,
        table=qualified,
    )


def _write_target(root: exp.Expression) -> exp.Table | None:
    """The table node an INSERT/UPDATE/DELETE writes (``INSERT INTO t (a, b)`` wraps it in
    a schema); None when the statement has another shape."""
    target = root.this
    if isinstance(root, exp.Insert) and isinstance(target, exp.Schema):
        target = target.this
    return target if isinstance(target, exp.Table) else None


def _reads_target(root: exp.Expression) -> bool:
    """Whether a write looks at the rows of the table it writes: an UPDATE or DELETE that
    names any column (or ``*``) beyond the columns it sets, an INSERT that may replace or
    keep rows already there (ON CONFLICT, OR REPLACE, OR IGNORE)."""
    if isinstance(root, exp.Insert):
        return bool(root.args.get("conflict") or root.args.get("alternative"))
    assigned = set()
    if isinstance(root, exp.Update):
        assigned = {id(e.this) for e in root.expressions if isinstance(e, exp.EQ)}
    return any(
        isinstance(node, exp.Column | exp.Star) and id(node) not in assigned for node in root.walk()
    )


def _check_write(
    root: exp.Expression, target: exp.Table | None, writable: set[str]
) -> tuple[str, ...]:
    """The table an INSERT/UPDATE/DELETE writes, if its source allows writes."""
    statement = type(root).__name__.upper()
    if target is None:
        raise PolicyBlockedError(
            f"sql.query: refused: cannot tell which table this {statement} writes",
            construct=statement,
        )
    qualified = ".".join(p.lower() for p in (target.catalog, target.db, target.name) if p)
    if qualified not in writable:
        raise PolicyBlockedError(
            f"sql.query: refused: {statement} into {qualified!r}: its source does not allow "
            "writes (set allow_write: true on the source to permit them)",
            construct=statement,
            table=qualified,
        )
    return (qualified,)
