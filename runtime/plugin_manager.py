"""Finding plugins: built-ins and third-party packages alike come through the entry-point
group ``dagentic.plugins``."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import hookspecs
from .errors import PluginError, SettingsError
from .isolation import Sandbox, SandboxBackend, select_sandbox_backend
from .journal import get_logger
from .tools import Tool, ToolRegistry, suggest

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .settings import Settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "close_sandboxes",
    "load_commands",
    "load_plan_folders",
    "load_sandbox_backends",
    "load_settings",
    "load_settings_models",
    "load_tools",
    "make_plugin_manager",
    "open_sandbox",
]

_SANDBOXES: dict[tuple[str, str], Sandbox] = {}  # process-wide: warm pools outlive runs

ENTRY_POINT_GROUP = "dagentic.plugins"


def make_plugin_manager(
    plugins: Iterable[Any] = (), *, use_entry_points: bool = True
) -> pluggy.PluginManager:
    """A fresh plugin manager with ``plugins`` and, unless told not to, every installed
    plugin from the ``dagentic.plugins`` entry-point group."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            dist = ep.dist.name if ep.dist else "an unknown distribution"
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) from {dist} failed to load: "
                    f"{type(exc).__name__}: {exc}. Fix the plugin or uninstall {dist}.",
                    plugin=ep.name,
                ) from exc
            if not pm.is_registered(module):  # also given explicitly: load it once
                pm.register(module, name=ep.name)
    _check_hook_names(pm)
    return pm


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """pluggy's check_pending(), with a message that names the plugin, the hook and the fix."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = [name for name in dir(hookspecs) if name.startswith("register_")]
        plugin = pm.get_name(exc.plugin) or repr(exc.plugin)
        hook = next(
            (
                name
                for name, caller in vars(pm.hook).items()
                if not caller.has_spec()
                and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
            ),
            "?",
        )
        raise PluginError(
            f"plugin {plugin!r} implements unknown hook {hook!r}{suggest(hook, known)}; "
            f"dagentic's hooks are: {', '.join(known)}",
            plugin=plugin,
            hook=hook,
        ) from exc


def load_tools(
    plugins: Iterable[Any] = (),
    *,
    tools: Iterable[Tool] = (),
    use_entry_points: bool = True,
    plugin_manager: pluggy.PluginManager | None = None,
) -> ToolRegistry:
    """Collect every tool the plugins register, plus ``tools`` given directly."""
    pm = plugin_manager or make_plugin_manager(plugins, use_entry_points=use_entry_points)
    registry = ToolRegistry()
    for impl in pm.hook.register_tools.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        try:
            declared: Any = impl.function()
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin_name!r}: register_tools() raised {type(exc).__name__}: {exc}",
                plugin=plugin_name,
            ) from exc
        for item in declared or ():
            if not isinstance(item, Tool):
                raise PluginError(
                    f"plugin {plugin_name!r}: register_tools() returned {item!r}, which is "
                    "not a Tool; decorate the function with @tool and return it",
                    plugin=plugin_name,
                )
            registry.add(item.with_plugin(plugin_name))
    for item in tools:
        registry.add(item)
    return registry


def load_commands(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Every command group the installed plugins declare (``typer.Typer``), by name."""
    import typer

    pm = plugin_manager or make_plugin_manager()
    groups: dict[str, Any] = {}
    for impl in pm.hook.register_commands.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        declared: Any = impl.function()
        for group in declared or ():
            name = group.info.name if isinstance(group, typer.Typer) else None
            if not name:
                raise PluginError(
                    f"plugin {plugin_name!r}: register_commands() returned {group!r}; return "
                    "typer.Typer objects made with a name, e.g. typer.Typer(name='index')",
                    plugin=plugin_name,
                )
            if name in groups:
                raise PluginError(
                    f"plugin {plugin_name!r}: command {name!r} is registered twice",
                    plugin=plugin_name,
                )
            groups[name] = group
    return groups


def load_settings_models(
    plugin_manager: pluggy.PluginManager | None = None,
) -> dict[str, tuple[str, type[BaseModel]]]:
    """Every settings model the plugins register (``register_settings``), by section, with
    the name of the plugin that registered it."""
    from .settings import section_of

    pm = plugin_manager or make_plugin_manager()
    found: dict[str, tuple[str, type[BaseModel]]] = {}
    for impl in pm.hook.register_settings.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        declared = cast("Iterable[Any]", impl.function() or ())
        for model in declared:
            try:
                section = section_of(model)
            except PluginError as exc:
                raise PluginError(
                    f"plugin {plugin_name!r}: register_settings(): {exc.message}",
                    plugin=plugin_name,
                ) from exc
            if section in found:
                raise PluginError(
                    f"settings section [{section}] is registered twice: by plugin "
                    f"{found[section][0]!r} and by plugin {plugin_name!r}; uninstall one of "
                    "them or rename the section",
                    plugin=plugin_name,
                )
            found[section] = (plugin_name, model)
    return found


