"""A third-party dagentic plugin: one tool, registered through an entry point."""

from dagentic import hookimpl, tool


@tool(name="hello.greet", side_effects="none")
async def greet(name: str, excited: bool = False) -> dict:
    """Greet someone by name.

    Args:
        name: Who to greet.
        excited: End with an exclamation mark.
    """
    return {"greeting": f"Hello, {name}{'!' if excited else '.'}"}


@hookimpl
def register_tools():
    return [greet]
