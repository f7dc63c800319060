"""An MCP server for the mcp plugin's tests, written with the SDK.

    python mcp_fixture_server.py stdio
    python mcp_fixture_server.py http PORT

Tools: ``add`` (structured output, read-only and closed-world), ``echo`` (text, no
annotations), ``picture`` (text and an image), ``fail`` (an error), ``slow`` (sleeps; a
cancelled call is written to the file named by ``FIXTURE_LOG``), ``crash`` (writes to
stderr and exits at once), ``grow`` (adds a tool and says the list changed), ``steps``
(reports its progress).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp.types import ToolAnnotations

server = MCPServer("fixture")


def _log(line: str) -> None:
    path = os.environ.get("FIXTURE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


@server.tool(
    annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    structured_output=True,
)
def add(a: int, b: int, label: str = "sum") -> dict[str, Any]:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
        label: What to call the result.
    """
    return {label: a + b, "pid": os.getpid()}


@server.tool(structured_output=False)
def echo(text: str, times: int = 1) -> str:
    """Say the text back."""
    return " ".join([text] * times)


@server.tool(structured_output=False)
def picture() -> list[Any]:
    """A caption and a (tiny) PNG image."""
    return ["a dot", Image(data=b"\x89PNG\r\n\x1a\n", format="png")]


@server.tool(structured_output=False)
def fail(message: str) -> str:
    """Always fails with the message."""
    raise ToolError(f"fixture failure: {message}")


@server.tool(structured_output=False)
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    _log("slow started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _log("slow cancelled")
        raise
    return "slept"


@server.tool(structured_output=False)
async def steps(count: int, ctx: Context) -> str:
    """Report progress ``count`` times, then answer."""
    for done in range(1, count + 1):
        await ctx.report_progress(done, count, f"step {done}")
    return "done"


@server.tool(structured_output=False)
def crash() -> str:
    """Exit the server at once."""
    print("fixture: crashing now, as asked", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool(structured_output=False)
async def grow(ctx: Context) -> str:
    """Add the tool 'extra' and tell the client."""

    def extra() -> str:
        """A tool added later."""
        return "extra"

    server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
