"""A third-party dagentic plugin: one tool and its settings, registered through an entry
point. The settings are section ``[hello]`` of ``dagentic.toml`` (``DAGENTIC_HELLO__*``)."""

from typing import ClassVar

from dagentic import ToolContext, hookimpl, tool
from pydantic import BaseModel, ConfigDict


class HelloSettings(BaseModel):
    """How hello.greet greets."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "hello"

    greeting: str = "Hello"


@tool(name="hello.greet", side_effects="none")
async def greet(name: str, context: ToolContext, excited: bool = False) -> dict:
    """Greet someone by name.

    Args:
        name: Who to greet.
        excited: End with an exclamation mark.
    """
    config = context.settings.plugin(HelloSettings)
    return {"greeting": f"{config.greeting}, {name}{'!' if excited else '.'}"}


@hookimpl
def register_tools():
    return [greet]


@hookimpl
def register_settings():
    return [HelloSettings]
