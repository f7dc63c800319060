"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the sandboxes do not care which loop drives them; the runtime's tests
    cover trio."""
    return "asyncio"
