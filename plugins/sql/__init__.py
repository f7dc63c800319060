"""``sql.query`` and ``sql.schema``: read-only SQL over DuckDB, guarded in two layers.

Layer 1 (:mod:`.guard`, sqlglot) lets one read-only statement over known tables through;
layer 2 (:mod:`.engine`, DuckDB) is a locked-down connection that cannot touch host files
even if layer 1 is bypassed. With no ``sql.sources`` configured, the tools read the bundled
sample database (``plugins/sql/sample_data``), and the plugin adds its plans over it
(``plugins/sql/plans``) to the plan library. Settings: section ``[sql]``
(:class:`.settings.SqlSettings`).

What a ``sql.query`` call does is judged per statement (:func:`.guard.classify_sql`): a
``write`` (INSERT, UPDATE, DELETE into an ``allow_write`` source) is a write for the
executor's policies and approvers, a SELECT a read. Untrusted data written to a source
taints it, in its file, for good; reading a tainted source gives untrusted output
(``sql:<source>``), in this run and every later one, and a write that reads one is
refused unless the step says ``allow_untrusted: true`` (:attr:`ToolContext.allow_untrusted`).

A write records the call's :attr:`ToolContext.idempotency_key` in its source's file, in its
own transaction (table ``_dagentic_idempotency``, hidden like the taint record): run again
with that key (a resumed run), it writes nothing and returns the first reply, with
``replayed: true``. Reads are not recorded.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from dagentic import PolicyBlockedError, ToolContext, ToolError, hookimpl, run_in_thread, tool
from pydantic import BaseModel, Field, JsonValue

from .settings import SqlSettings, SqlSource

if TYPE_CHECKING:  # DuckDB and sqlglot load on the first query: loading plugins stays cheap
    from dagentic import Settings

    from .engine import SqlEngine

__all__ = [
    "close_engines",
    "data_fingerprint",
    "query",
    "register_plan_folders",
    "register_settings",
    "register_tools",
    "schema",
    "statement_effects",
]

SAMPLE_DATA = Path(__file__).parent / "sample_data"
SAMPLE_PLANS = Path(__file__).parent / "plans"  # plans over SAMPLE_DATA, in the library
MAX_IDLE_ENGINES = 4
"""Engine processes kept open while idle: a new set of sources closes the least recently
used idle ones beyond this (plans that name many sources cannot pile up processes)."""
_ENGINES: dict[str, SqlEngine] = {}  # one per set of sources, least recently used first
_CREATING = threading.Lock()


def close_engines() -> None:
    """End every SQL engine process this process started (they restart when next used).
    They also end when the process exits; call this to free them earlier."""
    with _CREATING:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


async def engine_for(settings: Settings, source: str | None = None) -> SqlEngine:
    """The process-wide engine for these sources (created on first use, once: a DuckDB
    file can be attached by one engine only). ``source`` is a path a plan named; it must
    lie inside one of the ``sql.allowed_roots``."""
    config = settings.plugin(SqlSettings)
    if source is not None:
        path = _allowed(source, config.allowed_roots)
        sources = {_source_name(path): SqlSource(path=path)}
    else:
        sources = config.sources or {"sample": SqlSource(path=SAMPLE_DATA)}
    # every file a plan-named source reads must resolve inside the roots (engine.py)
    roots = [str(r) for r in config.allowed_roots] if source is not None else None
    key = json.dumps(
        [
            {n: s.model_dump(mode="json") for n, s in sources.items()},
            config.memory_limit,
            config.threads,
            roots,
        ],
        sort_keys=True,
    )
    engine = _ENGINES.get(key)
    if engine is not None:
        with _CREATING:  # most recently used last
            _ENGINES.pop(key, None)
            _ENGINES[key] = engine
        return engine
    from .engine import SqlEngine

    def create() -> SqlEngine:
        with _CREATING:
            if key not in _ENGINES:
                _ENGINES[key] = SqlEngine(
                    sources,
                    memory_limit=config.memory_limit,
                    threads=config.threads,
                    roots=None if roots is None else config.allowed_roots,
                )
            idle = [k for k, e in _ENGINES.items() if k != key and not e.busy]
            evicted = [_ENGINES.pop(k) for k in idle[: max(0, len(idle) + 1 - MAX_IDLE_ENGINES)]]
            engine = _ENGINES[key]
        for old in evicted:
            old.close()
        return engine

    return await run_in_thread(create)


def _settings(context: ToolContext) -> Settings:
    """The run's settings; outside a run, those of the working directory."""
    from dagentic import Settings

    return context.settings if context.settings is not None else Settings()


