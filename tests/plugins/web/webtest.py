"""Real servers on 127.0.0.1 for the web tests: an HTTP server with scripted routes, and a
bare listener that counts connections."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Listener", "Reply", "Request", "WebServer"]


@dataclass
class Request:
    """What the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What a route answers: status, headers, body; ``delay`` seconds before the headers;
    ``chunks`` of the body sent ``chunk_delay`` seconds apart (a slow body)."""

    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunks: int = 1

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        self.headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode()


Route = Callable[[Request], Reply]


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (a truncated fetch, a timeout) are expected here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class WebServer:
    """A threaded HTTP server on 127.0.0.1 with routes by path; records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                server.requests.append(request)
                route = server.routes.get(parts.path)
                reply = route(request) if route else Reply(404, "not found")
                payload = reply.payload()
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                step = max(1, len(payload) // reply.chunks)
                try:
                    for start in range(0, len(payload), step):
                        self.wfile.write(payload[start : start + step])
                        self.wfile.flush()
                        if reply.chunk_delay:
                            time.sleep(reply.chunk_delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _handle

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # Polling for shutdown every 10 ms keeps teardown from costing 0.5 s a test.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """The allow_hosts entry for this server."""
        return f"127.0.0.1:{self.port}"

    def route(self, path: str, reply: Route | Reply | list[Reply]) -> None:
        """Answer ``path`` with a fixed reply, a function, or a list of replies in turn
        (the last one repeats)."""
        if isinstance(reply, Reply):
            self.routes[path] = lambda _request, r=reply: r
        elif isinstance(reply, list):
            queue = list(reply)
            self.routes[path] = lambda _request: queue.pop(0) if len(queue) > 1 else queue[0]
        else:
            self.routes[path] = reply


class Listener:
    """A bare TCP listener on 127.0.0.1 that counts connections: for proving that a
    refused fetch sends nothing, not even a connection attempt."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()
