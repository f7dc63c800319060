"""Fixtures of the web tests: real servers on 127.0.0.1 (see webtest.py) and settings that
point the web tools at temporary folders (index, cache) so tests never share state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagentic import Settings
from webtest import Listener, WebServer


@pytest.fixture
def web_server() -> Iterator[WebServer]:
    server = WebServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def web_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings with the index and cache in tmp_path, the cache off and no retry wait
    unless a test asks; keyword arguments go into ``web``."""

    def make(**web: Any) -> Settings:
        config: dict[str, Any] = {
            "cache_dir": tmp_path / "cache",
            "cache_ttl": 0,
            "local": {"index_dir": tmp_path / "index"},
        }
        for key, value in web.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return Settings(web=config)

    return make
