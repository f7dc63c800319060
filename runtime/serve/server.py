"""Running the app: uvicorn on a socket bound before it starts (so the URL printed is the
one it listens on, port 0 included), its access log off (a request's address may hold the
token), and a clean stop on SIGINT or SIGTERM that hands the runs back to the journal."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DagenticError
from .security import new_token, refuse_exposed

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["ServeRefused", "bind", "serve"]


class ServeRefused(DagenticError):
    """The server must not start as asked (a non-loopback address without a token)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    tools: Any = None,
    on_ready: Callable[[str, str | None], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM. ``on_ready(url, token)`` is called once the socket
    listens, with the token when it was made for this start (None: ``serve.token``)."""
    import uvicorn

    from .app import create_app

    configured = settings.serve.token
    refused = refuse_exposed(host, configured is not None)
    if refused is not None:
        raise ServeRefused(refused)
    token = configured.get_secret_value() if configured is not None else new_token()
    app = create_app(settings, tools=tools, token=token)
    sock = bind(host, port)
    if on_ready is not None:
        on_ready(url_of(sock, host), None if configured is not None else token)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        limit_concurrency=4096,  # connections at once; more are answered 503
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
