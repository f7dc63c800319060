"""The run journal: structlog events with run and step ids, and the live progress view."""

from __future__ import annotations

import io
import logging

import pytest
import structlog
from dagentic import Executor, LogJournal, MemoryJournal, Plan, Step, ToolRegistry
from dagentic.journal import get_logger
from dagentic.progress import LiveProgress
from rich.console import Console


def _plan() -> Plan:
    return Plan(
        name="journal",
        steps=[
            Step(id="first", tool="test.echo", args={"value": 1}),
            Step(id="second", tool="test.fail", needs=["first"]),
            Step(id="third", tool="test.echo", needs=["second"]),
        ],
    )


@pytest.mark.anyio
async def test_log_journal_emits_structlog_events_with_run_and_step_ids(
    tools: ToolRegistry, settings
) -> None:
    with structlog.testing.capture_logs() as events:
        result = await Executor(
            tools, settings=settings, journal=LogJournal(structlog.get_logger())
        ).run(_plan())
    assert all(e["run_id"] == result.run_id for e in events)
    kinds = [(e["event"], e.get("step_id")) for e in events]
    assert kinds[0] == ("run_started", None)
    assert kinds[-1] == ("run_finished", None)
    assert ("finished", "first") in kinds
    failed = next(e for e in events if e["event"] == "finished" and e["step_id"] == "second")
    assert failed["log_level"] == "warning"
    assert failed["failure_mode"] == "tool_error"
    assert failed["error"] == "boom"
    skipped = next(e for e in events if e.get("step_id") == "third")
    assert skipped["event"] == "skipped"
    assert skipped["failure_mode"] == "upstream_failed"


def test_library_logger_goes_through_stdlib_logging_when_structlog_is_unconfigured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    structlog.reset_defaults()
    logger = get_logger("dagentic")
    with caplog.at_level(logging.INFO, logger="dagentic"):
        logger.info("run_started", run_id="r1", step_id="s1")
        logger.debug("hidden", run_id="r1")
    assert [r.getMessage() for r in caplog.records] == [
        "event='run_started' run_id='r1' step_id='s1'"
    ]


@pytest.mark.anyio
async def test_live_progress_shows_each_step_status(tools: ToolRegistry, settings) -> None:
    executor = Executor(tools, settings=settings)
    compiled = executor.compile(_plan())
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    progress = LiveProgress(compiled, console)
    memory = MemoryJournal()

    class Both:
        def record(self, event) -> None:
            progress.record(event)
            memory.record(event)

    executor.journal = Both()
    with progress:
        await executor.run(compiled)
    final = buffer.getvalue().split("plan journal")[-1]
    assert "first" in final and "succeeded" in final
    assert "tool_error: boom" in final
    assert "upstream_failed" in final
    assert memory.kinds("first") == ["scheduled", "started", "attempt", "finished"]
