"""MCP sessions, and MCP tools as dagentic :class:`~dagentic.Tool` objects.

Every session lives on one background event loop (a thread running an anyio blocking
portal), whatever loop the executor runs on: one session per server per process, started
when first needed and shared by parallel steps (requests on one session run concurrently).
A call from the executor's loop waits for its request without blocking that loop; when the
step is cancelled (its timeout, say) the request is cancelled, and the SDK tells the server
with ``notifications/cancelled``. A server whose connection ends (a crash) fails its calls
with a :class:`~dagentic.ToolError` holding the tail of its stderr, and is started again on
the next call. :func:`close_servers` stops them all; it also runs at exit.

The SDK (``mcp``, the ``mcp`` extra) is imported here only, when a server is configured.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
from dagentic import PluginError, ToolContext, ToolError
from dagentic.tools import TOOL_NAME, Egress, SideEffects, Tool
from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model

from .settings import McpServer, McpSettings, McpToolOverride

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

__all__ = [
    "McpServerError",
    "ServerConnection",
    "close_servers",
    "connection",
    "mcp_tools",
    "tool_metadata",
]

STDERR_TAIL = 2000  # characters of a server's stderr shown in an error
INSTALL_HINT = "pip install 'dagentic[mcp]'"
_CONTEXT = "_dagentic_context"
CONNECTION_CLOSED = -32000  # the JSON-RPC error of a request whose connection ended


class McpServerError(ToolError):
    """An MCP server could not be started, listed or reached."""


# -- the background loop ---------------------------------------------------------------------

_LOCK = threading.Lock()
_PORTAL: BlockingPortal | None = None
_PORTAL_CM: contextlib.AbstractContextManager[BlockingPortal] | None = None
_CONNECTIONS: dict[str, ServerConnection] = {}


def _portal() -> BlockingPortal:
    global _PORTAL, _PORTAL_CM
    with _LOCK:
        if _PORTAL is None:
            from anyio.from_thread import start_blocking_portal

            _PORTAL_CM = start_blocking_portal("asyncio")
            _PORTAL = _PORTAL_CM.__enter__()
        return _PORTAL


def close_servers() -> None:
    """Stop every MCP server this process started and the loop their sessions ran on
    (they start again when next used). Also runs at exit."""
    global _PORTAL, _PORTAL_CM
    with _LOCK:
        connections = list(_CONNECTIONS.values())
        _CONNECTIONS.clear()
        portal, portal_cm = _PORTAL, _PORTAL_CM
        _PORTAL = _PORTAL_CM = None
    if portal is None or portal_cm is None:
        return
    for conn in connections:
        with contextlib.suppress(Exception):
            portal.call(conn.stop)
    with contextlib.suppress(Exception):
        portal_cm.__exit__(None, None, None)
    for conn in connections:
        conn.close_log()


atexit.register(close_servers)


def _after_fork() -> None:
    """A forked child has neither the background loop nor the servers: it starts its own."""
    global _LOCK, _PORTAL, _PORTAL_CM
    _LOCK = threading.Lock()
    _PORTAL = _PORTAL_CM = None
    _CONNECTIONS.clear()


os.register_at_fork(after_in_child=_after_fork)


def connection(name: str, config: McpServer) -> ServerConnection:
    """The process's connection to server ``name`` (made on first use, not started)."""
    with _LOCK:
        conn = _CONNECTIONS.get(name)
        if conn is None or conn.config != config:
            old, conn = conn, ServerConnection(name, config)
            _CONNECTIONS[name] = conn
        else:
            old = None
    portal = _PORTAL
    if old is not None and portal is not None:  # settings changed: the old one stops
        stopping = portal.start_task_soon(old.stop)  # without waiting: this may be a loop
        stopping.add_done_callback(lambda _: old.close_log())
    return conn


async def _wait(future: concurrent.futures.Future[Any]) -> Any:
    """``future``'s result, waited for on the caller's event loop (asyncio or trio) without
    blocking it; cancelling the wait cancels the future's task on the background loop."""
    import asyncio
    import sys

    event = anyio.Event()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio (loaded, since it runs this)
        token = sys.modules["trio"].lowlevel.current_trio_token()

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                token.run_sync_soon(event.set)
    else:

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    future.add_done_callback(wake)
    try:
        await event.wait()
    except BaseException:
        future.cancel()  # cancels the request: the server is told
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await event.wait()
        raise
    return future.result()


# -- one server ------------------------------------------------------------------------------


