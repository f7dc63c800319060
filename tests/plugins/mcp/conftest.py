"""The mcp plugin's tests need the MCP SDK (the ``mcp`` extra, which scripts/setup.sh
installs: its absence fails them, never skips them); every server a test starts is stopped
after its module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _stop_mcp_servers() -> Iterator[None]:
    yield
    from dagentic.plugins.mcp import close_servers

    close_servers()
