"""MCP servers as tool sources: each server configured under ``[mcp.servers.NAME]`` gives
its tools as ``NAME.<tool>``, checked like every other tool (their arguments against the
server's ``inputSchema``) and shown to planners.

What a tool does comes from its MCP annotations: ``readOnlyHint`` makes it a read,
otherwise it writes; ``idempotentHint`` makes it idempotent; ``openWorldHint`` (the spec's
default) makes its output untrusted and its arguments egress (content sent to the server).
A tool without annotations is an untrusted write, the safe default; the settings can say
otherwise per tool (``[mcp.servers.NAME.tools.TOOL]``, :class:`.settings.McpToolOverride`).

Servers start when first needed (listing their tools when the registry is built), one
session per server per process, and stop at exit (:func:`close_servers`). The MCP SDK is
the ``mcp`` extra (``pip install 'dagentic[mcp]'``); it is imported only when a server is
configured. Sessions and calls: :mod:`.client`.

The command group ``dagentic mcp`` lists the servers' tools (``dagentic mcp tools``) and
serves plans over MCP (``dagentic mcp serve``, :mod:`.server`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from dagentic import hookimpl
from pydantic import BaseModel

from .settings import McpServer, McpSettings, McpToolOverride

if TYPE_CHECKING:
    from dagentic import Settings

__all__ = [
    "McpServer",
    "McpSettings",
    "McpToolOverride",
    "close_servers",
    "mcp_app",
    "register_commands",
    "register_settings",
    "register_tools",
]


def close_servers() -> None:
    """Stop every MCP server this process started (they start again when next used).
    They also stop when the process exits."""
    import sys

    client = sys.modules.get(f"{__name__}.client")
    if client is not None:  # nothing was started if the client was never loaded
        client.close_servers()


def _settings() -> Settings:
    from dagentic import Settings

    return Settings()


@hookimpl
def register_tools() -> list[Any]:
    settings = _settings()
    if not settings.plugin(McpSettings).servers:
        return []
    from .client import mcp_tools

    return list(mcp_tools(settings))


@hookimpl
def register_settings() -> list[type[BaseModel]]:
    return [McpSettings]


mcp_app = typer.Typer(
    name="mcp", help="Use MCP servers' tools, and serve plans over MCP.", no_args_is_help=True
)


@mcp_app.command("serve")
def serve_command(
    plans: Annotated[
        list[Path] | None,
        typer.Option("--plans", help="A folder of plans to serve (repeatable; default: plans/)."),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option("--http", metavar="HOST:PORT", help="Serve streamable HTTP (default: stdio)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="A bearer token HTTP clients must send.")
    ] = None,
) -> None:
    """Serve plans as MCP tools, over stdio or streamable HTTP."""
    from .server import serve  # type: ignore[import-not-found,unused-ignore]

    serve(plans=plans or [Path("plans")], http=http, token=token)


@mcp_app.command("tools")
def tools_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """List each configured server's tools with their MCP annotations."""
    from dagentic import DagenticError
    from dagentic.display import safe_json, safe_text

    from .client import dagentic_name, server_tools

    try:
        listed = server_tools(_settings())
    except DagenticError as exc:
        typer.secho(f"error: {safe_text(exc.message)}", err=True, fg="red")
        raise typer.Exit(2) from exc
    finally:
        close_servers()
    data = {
        server: [
            {
                "name": dagentic_name(server, t.name),
                "mcp_name": t.name,
                "description": t.description,
                "annotations": t.annotations.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
                if t.annotations
                else None,
            }
            for t in tools
        ]
        for server, tools in listed.items()
    }
    if as_json:
        typer.echo(safe_json(data))
        return
    if not data:
        typer.echo("no MCP servers configured ([mcp.servers.NAME] in dagentic.toml)")
    for server, tools in data.items():
        typer.echo(f"{server}: {len(tools)} tools")
        for item in tools:
            hints = ", ".join(f"{k}={v}" for k, v in (item["annotations"] or {}).items())
            typer.echo(
                f"  {safe_text(item['name'], one_line=True)}  [{safe_text(hints or 'no annotations', one_line=True)}]"
            )


@hookimpl
def register_commands() -> list[typer.Typer]:
    return [mcp_app]