def _allowed(source: str, roots: list[Path]) -> Path:
    """The resolved path of a plan-named source, if it lies inside an allowed root."""
    try:
        path = Path(source).expanduser().resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ToolError(f"sql: source {source!r} does not exist") from exc
    for root in roots:
        if path.is_relative_to(Path(root).expanduser().resolve()):
            return path
    shown = ", ".join(str(r) for r in roots) or "none are set"
    raise PolicyBlockedError(
        f"sql: refused: source {source!r} is outside the folders plans may read "
        f"(sql.allowed_roots: {shown}); add its folder to that setting to allow it",
        source=source,
    )


def _source_name(path: Path) -> str:
    name = re.sub(r"\W", "_", path.stem if path.is_file() else path.name) or "data"
    return name if not name[0].isdigit() else f"t_{name}"


def statement_effects(
    args: dict[str, Any], settings: Settings | None = None
) -> Literal["read", "write"]:
    """What one ``sql.query`` call does: ``write`` for a statement that writes (or might),
    ``read`` for a read-only query. The SQL's own errors are raised as the tool would."""
    from .guard import classify_sql

    return classify_sql(args["sql"], dialect=args.get("dialect") or "duckdb")


def data_fingerprint(args: dict[str, Any], settings: Settings | None = None) -> str | None:
    """What a read of the sql tools depends on, for the tool-result cache: the size and
    modification time of every file of the sources it reads (and the limits on what it
    returns). None, so not cached, when a source may be written (``allow_write``) or a
    plan-named source cannot be read (the call itself then says why)."""
    import hashlib

    from dagentic import Settings as CoreSettings

    config = (settings if settings is not None else CoreSettings()).plugin(SqlSettings)
    if args.get("source") is not None:
        try:
            paths = [_allowed(str(args["source"]), config.allowed_roots)]
        except (ToolError, PolicyBlockedError):
            return None
    else:
        sources = config.sources or {"sample": SqlSource(path=SAMPLE_DATA)}
        if any(s.allow_write for s in sources.values()):
            return None
        paths = [Path(s.path).expanduser() for s in sources.values()]
    seen: list[tuple[str, int, int]] = []
    try:
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                stat = file.stat()
                seen.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    except OSError:
        return None
    text = json.dumps([seen, config.max_rows, config.max_bytes])
    return hashlib.sha256(text.encode()).hexdigest()


