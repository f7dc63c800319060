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
    from pathlib import Path

    import typer
    from pydantic import BaseModel

    from .isolation import SandboxBackend
    from .settings import Settings
    from .tools import Tool

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "register_commands",
    "register_plan_folders",
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


@hookspec
def register_plan_folders(settings: Settings) -> Iterable[Path]:  # type: ignore[empty-body]
    """Return folders of plan files this plugin ships: plans over the data it bundles, or
    plans made of its tools. They join the plan library (``dagentic plans list``, routing
    in ``dagentic ask``) and the folders ``plan: NAME`` steps name plans from, after the
    ``library.folders`` setting (a name found twice is the first folder's), unless
    ``library.plugin_plans`` is false. Ship them as package data::

        [tool.setuptools.package-data]
        dagentic_weather = ["plans/*.yaml"]

        @hookimpl
        def register_plan_folders(settings):
            if settings.plugin(WeatherSettings).api_key is None:
                return []  # the plans need the API: none to offer
            return [Path(__file__).parent / "plans"]

    ``settings`` are the settings in use, so a plugin offers no plans for data that is
    not in use (the sql plugin offers its sample-data plans only while the sample database
    is the one queried). Called when a library is made or a step names a plan, never per
    step.
    """
