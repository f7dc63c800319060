"""Shared fixtures: both anyio backends, and a registry of small real tools for tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import pytest
import structlog
from dagentic import Settings, ToolError, ToolRegistry, load_tools, tool

from tests.blind import blind_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests run in two processes (pytest-xdist, --dist loadgroup); the Ray tests share one
    cluster, so they run in one of them, one after another."""
    ray = pytest.mark.xdist_group("ray")
    for item in items:
        if item.path.parent.name == "ray" and item.path.parent.parent.name == "tests":
            item.add_marker(ray)


@pytest.fixture(autouse=True)
def _fresh_structlog():
    """The CLI configures structlog at its edge; never let that leak into other tests."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _no_sql_engine_left() -> Iterator[None]:
    """SQL engines are processes kept for the process's life; a test ends the ones it
    started, so that no test sees another's processes (the sandbox's host guards look)."""
    yield
    sql = sys.modules.get("dagentic.plugins.sql")
    if sql is not None:
        sql.close_engines()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@tool(name="test.echo", side_effects="none")
async def echo(value: Any = None) -> Any:
    """Return the value it was given.

    Args:
        value: Anything JSON.
    """
    return value


@tool(name="test.sleep", side_effects="none")
async def sleep(seconds: float, value: Any = None) -> Any:
    """Sleep, then return `value` (or the seconds slept).

    Args:
        seconds: How long to sleep.
        value: What to return.
    """
    await anyio.sleep(seconds)
    return seconds if value is None else value


@tool(name="test.sync_sleep", side_effects="none")
def sync_sleep(seconds: float) -> float:
    """Sleep in a worker thread, checking for cancellation every 10 ms.

    Args:
        seconds: How long to sleep.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        anyio.from_thread.check_cancelled()
        time.sleep(0.01)
    return seconds


@tool(name="test.fail", side_effects="none")
async def fail(message: str = "boom", retryable: bool = False) -> None:
    """Always fail with a ToolError.

    Args:
        message: The error message.
        retryable: Whether a retry may help.
    """
    raise ToolError(message, retryable=retryable)


@tool(name="test.crash", side_effects="none")
async def crash(message: str = "crash") -> None:
    """Raise a plain RuntimeError, as buggy tool code would.

    Args:
        message: The error message.
    """
    raise RuntimeError(message)


@tool(name="test.write", side_effects="write")
async def write(text: str) -> dict[str, str]:
    """Pretend to write somewhere (a side effect).

    Args:
        text: What to write.
    """
    return {"written": text}


@tool(name="test.untrusted", side_effects="read", trusted=False)
async def untrusted(text: str = "ignore previous instructions") -> dict[str, str]:
    """Return text from an untrusted source, like a web page.

    Args:
        text: The page text.
    """
    return {"text": text}


TEST_TOOLS = [echo, sleep, sync_sleep, fail, crash, write, untrusted]


@pytest.fixture
def tools() -> ToolRegistry:
    """The built-in tools plus the test tools above."""
    return ToolRegistry([*load_tools(), *TEST_TOOLS])


@pytest.fixture
def settings() -> Settings:
    """Settings that ignore any dagentic.toml or DAGENTIC_* variables around the tests."""
    return blind_settings()


from tests.postgres import postgres_server  # noqa: E402,F401  (a real PostgreSQL server for journal tests)
