"""``dagentic serve``: an HTTP API and a web page over the runtime and the durable journal.

Start plan runs (a plan of the plan folders by name, or a plan body) and asks, list and
read runs, follow a run's events as Server-Sent Events, cancel runs, decide what waits for
approval, read traces and the failure-mode report. Every endpoint but ``GET /api/health``
needs the bearer token. See ``docs/how-to/serve.md``.

Importing this package loads FastAPI, Starlette and uvicorn (the ``serve`` extra): only
``dagentic serve`` does.
"""

from __future__ import annotations

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
