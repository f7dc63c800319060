"""``sql.query`` writes and idempotency keys: a write records its call's
:attr:`~dagentic.ToolContext.idempotency_key` in its source's file, in its own transaction
(table ``_dagentic_idempotency``), and a write with a recorded key runs nothing and answers
the first reply with ``replayed: true``, in this engine and a new one. The table is
dagentic's own: plans neither see nor name it. Reads are not recorded.

Real DuckDB files and engine processes; the end-to-end test runs a plan through a real
Executor with a durable journal, stops it right after its write committed (before the step's
end was recorded, as a crash would) and resumes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest
from dagentic import (
    DagenticError,
    Executor,
    FailureMode,
    InvalidArgsError,
    PolicyBlockedError,
    RunStatus,
    Settings,
    Tool,
    ToolContext,
    load_tools,
)
from dagentic.backend import InProcessBackend
from dagentic.durable import DurableJournal, open_store
from dagentic.plugins import sql as sql_plugin
from dagentic.plugins.sql import close_engines, engine_for

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

KEYS = "_dagentic_idempotency"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR)")
        con.execute("INSERT INTO notes VALUES (1, 'hello')")
    return path


@pytest.fixture
def settings(scratch: Path) -> Settings:
    return blind_settings(sql={"sources": {"scratch": {"path": str(scratch), "allow_write": True}}})


def context(settings: Settings, key: str, step: str = "save") -> ToolContext:
    return ToolContext("run-1", step, 1, settings, idempotency_key=key)


async def query(settings: Settings, sql: str, key: str, **args: Any) -> dict[str, Any]:
    return await sql_plugin.query.fn(sql=sql, context=context(settings, key), **args)


def notes(path: Path) -> list[tuple[Any, ...]]:
    close_engines()  # the engine process holds the file
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM notes ORDER BY id").fetchall()


def recorded(path: Path) -> list[tuple[Any, ...]]:
    """The keys the file records, with the rows each write changed (none: no table)."""
    close_engines()
    with duckdb.connect(str(path), read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if KEYS not in names:
            return []
        return con.execute(f'SELECT key, "rows" FROM {KEYS} ORDER BY key').fetchall()


def test_sql_query_declares_that_it_uses_the_key() -> None:
    tool = next(t for t in load_tools() if t.name == "sql.query")
    assert (tool.side_effects, tool.idempotent, tool.uses_idempotency_key) == ("write", False, True)
    assert "context" not in tool.args_schema()["properties"]


async def test_the_same_key_twice_writes_once(settings: Settings, scratch: Path) -> None:
    first = await query(settings, "INSERT INTO notes VALUES (2, 'two'), (3, 'three')", "run-1/a")
    again = await query(settings, "INSERT INTO notes VALUES (2, 'two'), (3, 'three')", "run-1/a")

    assert first["rows"] == [{"Count": 2}] and first["replayed"] is False
    assert again == {**first, "replayed": True}
    assert notes(scratch) == [(1, "hello"), (2, "two"), (3, "three")]
    assert recorded(scratch) == [("run-1/a", 2)]


async def test_different_keys_write_twice(settings: Settings, scratch: Path) -> None:
    await query(settings, "UPDATE notes SET body = body || '!'", "run-1/a")
    await query(settings, "UPDATE notes SET body = body || '!'", "run-1/b")
    await query(settings, "UPDATE notes SET body = body || '!'", "run-1/b")

    assert notes(scratch) == [(1, "hello!!")]
    assert recorded(scratch) == [("run-1/a", 1), ("run-1/b", 1)]


async def test_without_a_key_a_write_runs_every_time_and_records_nothing(
    settings: Settings, scratch: Path
) -> None:
    for _ in range(2):
        result = await query(settings, "UPDATE notes SET body = body || '!'", "")
        assert result["replayed"] is False

    assert notes(scratch) == [(1, "hello!!")]
    assert recorded(scratch) == []  # not even the table


async def test_a_read_is_not_recorded(settings: Settings, scratch: Path) -> None:
    for _ in range(2):
        result = await query(settings, "SELECT body FROM notes", "run-1/read")
        assert result == {
            "columns": [{"name": "body", "type": "VARCHAR"}],
            "rows": [{"body": "hello"}],
            "row_count": 1,
            "truncated": False,
        }
    assert recorded(scratch) == []


async def test_a_key_survives_a_new_engine(settings: Settings, scratch: Path) -> None:
    sql = "INSERT INTO notes VALUES (2, 'two') RETURNING id, body"
    first = await query(settings, sql, "run-1/a")
    close_engines()  # a new engine process opens the file: as after a crash

    again = await query(settings, sql, "run-1/a")
    other = await query(settings, "INSERT INTO notes VALUES (3, 'three')", "run-2/a")

    assert first["rows"] == [{"id": 2, "body": "two"}]
    assert again == {**first, "replayed": True}  # the rows it returned, too
    assert other["replayed"] is False
    assert notes(scratch) == [(1, "hello"), (2, "two"), (3, "three")]
    assert recorded(scratch) == [("run-1/a", 1), ("run-2/a", 1)]


async def test_a_write_that_failed_records_no_key(settings: Settings, scratch: Path) -> None:
    with pytest.raises(DagenticError) as caught:  # a duplicate primary key: nothing written
        await query(settings, "INSERT INTO notes VALUES (2, 'two'), (1, 'again')", "run-1/a")
    assert caught.value.failure_mode is FailureMode.TOOL_ERROR

    retried = await query(settings, "INSERT INTO notes VALUES (2, 'two')", "run-1/a")

    assert retried["replayed"] is False
    assert notes(scratch) == [(1, "hello"), (2, "two")]
    assert recorded(scratch) == [("run-1/a", 1)]


async def test_concurrent_writes_with_one_key_write_once(settings: Settings, scratch: Path) -> None:
    answers: list[dict[str, Any]] = []

    async def write(n: int) -> None:
        sql = f"INSERT INTO notes VALUES ({10 + n}, 'n{n}')"
        answers.append(await query(settings, sql, "run-1/many"))

    await engine_for(settings)  # started once, before the calls race
    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(write, n)

    assert sorted(a["replayed"] for a in answers) == [False] + [True] * 5
    assert len(notes(scratch)) == 2
    assert recorded(scratch) == [("run-1/many", 1)]


async def test_concurrent_first_keys_of_a_source_all_write(
    settings: Settings, scratch: Path
) -> None:
    """The first keyed writes to a file make its table; at once, none of them fails."""

    async def write(n: int) -> None:
        await query(settings, f"INSERT INTO notes VALUES ({10 + n}, 'n{n}')", f"run-1/{n}")

    await engine_for(settings)
    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(write, n)

    assert len(notes(scratch)) == 7
    assert recorded(scratch) == [(f"run-1/{n}", 1) for n in range(6)]


# --------------------------------------------------------------------------- hidden


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT * FROM {KEYS}",
        f"SELECT * FROM scratch.{KEYS}",
        f"DELETE FROM scratch.{KEYS}",
        f"INSERT INTO scratch.{KEYS} VALUES ('run-1/a', now(), 1, '{{}}')",
        f"DROP TABLE scratch.{KEYS}",
    ],
)
async def test_plans_can_neither_see_nor_touch_the_keys(
    settings: Settings, scratch: Path, sql: str
) -> None:
    await query(settings, "INSERT INTO notes VALUES (2, 'two')", "run-1/a")
    close_engines()  # a new engine reads the file with the table in it

    with pytest.raises((PolicyBlockedError, InvalidArgsError)):
        await query(settings, sql, "run-1/b")
    schema = await sql_plugin.schema.fn(context=context(settings, "run-1/c"))

    assert [t["table"] for t in schema["tables"]] == ["notes"]
    assert KEYS not in str(schema)
    assert recorded(scratch) == [("run-1/a", 1)]


async def test_the_engine_itself_refuses_the_keys_past_the_guard(
    settings: Settings, scratch: Path
) -> None:
    await query(settings, "INSERT INTO notes VALUES (2, 'two')", "run-1/a")
    engine = await engine_for(settings)

    with pytest.raises(DagenticError) as caught:
        await engine.run(
            f"DELETE FROM scratch.{KEYS}",
            None,
            max_rows=10,
            max_bytes=10_000,
            timeout=5,
            write_to="scratch",
        )

    assert (
        caught.value.message == f"sql.query: refused by the engine: {KEYS} is dagentic's own record"
    )
    assert caught.value.failure_mode is FailureMode.POLICY_BLOCKED
    assert recorded(scratch) == [("run-1/a", 1)]


# --------------------------------------------------------------------------- end to end


class StoppedAfterTheWrite:
    """Runs tools in process; after the step ``ins`` returned (its write committed) it
    never returns, as a process killed before the step's end was recorded."""

    def __init__(self) -> None:
        self.inner = InProcessBackend()
        self.wrote = anyio.Event()

    async def call(self, tool: Tool, args: dict[str, Any], context: ToolContext | None) -> Any:
        output = await self.inner.call(tool, args, context)
        if context is not None and context.step_id == "ins":
            self.wrote.set()
            await anyio.sleep_forever()
        return output