def load_settings(
    settings: Settings | None = None, *, plugin_manager: pluggy.PluginManager | None = None
) -> Settings:
    """``settings`` (default: read now, from the working directory and environment) with
    every section checked against the installed plugins (:meth:`Settings.check_sections`):
    an unknown section or setting, or an invalid value, is a
    :class:`~dagentic.SettingsError` here rather than when a tool first reads it."""
    from .settings import Settings

    settings = settings if settings is not None else Settings()
    models = load_settings_models(plugin_manager)
    settings.check_sections(model for _, model in models.values())
    return settings


@cache
def _installed_plugins() -> pluggy.PluginManager:
    """The installed plugins, found once per process: plan folders are asked for per
    request by ``dagentic serve`` and per sub-plan lookup, and finding them (entry points)
    costs ~15 ms."""
    return make_plugin_manager()


def load_plan_folders(
    settings: Settings, plugin_manager: pluggy.PluginManager | None = None
) -> list[Path]:
    """The folders of plan files the installed plugins ship (``register_plan_folders``),
    in plugin order, for ``settings``; none when ``library.plugin_plans`` is false."""
    if not settings.library.plugin_plans:
        return []
    pm = plugin_manager or _installed_plugins()
    found: list[Path] = []
    for impl in pm.hook.register_plan_folders.get_hookimpls():  # registration order
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        args = {"settings": settings} if "settings" in impl.argnames else {}
        try:
            declared: Any = impl.function(**args)
        except SettingsError:  # the plugin's section is invalid: said as such
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin_name!r}: register_plan_folders() raised "
                f"{type(exc).__name__}: {exc}",
                plugin=plugin_name,
            ) from exc
        for folder in declared or ():
            if not isinstance(folder, str | PathLike):
                raise PluginError(
                    f"plugin {plugin_name!r}: register_plan_folders() returned {folder!r}, "
                    "which is not a folder's path; return pathlib.Path objects",
                    plugin=plugin_name,
                )
            if Path(folder) not in found:
                found.append(Path(folder))
    return found


def load_sandbox_backends(
    plugin_manager: pluggy.PluginManager | None = None,
) -> dict[str, SandboxBackend]:
    """Every sandbox backend the installed plugins declare, by name."""
    pm = plugin_manager or make_plugin_manager()
    backends: dict[str, SandboxBackend] = {}
    for declared in pm.hook.register_sandbox_backends():
        for backend in declared or ():
            if not isinstance(backend, SandboxBackend):
                raise PluginError(
                    f"register_sandbox_backends() returned {backend!r}, which "
                    "is not a SandboxBackend"
                )
            if backend.name in backends:
                raise PluginError(f"sandbox backend {backend.name!r} is registered twice")
            backends[backend.name] = backend
    return backends


async def open_sandbox(
    settings: Any, backend: str | None = None, *, plugin_manager: pluggy.PluginManager | None = None
) -> Sandbox:
    """The sandbox for ``backend`` (default: ``settings.sandbox.backend``), shared by every
    caller in this process so warm pools are reused. ``auto`` picks the strongest backend
    available and says which in each result; a named backend that is unavailable raises
    :class:`~dagentic.isolation.SandboxUnavailableError` rather than falling back."""
    wanted = backend or settings.sandbox.backend
    key = (wanted, settings.sandbox.model_dump_json())
    sandbox = _SANDBOXES.get(key)
    if sandbox is None:
        backends = load_sandbox_backends(plugin_manager)
        chosen = await select_sandbox_backend(backends, wanted, settings)
        if wanted == "auto":
            get_logger().info("sandbox_selected", backend=chosen.name, isolation=chosen.isolation)
        sandbox = _SANDBOXES.setdefault(key, chosen.create(settings))
    return sandbox


async def close_sandboxes() -> None:
    """Release every sandbox opened by :func:`open_sandbox` (warm containers, say)."""
    while _SANDBOXES:
        _, sandbox = _SANDBOXES.popitem()
        await sandbox.aclose()