@tool(
    name="sql.query",
    typical_latency=0.1,
    side_effects="write",
    effects=statement_effects,
    idempotent=False,
    uses_idempotency_key=True,
    stateful=True,
    cacheable=data_fingerprint,
)
async def query(
    sql: str,
    context: ToolContext,
    dialect: str = "duckdb",
    params: list[JsonValue] | None = None,
    limit: Annotated[int, Field(ge=1)] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Run one read-only SQL query (SELECT, WITH, UNION, VALUES, DESCRIBE, SHOW) over the
    configured tables and return its columns and rows (as objects by column name).

    Args:
        sql: The query. Use ? placeholders for values and pass them in params.
        dialect: The SQL dialect it is written in (duckdb, postgres, mysql, sqlite,
            snowflake, bigquery, ...); it is translated to DuckDB.
        params: Values for the ? placeholders, in order.
        limit: Most rows to return (capped by the sql.max_rows setting).
        source: A data file or folder to query instead of the configured sources (must
            lie inside the sql.allowed_roots setting; read-only).

    Returns:
        dict: {columns: [{name, type}], rows: [{column: value}], row_count, truncated}; read a
        value as output.rows[0].column. A write also says replayed: true when a resumed run
        called again and nothing was written (the rows are the first call's).
    """
    from .guard import check_sql, classify_sql

    settings = _settings(context)
    config = settings.plugin(SqlSettings)
    engine = await engine_for(settings, source)
    guarded = check_sql(
        sql,
        dialect=dialect,
        tables=engine.tables,
        writable=engine.writable,
        table_functions=engine.table_functions,
    )
    if guarded.writes and classify_sql(sql, dialect=dialect) != "write":  # never: a guard bug
        raise PolicyBlockedError(
            f"sql.query: refused: this {guarded.kind} writes but was judged a read; report it",
            sql=sql,
        )
    max_rows = min(limit, config.max_rows) if limit else config.max_rows
    result = await engine.run(
        guarded.sql,
        params,
        max_rows=max_rows,
        max_bytes=config.max_bytes,
        timeout=config.timeout,
        reads=_sources_read(engine.tables, guarded.tables),
        write_to=engine.tables.get(guarded.writes[0]) if guarded.writes else None,
        write_reads=_sources_read(engine.tables, guarded.reads),
        taint=list(context.untrusted_inputs) if guarded.writes else None,
        # untrusted data reaches a write only with the step's opt-in: the engine refuses
        # a write that reads a tainted source without it (the taint is known only there)
        allow_untrusted=context.allow_untrusted,
        step=context.step_id,
        # recorded with the write, in its transaction: a resumed run does not write twice
        key=context.idempotency_key if guarded.writes else None,
    )
    tainted = result.pop("tainted", None) or {}
    replayed = bool(result.pop("replayed", False))
    if tainted:  # what it read holds untrusted data: so does its output
        context.mark_untrusted(*(f"sql:{source}" for source in sorted(tainted)))
    if guarded.writes:
        result["side_effects"] = {"statement": guarded.kind, "tables": list(guarded.writes)}
        result["replayed"] = replayed
    return result


def _sources_read(tables: dict[str, str], used: tuple[str, ...]) -> list[str] | None:
    """The sources a statement reads, from the tables it names (``tables``: lower-case name,
    plain or ``source.table``, to its source); None, meaning any, when a name is not one of
    them (information_schema, say). A plain name counts every source with such a table."""
    found: set[str] = set()
    for name in used:
        if name not in tables:
            return None
        if "." in name:
            found.add(tables[name])
        else:
            found |= {source for key, source in tables.items() if key.rsplit(".", 1)[-1] == name}
    return sorted(found)


@tool(
    name="sql.schema",
    typical_latency=0.2,
    side_effects="read",
    planning_context=True,
    stateful=True,
    cacheable=data_fingerprint,
)
async def schema(
    context: ToolContext, sample_rows: int = 3, source: str | None = None
) -> dict[str, Any]:
    """Describe the tables sql.query can read: columns with types, row counts and a few
    sample rows.

    Args:
        sample_rows: How many example rows to show per table.
        source: A data file or folder to describe instead of the configured sources (must
            lie inside the sql.allowed_roots setting).

    Returns:
        dict: {tables: [{name, columns: [{name, type}], row_count, sample_rows}]}; a table
        whose source holds untrusted data says untrusted: true.
    """
    engine = await engine_for(_settings(context), source)
    tables = await engine.schema(sample_rows)
    tainted = sorted({t["source"] for t in tables if t.get("untrusted")})
    if tainted:  # sample rows of a source untrusted data was written to
        context.mark_untrusted(*(f"sql:{source}" for source in tainted))
    return {"tables": tables}


@hookimpl
def register_tools() -> list[Any]:
    return [query, schema]


@hookimpl
def register_settings() -> list[type[BaseModel]]:
    return [SqlSettings]


@hookimpl
def register_plan_folders(settings: Settings) -> list[Path]:
    """The plans over the sample database (revenue by region or quarter, top products,
    customers, ...), while it is the one queried: no ``sql.sources`` configured."""
    return [] if settings.plugin(SqlSettings).sources else [SAMPLE_PLANS]
