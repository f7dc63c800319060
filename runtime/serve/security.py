"""Who may call ``dagentic serve``, and what a request may hold.

:class:`Guard` is the outermost ASGI layer of the app (inside CORS, when that is on): it
answers a request without the bearer token with 401 before anything reads its body, holds
request bodies to ``serve.max_body_bytes`` (413), and puts headers on every response that
keep a browser from sniffing types, framing the page, sending its address (which may hold
the token) to another site, or loading anything from elsewhere.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "EVENTS_PATH",
    "Guard",
    "is_loopback",
    "new_token",
    "refuse_exposed",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The one endpoint that takes the token in its query too: a browser's EventSource cannot
# send headers.
EVENTS_PATH = re.compile(r"/api/runs/[^/]+/events\Z")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
MISSING_TOKEN = (
    "missing token: send the header 'Authorization: Bearer TOKEN' with the token dagentic "
    "serve printed at start (or the serve.token setting)"
)
MISSING_TOKEN_EVENTS = (
    "missing token: send the header 'Authorization: Bearer TOKEN', or ?token=TOKEN (taken "
    "on this events stream only, for a browser's EventSource)"
)
WRONG_TOKEN = (
    "wrong token: use the one dagentic serve printed at start (or the serve.token setting)"
)


def new_token() -> str:
    """A token for one start of the server: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): only this machine can
    connect to it."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def refuse_exposed(host: str, token_set: bool) -> str | None:
    """Why the server must not listen on ``host``, or None: beyond loopback, only with a
    configured token (a generated one would be printed to whoever reads the logs, and
    changes at every start)."""
    if token_set or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without a configured token: anyone who can reach "
        "it could run plans. Set serve.token (DAGENTIC_SERVE__TOKEN) to a long random "
        "secret, or listen on 127.0.0.1"
    )


def _json(
    status: int, body: dict[str, Any], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[Message, Message]:
    data = json.dumps(body, ensure_ascii=True).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ],
    }
    return start, {"type": "http.response.body", "body": data}


class Guard:
    """The token check, the body limit and the security headers (see the module's doc).

    Args:
        app: the app behind.
        token: the bearer token.
        max_body: bytes a request body may have.
        public: whether a request (method, path) needs no token: the health check and
            the page's own files, which hold no data.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        max_body: int,
        public: Callable[[str, str], bool],
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.max_body = max_body
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the API has none: refused before anything
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # the lifespan
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in _HEADERS if n not in names]
                api = path.startswith("/api/") or path == "/openapi.json"
                if api and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                elif b"cache-control" not in names:  # the page: asked again after an upgrade
                    headers.append((b"cache-control", b"no-cache"))
                message["headers"] = headers
            await send(message)

        if not self.public(method, path):
            refused = self._refused(scope, path)
            if refused is not None:
                start, body = _json(
                    401, {"error": refused}, ((b"www-authenticate", b'Bearer realm="dagentic"'),)
                )
                await send_with_headers(start)
                await send_with_headers(body)
                return
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            body_or_none = await self._read_body(scope, receive, send_with_headers)
            if body_or_none is None:
                return
            receive = _replay(body_or_none, receive)
        await self.app(scope, receive, send_with_headers)

    def _refused(self, scope: Scope, path: str) -> str | None:
        """Why a request is refused (no token, a wrong one), or None."""
        given: bytes | None = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer" and credentials.strip():
                    given = credentials.strip()
                    break
        events = EVENTS_PATH.match(path) is not None
        if given is None and events:
            query = scope.get("query_string", b"").decode("latin-1")
            for key, value in parse_qsl(query, keep_blank_values=True):
                if key == "token" and value:
                    given = value.encode("utf-8", "surrogateescape")
                    break
        if given is None:
            return MISSING_TOKEN_EVENTS if events else MISSING_TOKEN
        if not hmac.compare_digest(given, self.token):
            return WRONG_TOKEN
        return None

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The request's body, whole; None (and 413 sent) when it is over the limit."""
        too_big = (
            f"the request body is over serve.max_body_bytes ({self.max_body} bytes): send "
            "less, or raise the setting"
        )
        for name, value in scope.get("headers", []):
            declared = name.lower() == b"content-length" and value.isdigit()
            if declared and int(value) > self.max_body:
                start, body = _json(413, {"error": too_big})
                await send(start)
                await send(body)
                return None
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks += message.get("body", b"")
            if len(chunks) > self.max_body:
                start, body = _json(413, {"error": too_big})
                await send(start)
                await send(body)
                return None
            if not message.get("more_body", False):
                return bytes(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` whole, then whatever ``receive`` gives (the
    client going away)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
