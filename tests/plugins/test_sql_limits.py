"""The SQL engine's memory and time limits hold, even for one expression that builds a huge
value (which DuckDB's memory_limit does not count and its interrupt does not reach).

The engine runs DuckDB in a process of its own; these tests watch that process's peak
resident memory (VmHWM) while the queries run, and stop it by signals to prove that a query
which does not answer its interrupt is still stopped in time.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import (
    Executor,
    FailureMode,
    Plan,
    ResourceLimitError,
    StepStatus,
    StepTimeoutError,
    ToolError,
    load_tools,
)
from dagentic.plugins.sql import engine_for
from dagentic.plugins.sql.engine import GRACE, SqlEngine

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

LIMIT = "256MB"
PEAK_MB = 1536  # far above what the engine may reach (~800 MB), far below the 4 GB seen
MARGIN = 15.0  # seconds past timeout + GRACE a stopped query may take, on a slow machine
OUT_OF_MEMORY = (
    "sql.query: the query needs more memory than the SQL engine may use "
    f"(sql.memory_limit: {LIMIT}); aggregate, filter or LIMIT in SQL so that less is built "
    "or held at once"
)
BIG_VALUES = {
    "repeat": "SELECT repeat('x', 2000000000) AS v",
    "length of repeat": "SELECT length(repeat('x', 2000000000)) AS n",
    "nested repeat": "SELECT length(repeat(repeat(repeat('x', 1000), 1000), 1000)) AS n",
    "string_agg": "SELECT length(string_agg('xxxxxxxxxx', '')) AS n FROM range(300000000)",
    "list aggregate": "SELECT len(list(range)) AS n FROM range(300000000)",
    "range as a list": "SELECT len(range(1000000000)) AS n",
    "regex on a huge string": (
        "SELECT length(regexp_replace(repeat('ab', 200000000), '(a)(b)', '\\2\\1\\1\\2', 'g'))"
    ),
    "doubling in a recursive CTE": (
        "WITH RECURSIVE t(s, i) AS (SELECT 'x', 0 UNION ALL SELECT s || s, i + 1 FROM t "
        "WHERE i < 40) SELECT max(length(s)) AS n FROM t"
    ),
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine() -> Iterator[SqlEngine]:
    engine = SqlEngine({}, memory_limit=LIMIT, threads=2)
    yield engine
    engine.close()


class Peak:
    """The highest VmHWM (peak resident memory) of a process, sampled while it lives."""

    def __init__(self, pid: int) -> None:
        self.pid, self.mb = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.mb = max(self.mb, int(line.split()[1]) // 1024)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.mb


async def run(engine: SqlEngine, sql: str, timeout: float = 30.0) -> dict[str, Any]:
    return await engine.run(sql, None, max_rows=100, max_bytes=1_000_000, timeout=timeout)


@pytest.mark.parametrize("sql", list(BIG_VALUES.values()), ids=list(BIG_VALUES))
async def test_a_query_building_a_huge_value_stays_within_the_memory_limit(
    engine: SqlEngine, sql: str
) -> None:
    assert engine.pid is not None
    peak = Peak(engine.pid)
    start = time.monotonic()
    with pytest.raises(ResourceLimitError) as caught:
        await run(engine, sql)
    elapsed = time.monotonic() - start
    assert peak.stop() < PEAK_MB
    assert caught.value.message == OUT_OF_MEMORY
    assert caught.value.failure_mode is FailureMode.RESOURCE_LIMIT
    assert elapsed < 30 + GRACE + MARGIN
    assert (await run(engine, "SELECT 42 AS answer"))["rows"] == [{"answer": 42}]


async def test_a_list_past_duckdbs_own_bound_is_a_tool_error(engine: SqlEngine) -> None:
    with pytest.raises(ToolError) as caught:
        await run(engine, "SELECT len(range(10000000000)) AS n")
    assert caught.value.message == (
        "sql.query: Invalid Input Error: Lists larger than 2^32 elements are not supported"
    )


async def test_spilling_goes_to_a_private_bounded_folder(engine: SqlEngine) -> None:
    rows = (
        await run(
            engine,
            "SELECT current_setting('temp_directory') AS dir, "
            "current_setting('max_temp_directory_size') AS most",
        )
    )["rows"]
    folder = Path(rows[0]["dir"])
    assert folder.parent == Path(tempfile.gettempdir())
    assert folder.name.startswith("dagentic-sql-")
    assert rows[0]["most"] == "976.3 MiB"  # four times the memory limit (244.1 MiB)
    engine.close()
    assert not folder.exists()


async def test_a_query_that_ignores_its_interrupt_is_killed_after_the_grace(
    engine: SqlEngine,
) -> None:
    """SIGSTOP freezes the engine process, so the interrupt goes unanswered however fast
    the machine is; the query still ends at timeout + GRACE, and the next one runs in a new
    process."""
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(StepTimeoutError) as caught:
        await run(engine, "SELECT 1 AS one", timeout=0.5)
    elapsed = time.monotonic() - start
    assert caught.value.message == (
        "sql.query: the query did not finish within 0.5s and was interrupted"
    )
    assert 0.5 + GRACE <= elapsed < 0.5 + GRACE + MARGIN
    assert (await run(engine, "SELECT 2 AS two"))["rows"] == [{"two": 2}]
    assert engine.pid not in (None, pid)


async def test_other_queries_of_a_killed_engine_fail_retryable_and_name_why(
    engine: SqlEngine,
) -> None:
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    errors: list[BaseException] = []

    async def bystander() -> None:
        try:
            await run(engine, "SELECT 3 AS three", timeout=60)
        except ToolError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(bystander)
        await anyio.sleep(0.1)
        with pytest.raises(StepTimeoutError):
            await run(engine, "SELECT 1 AS one", timeout=0.5)
    assert len(errors) == 1 and isinstance(errors[0], ToolError)
    assert errors[0].retryable is True
    assert errors[0].message == (
        "sql: the SQL engine was restarted: another query overran its time limit and did not "
        "stop when interrupted; run this query again"
    )


async def test_an_engine_process_that_dies_is_a_retryable_error_and_restarts(
    engine: SqlEngine,
) -> None:
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)

    async def kill_soon() -> None:
        await anyio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would

    async with anyio.create_task_group() as group:
        group.start_soon(kill_soon)
        with pytest.raises(ToolError) as caught:
            await run(engine, "SELECT 1 AS one", timeout=60)
    assert caught.value.retryable is True
    assert caught.value.message == ("sql: the SQL engine process ended unexpectedly (exit code -9)")
    assert (await run(engine, "SELECT 2 AS two"))["rows"] == [{"two": 2}]


@pytest.mark.parametrize("frozen", [False, True], ids=["busy", "frozen"])
async def test_a_step_timeout_stops_a_runaway_query_long_before_the_sql_timeout(
    tmp_path: Path, frozen: bool
) -> None:
    """The step's own timeout (1 s) cancels the tool; the query is interrupted (or its
    process killed) although sql.timeout is 300 s."""
    settings = blind_settings(sql={"timeout": 300, "memory_limit": LIMIT})
    engine = await engine_for(settings)
    pid = engine.pid
    assert pid is not None
    if frozen:
        os.kill(pid, signal.SIGSTOP)
    heavy = "SELECT count(*) AS n FROM range(100000000) AS a, range(100000000) AS b"
    plan = Plan.model_validate(
        {
            "name": "runaway",
            "steps": [{"id": "q", "tool": "sql.query", "timeout": 1, "args": {"sql": heavy}}],
        }
    )
    start = time.monotonic()
    result = await Executor(load_tools(), settings=settings).run(plan)
    elapsed = time.monotonic() - start
    step = result.steps["q"]
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.failure_mode is FailureMode.TIMEOUT
    assert elapsed < 1 + GRACE + MARGIN
    deadline = time.monotonic() + GRACE + MARGIN
    while frozen and engine.pid == pid and time.monotonic() < deadline:
        time.sleep(0.05)  # the kill of a frozen process follows the cancellation
    after = await engine.run("SELECT 7 AS n", None, max_rows=1, max_bytes=1000, timeout=30)
    assert after["rows"] == [{"n": 7}]
    if frozen:
        assert engine.pid != pid


async def test_the_engine_process_gets_no_secret_of_this_process(
    engine: SqlEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-duckdb")
    engine.close()  # the next query starts a process with the environment as it is now
    assert (await run(engine, "SELECT 1 AS one"))["rows"] == [{"one": 1}]
    assert engine.pid is not None
    environ = Path(f"/proc/{engine.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if b"sk-not-for-duckdb" in v or v.startswith(b"DAGENTIC_")]


async def test_queries_past_the_running_limit_wait_their_turn_and_can_time_out_waiting(
    engine: SqlEngine,
) -> None:
    """At most MAX_RUNNING queries run at once in an engine process (each cursor and
    thread takes memory inside its cap); the others wait, and one whose time runs out
    while waiting is answered as a timeout at once, with no restart of the engine."""
    from dagentic.plugins.sql._worker import MAX_RUNNING

    pid = engine.pid
    heavy = "SELECT sum(range) AS n FROM range(1000000000000)"  # long, in little memory
    outcomes: list[str] = []

    async def busy() -> None:
        with pytest.raises(StepTimeoutError):
            await run(engine, heavy, timeout=3)
        outcomes.append("busy timed out")

    async with anyio.create_task_group() as group:
        for _ in range(MAX_RUNNING):
            group.start_soon(busy)
        await anyio.sleep(0.5)  # they hold every turn
        with pytest.raises(StepTimeoutError):
            await run(engine, "SELECT 1 AS n", timeout=0.5)
        outcomes.append("waiting timed out")
    assert outcomes == ["waiting timed out", *["busy timed out"] * MAX_RUNNING]
    assert engine.pid == pid  # interrupted, not killed
    assert (await run(engine, "SELECT 7 AS n"))["rows"] == [{"n": 7}]