async def test_a_resumed_run_does_not_insert_twice(
    settings: Settings, scratch: Path, tmp_path: Path
) -> None:
    plan = {
        "version": 1,
        "name": "keyed-insert",
        "steps": [
            {
                "id": "ins",
                "tool": "sql.query",
                "args": {"sql": "INSERT INTO notes VALUES (?, ?)", "params": [2, "two"]},
            },
            {
                "id": "read",
                "tool": "sql.query",
                "needs": ["ins"],
                "args": {"sql": "SELECT count(*) AS n FROM notes"},
            },
        ],
    }
    journal = DurableJournal(open_store(str(tmp_path / "journal.sqlite")), lease=30.0)
    try:
        stopped = StoppedAfterTheWrite()
        first_executor = Executor(
            load_tools(), settings=settings, journal=journal, tracing=None, backend=stopped
        )
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:

                async def stop_after_the_write() -> None:
                    await stopped.wrote.wait()
                    first_executor.cancel()

                tg.start_soon(stop_after_the_write)
                first = await first_executor.run(plan, run_id="r-keyed")
        assert first.status is RunStatus.CANCELLED
        assert notes(scratch) == [(1, "hello"), (2, "two")]  # it did write

        resumed = await Executor(
            load_tools(), settings=settings, journal=journal, tracing=None
        ).resume("r-keyed")
    finally:
        journal.close()

    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert resumed.waiting == []  # a key makes the rerun safe: nobody was asked
    assert resumed.steps["ins"].output["replayed"] is True
    assert resumed.steps["ins"].output["rows"] == [{"Count": 1}]
    assert resumed.steps["read"].output["rows"] == [{"n": 2}]
    assert notes(scratch) == [(1, "hello"), (2, "two")]
    assert recorded(scratch) == [("r-keyed/ins", 1)]
