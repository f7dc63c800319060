"""The ``[mcp]`` settings: the MCP servers whose tools dagentic may call.

A server runs as a subprocess spoken to over stdio (``command``, ``args``, ``env``,
``cwd``) or is reached over streamable HTTP (``url``, ``headers``)::

    [mcp.servers.time]
    command = "mcp-server-time"

    [mcp.servers.docs]
    url = "http://127.0.0.1:8765/mcp"
    headers = { Authorization = "Bearer ..." }   # kept secret, shown masked

    [mcp.servers.time.tools.get_current_time]   # what the server's annotations do not say
    side_effects = "read"
    trusted = true
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["McpServer", "McpSettings", "McpToolOverride"]

SERVER_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class McpToolOverride(BaseModel):
    """What the settings say about one of a server's tools, over its annotations."""

    model_config = ConfigDict(extra="forbid")

    side_effects: Literal["none", "read", "write"] | None = Field(
        None, description="The most one call does (default: from readOnlyHint)."
    )
    idempotent: bool | None = Field(None, description="Default: from idempotentHint.")
    trusted: bool | None = Field(
        None, description="Its output is trusted (default: not when openWorldHint or unsaid)."
    )
    egress: dict[str, Literal["destination", "content"]] | None = Field(
        None,
        description="Arguments that leave the machine (default: every argument as content "
        "for an open-world tool, none otherwise).",
    )
    timeout: float | None = Field(None, gt=0, description="Seconds per call.")


class McpServer(BaseModel):
    """One MCP server: a command run over stdio, or a streamable HTTP ``url``."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(None, description="stdio: the program to run.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments.")
    env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="stdio: environment variables added to a minimal one (PATH, HOME, ...).",
    )
    cwd: Path | None = Field(None, description="stdio: its working directory.")
    url: str | None = Field(None, description="Streamable HTTP: the endpoint.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Streamable HTTP: sent with every request."
    )
    startup_timeout: float = Field(
        30.0, gt=0, description="Seconds to start the server and list its tools."
    )
    tools: dict[str, McpToolOverride] = Field(
        default_factory=dict, description="Per tool (by the server's name for it)."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http:// or https://, not {self.url!r}")
        return self


class McpSettings(BaseModel):
    """MCP servers whose tools appear as ``NAME.<tool>``."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "mcp"

    servers: dict[str, McpServer] = Field(
        default_factory=dict, description="By name: its tools are NAME.<tool>."
    )

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, McpServer]) -> dict[str, McpServer]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise ValueError(
                    f"server name {name!r} must be lowercase letters, digits and _ "
                    "(its tools are NAME.<tool>)"
                )
        return servers
