"""Shared fixtures: both anyio backends, and a registry of small real tools for tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import structlog
from dagentic import Settings, ToolRegistry, load_tools

from tests.blind import blind_settings
from tests.tools import TEST_TOOLS


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


@pytest.fixture
def tools() -> ToolRegistry:
    """The built-in tools plus the test tools above."""
    return ToolRegistry([*load_tools(), *TEST_TOOLS])


@pytest.fixture
def settings() -> Settings:
    """Settings that ignore any dagentic.toml or DAGENTIC_* variables around the tests."""
    return blind_settings()


from tests.postgres import postgres_server  # noqa: E402,F401  (a real PostgreSQL server for journal tests)