def _import_sdk() -> Any:
    try:
        import mcp
    except ImportError as exc:
        raise PluginError(
            f"MCP servers are configured ([mcp.servers]) but the MCP SDK is not installed: "
            f"{INSTALL_HINT}"
        ) from exc
    return mcp


class ServerConnection:
    """One MCP server and its session, on the background loop. Methods without ``_sync``
    run on that loop."""

    def __init__(self, name: str, config: McpServer) -> None:
        self.name = name
        self.config = config
        self.session: Any = None
        self.tools: list[Any] | None = None  # the server's tools, as last listed
        self._lock: anyio.Lock | None = None
        self._stop: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._stderr: Any = None  # a temporary file the server's stderr goes to
        self._task: Any = None  # the task the session lives in

    # -- on the background loop --

    async def ensure(self) -> Any:
        """The session, started if it is not running."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self.session is not None:
                return self.session
            _import_sdk()
            ready = anyio.Event()
            failure: list[BaseException] = []
            self._stop, self._done = anyio.Event(), anyio.Event()
            import asyncio  # the background loop is asyncio's

            self._task = asyncio.get_running_loop().create_task(self._run(ready, failure))
            with anyio.move_on_after(self.config.startup_timeout) as scope:
                await ready.wait()
            if scope.cancelled_caught or failure:
                await self.stop()
                why = (
                    f"did not start within {self.config.startup_timeout:g}s"
                    if scope.cancelled_caught
                    else f"failed to start: {_describe(failure[0])}"
                )
                raise McpServerError(f"MCP server '{self.name}' {why}{self.stderr_tail()}")
            return self.session

    async def _run(self, ready: anyio.Event, failure: list[BaseException]) -> None:
        from mcp import ClientSession

        assert self._stop is not None and self._done is not None
        stop, done = self._stop, self._done
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(
                    ClientSession(read, write, message_handler=self._on_message)
                )
                await session.initialize()
                self.session = session
                ready.set()
                await stop.wait()
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits for it
            failure.append(exc)
        finally:
            self.session = None
            ready.set()
            done.set()

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        config = self.config
        if config.url is not None:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            client = create_mcp_http_client(
                headers={k: v.get_secret_value() for k, v in config.headers.items()}
            )

            @contextlib.asynccontextmanager
            async def http() -> Any:
                async with client, streamable_http_client(config.url, http_client=client) as s:
                    yield s

            return http()
        from mcp.client.stdio import StdioServerParameters, stdio_client

        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        assert config.command is not None
        params = StdioServerParameters(
            command=config.command,
            args=config.args,
            env={k: v.get_secret_value() for k, v in config.env.items()} or None,
            cwd=config.cwd,
        )
        return stdio_client(params, errlog=self._stderr)

    async def _on_message(self, message: Any) -> None:
        from mcp import types

        if isinstance(message, types.ToolListChangedNotification):
            self.tools = None  # listed again when next asked for

    async def stop(self) -> None:
        """Stop the session and the server (a stdio server's process ends)."""
        if self._stop is not None:
            self._stop.set()
        if self.session is None and self._task is not None and not self._task.done():
            self._task.cancel()  # still starting (it may never answer): the process is ended
        if self._done is not None:
            with anyio.move_on_after(10):
                await self._done.wait()
        self.session = None

    async def _lost(self, session: Any) -> None:
        """Stop ``session``'s server after its connection ended, unless another call has
        started a new one already."""
        if self.session is session or self.session is None:
            await self.stop()

    async def list_tools(self) -> list[Any]:
        if self.tools is not None and self.session is not None:
            return self.tools
        session = await self.ensure()
        tools: list[Any] = []
        cursor: str | None = None
        from mcp import types

        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            with anyio.fail_after(self.config.startup_timeout):
                page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.tools = tools
        return tools

    async def call(
        self, tool: str, arguments: dict[str, Any], context: ToolContext | None = None
    ) -> Any:
        from mcp import MCPError

        session = await self.ensure()
        progress = None
        if context is not None:

            async def progress(done: float, total: float | None, message: str | None) -> None:
                context.report_progress(done, total, message)  # the live table shows it

        try:
            result = await session.call_tool(tool, arguments, progress_callback=progress)
        except MCPError as exc:
            if exc.error.code == CONNECTION_CLOSED or (self._done and self._done.is_set()):
                await self._lost(session)  # the connection ended: start again on the next call
                raise ToolError(
                    f"MCP server '{self.name}' stopped during '{tool}' ({exc}); it is started "
                    f"again on the next call{self.stderr_tail()}",
                    tool=f"{self.name}.{tool}",
                ) from None
            raise ToolError(
                f"MCP server '{self.name}' refused '{tool}': {exc}", tool=f"{self.name}.{tool}"
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            await self._lost(session)
            raise ToolError(
                f"MCP server '{self.name}' stopped during '{tool}' ({type(exc).__name__}); it "
                f"is started again on the next call{self.stderr_tail()}",
                tool=f"{self.name}.{tool}",
            ) from None
        if result.is_error:
            raise ToolError(
                f"MCP tool '{self.name}.{tool}' failed: {_text_of(result.content)}",
                tool=f"{self.name}.{tool}",
            )
        if result.structured_content is not None:
            return result.structured_content
        return _content(result.content)

    def close_log(self) -> None:
        """Close the file the server's stderr went to (once it is stopped)."""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_tail(self) -> str:
        """``; its stderr ends: ...`` with the last lines the server wrote, or nothing."""
        file = self._stderr
        if file is None:
            return ""
        try:
            file.flush()
            file.seek(0)
            text = file.read()
        except (OSError, ValueError):
            return ""
        tail = text.strip()[-STDERR_TAIL:]
        return f"; its stderr ends:\n{tail}" if tail else ""

    # -- from other threads --

    def list_tools_sync(self) -> list[Any]:
        """The server's tools, listed from a thread that is not the background loop's."""
        try:
            return cast("list[Any]", _portal().call(self.list_tools))
        except (ToolError, PluginError):
            raise
        except Exception as exc:
            raise McpServerError(
                f"MCP server '{self.name}' could not list its tools: {_describe(exc)}"
                f"{self.stderr_tail()}"
            ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text_of(content: list[Any]) -> str:
    return " ".join(getattr(c, "text", "") for c in content).strip() or "(no message)"


def _content(content: list[Any]) -> Any:
    """The text, image and resource content of a result, as data: one text is a string."""
    items: list[dict[str, Any]] = []
    for c in content:
        kind = getattr(c, "type", "")
        if kind == "text":
            items.append({"type": "text", "text": c.text})
        elif kind in ("image", "audio"):
            items.append({"type": kind, "mime_type": c.mime_type, "data": c.data})
        elif kind == "resource":
            res = c.resource
            item = {"type": "resource", "uri": str(res.uri), "mime_type": res.mime_type}
            item.update({"text": res.text} if hasattr(res, "text") else {"blob": res.blob})
            items.append(item)
        elif kind == "resource_link":
            items.append({"type": "resource_link", "uri": str(c.uri), "name": c.name})
        else:
            items.append(c.model_dump(mode="json", by_alias=True, exclude_none=True))
    if len(items) == 1 and items[0]["type"] == "text":
        return items[0]["text"]
    return items


# -- MCP tools as dagentic tools ------------------------------------------------------------------


def tool_metadata(
    annotations: Any, override: McpToolOverride | None, arguments: list[str]
) -> dict[str, Any]:
    """side_effects, idempotent, trusted and egress of a tool from its MCP annotations (the
    spec's defaults when a hint is unsaid; none at all: an untrusted write), then the
    settings' override."""
    read_only = bool(getattr(annotations, "read_only_hint", None))
    idempotent = bool(getattr(annotations, "idempotent_hint", None)) or read_only
    open_world = annotations is None or getattr(annotations, "open_world_hint", None) is not False
    side_effects: SideEffects = "read" if read_only else "write"
    egress: dict[str, Egress] = dict.fromkeys(arguments, "content") if open_world else {}
    trusted = not open_world
    timeout = None
    if override is not None:
        side_effects = override.side_effects or side_effects
        idempotent = idempotent if override.idempotent is None else override.idempotent
        trusted = trusted if override.trusted is None else override.trusted
        egress = dict(override.egress) if override.egress is not None else egress
        timeout = override.timeout
    return {
        "side_effects": side_effects,
        "idempotent": idempotent,
        "trusted": trusted,
        "egress": egress,
        "timeout": timeout,
    }


_SIMPLE: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


def _annotation(schema: Any) -> Any:
    """A Python type for a JSON schema: simple types, enums, arrays and objects; anything
    else is any JSON value (the server checks it)."""
    if not isinstance(schema, Mapping):
        return JsonValue
    if (
        "enum" in schema
        and schema["enum"]
        and all(isinstance(v, str | int | bool) for v in schema["enum"])
    ):
        return Literal[tuple(schema["enum"])]
    if "const" in schema and isinstance(schema["const"], str | int | bool):
        return Literal[schema["const"]]
    for key in ("anyOf", "oneOf"):
        if key in schema and isinstance(schema[key], list) and schema[key]:
            options = tuple(_annotation(s) for s in schema[key])
            return options[0] if len(options) == 1 else _union(options)
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        return _union(tuple(_annotation({**schema, "type": k}) for k in kind))
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "array":
        return list[_annotation(schema.get("items"))]  # type: ignore[misc]
    if kind == "object":
        return dict[str, JsonValue]
    return JsonValue


def _union(options: tuple[Any, ...]) -> Any:
    from functools import reduce
    from operator import or_

    try:
        return reduce(or_, options)
    except TypeError:
        return JsonValue


def args_model(tool_name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """An argument model for a server's ``inputSchema``: its properties, required ones
    required, types mapped (see :func:`_annotation`), ``extra="forbid"``; its JSON schema
    is what planners see, and its fields check literal arguments when a plan is validated."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    fields: dict[str, Any] = {}
    for name, prop in properties.items():
        if not name.isidentifier() or name.startswith("_"):
            continue  # cannot be a field; the server sees only what the model holds
        annotation = _annotation(prop)
        description = prop.get("description") if isinstance(prop, Mapping) else None
        if name in required:
            fields[name] = (annotation, Field(..., description=description))
        else:
            default = prop.get("default") if isinstance(prop, Mapping) else None
            fields[name] = (annotation | None, Field(default, description=description))
    model_name = "".join(p.title() for p in re.split(r"[._]", tool_name) if p) + "Args"
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def dagentic_name(server: str, tool: str) -> str:
    """``server.tool`` with the tool's name in dagentic's form (lowercase, ``_``)."""
    local = re.sub(r"[^a-z0-9_]", "_", tool.lower())
    if not local[:1].isalpha():
        local = f"t_{local}"
    return f"{server}.{local}"


def _make_tool(server: str, config: McpServer, listed: Any) -> Tool | None:
    name = dagentic_name(server, listed.name)
    if not TOOL_NAME.match(name):
        return None
    schema = listed.input_schema or {}
    model = args_model(name, schema)
    required = set(schema.get("required") or ())
    meta = tool_metadata(
        listed.annotations, config.tools.get(listed.name), list(model.model_fields)
    )
    remote = listed.name

    async def call(**kwargs: Any) -> Any:
        context: ToolContext | None = kwargs.pop(_CONTEXT, None)
        arguments = {
            k: v for k, v in kwargs.items() if v is not None or k in required
        }  # unset optional arguments are left to the server's defaults
        conn = connection(server, _current_config(context, server, config))
        future = _portal().start_task_soon(conn.call, remote, arguments, context)
        return await _wait(future)

    description = listed.description or listed.title or f"{remote} (MCP server '{server}')"
    output = (listed.output_schema or {}).get("properties")
    returns = f"dict: {{{', '.join(output)}}}" if isinstance(output, Mapping) and output else None
    return Tool(
        name=name,
        description=description,
        fn=call,
        args_model=model,
        is_async=True,
        context_param=_CONTEXT,
        timeout=meta["timeout"],
        side_effects=meta["side_effects"],
        idempotent=meta["idempotent"],
        trusted=meta["trusted"],
        egress=meta["egress"],
        returns=returns,
    )


def _current_config(context: ToolContext | None, server: str, fallback: McpServer) -> McpServer:
    settings = context.settings if context is not None else None
    if settings is None:
        return fallback
    found = settings.plugin(McpSettings).servers.get(server)
    return found if found is not None else fallback


def mcp_tools(settings: Any) -> list[Tool]:
    """The tools of every server ``settings`` configures (each started and listed now)."""
    config = settings.plugin(McpSettings)
    if not config.servers:
        return []
    _import_sdk()
    tools: list[Tool] = []
    for server, server_config in sorted(config.servers.items()):
        listed_tools = connection(server, server_config).list_tools_sync()
        for listed in listed_tools:
            made = _make_tool(server, server_config, listed)
            if made is not None:
                tools.append(made)
        names = [t.name for t in listed_tools]
        for unknown in sorted(set(server_config.tools) - set(names)):
            from dagentic.journal import get_logger
            from dagentic.tools import suggest

            get_logger().warning(
                "mcp_unknown_tool_setting",
                message=f"[mcp.servers.{server}.tools.{unknown}]: server '{server}' has no "
                f"tool '{unknown}'{suggest(unknown, names)}",
            )
    return tools


def server_tools(settings: Any) -> dict[str, list[Any]]:
    """Each configured server's tools as the server lists them (for ``dagentic mcp tools``)."""
    config = settings.plugin(McpSettings)
    if config.servers:
        _import_sdk()
    return {
        name: connection(name, server).list_tools_sync()
        for name, server in sorted(config.servers.items())
    }
