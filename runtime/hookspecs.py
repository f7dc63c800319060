"""The hooks a dagentic plugin can implement.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are the
hooks below, listed in its package's ``pyproject.toml``::

    [project.entry-points."dagentic.plugins"]
    weather = "dagentic_weather"

Hooks return declarations, never do I/O, and are called with keyword arguments, so a hook
may grow arguments without breaking plugins that do not take them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

# Types only: a plugin's `from dagentic import hookimpl` loads pluggy, not pydantic.
if TYPE_CHECKING:
    import typer
    from pydantic import BaseModel

    from .isolation import SandboxBackend
    from .tools import Tool

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "register_commands",
    "register_sandbox_backends",
    "register_settings",
    "register_tools",
]

PROJECT = "dagentic"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_tools() -> Iterable[Tool]:  # type: ignore[empty-body]
    """Return the tools this plugin provides (objects made with ``@tool``).

    Every plugin's tools are collected; two plugins registering the same tool name is an
    error that names both plugins.
    """


@hookspec
def register_sandbox_backends() -> Iterable[SandboxBackend]:  # type: ignore[empty-body]
    """Return the sandbox backends this plugin provides (:class:`~dagentic.isolation.
    SandboxBackend` declarations). ``auto`` picks the strongest available one."""


@hookspec
def register_commands() -> Iterable[typer.Typer]:  # type: ignore[empty-body]
    """Return command groups to add to the ``dagentic`` command line: ``typer.Typer``
    objects made with a ``name`` (``typer.Typer(name="index")`` becomes
    ``dagentic index ...``). A name that is taken already is an error naming the plugin.

    ``dagentic --help`` lists the groups without importing the plugin when it can read
    them from the module's source: the hook is just ``return [group, ...]``, each group
    made at module level by ``typer.Typer(name=..., help=...)`` with literal arguments
    and then only given commands. Otherwise every plugin is imported to list them.
    """


@hookspec
def register_settings() -> Iterable[type[BaseModel]]:  # type: ignore[empty-body]
    """Return this plugin's settings models: pydantic model classes, each naming the
    section it reads with a class variable::

        class WeatherSettings(BaseModel):
            model_config = ConfigDict(extra="forbid")  # a typo'd key is an error
            section: ClassVar[str] = "weather"

            api_key: SecretStr | None = None  # shown masked by `dagentic config show`
            units: Literal["metric", "imperial"] = "metric"

    The section is read like the core's settings: ``[weather]`` in ``dagentic.toml``,
    ``[tool.dagentic.weather]`` in ``pyproject.toml``, ``DAGENTIC_WEATHER__UNITS=imperial``
    in the environment (which wins over files). The plugin's code reads it, validated once,
    with ``settings.plugin(WeatherSettings)`` (:meth:`dagentic.Settings.plugin`), e.g.
    from a tool's ``context.settings``. A section that no installed plugin registers is an
    error naming the closest one; so is a section name taken by the core or another plugin.
    """
