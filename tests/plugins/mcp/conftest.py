"""The mcp plugin's tests need the MCP SDK (the ``mcp`` extra); every server a test starts
is stopped after its module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed")


@pytest.fixture(autouse=True, scope="module")
def _stop_mcp_servers() -> Iterator[None]:
    yield
    from dagentic.plugins.mcp import close_servers

    close_servers()
