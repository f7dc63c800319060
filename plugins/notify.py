"""``notify.log``: send a message to the run's log (structlog, with run and step ids)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from dagentic import ToolContext, hookimpl, tool
from dagentic.journal import get_logger

__all__ = ["log", "register_tools"]


@tool(name="notify.log", side_effects="write", typical_latency=0.001)
def log(
    message: str,
    context: ToolContext,
    level: Literal["info", "warning", "error"] = "info",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a message to the run log, for people watching the run.

    Args:
        message: The text to log.
        level: Severity: info, warning or error.
        data: Extra structured fields to log with the message.

    Returns:
        dict: {message, level, data, logged_at}.
    """
    logger = get_logger("dagentic.notify")
    getattr(logger, level)(message, run_id=context.run_id, step_id=context.step_id, **(data or {}))
    return {
        "message": message,
        "level": level,
        "data": data or {},
        "logged_at": datetime.now(UTC).isoformat(),
    }


@hookimpl
def register_tools() -> list[Any]:
    return [log]
