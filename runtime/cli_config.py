"""``dagentic config show``: the settings in effect, the core's and every installed plugin's,
each value with where it came from (``default``, a file, an environment variable's name).
Secrets (``SecretStr`` values) are masked; what files and variables hold is shown as data
(:mod:`.display`): never taken as Rich markup, never performed by the terminal."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .settings import Settings

__all__ = ["config_app", "settings_entries"]

config_app = typer.Typer(
    name="config", no_args_is_help=True, help="Show the settings dagentic runs with."
)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_SHOWN = 300  # characters of one value printed, at most (--json prints all)


@config_app.command("show")
def show(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {key, value, source, plugin}.")
    ] = False,
) -> None:
    """Print every setting in effect and where its value came from: default, a file
    (dagentic.toml, pyproject.toml) or an environment variable. Secrets are masked."""
    from rich.console import Console

    from .display import safe_json, safe_markup
    from .errors import DagenticError
    from .plugin_manager import load_settings, load_settings_models, make_plugin_manager

    try:
        pm = make_plugin_manager()
        models = load_settings_models(pm)
        entries = settings_entries(load_settings(plugin_manager=pm), models)
    except DagenticError as exc:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/red] {safe_markup(exc.message)}", highlight=False
        )
        raise typer.Exit(2) from exc
    if as_json:  # printable ASCII: what files and variables hold is not performed
        print(safe_json(entries))
        return
    console = Console(soft_wrap=True)

    def say(text: str, comment: str | None = None) -> None:
        line = safe_markup(text, one_line=True, limit=_SHOWN)
        if comment is not None:
            line += f"  [dim]# {safe_markup(comment, one_line=True, limit=_SHOWN)}[/dim]"
        console.print(line, highlight=False)

    table: tuple[str, ...] = ()
    plugin = None
    for entry in entries:
        path = tuple(entry["path"])
        if entry["plugin"] != plugin:
            plugin, table = entry["plugin"], path[:1]
            console.print()
            say(_key(table), f"plugin {plugin}")
        if path[:-1] != table:
            table = path[:-1]
            console.print()
            say(_key(table))
        value = json.dumps(entry["value"], ensure_ascii=False)
        say(f"{_key(path[-1:], bracket=False)} = {value}", entry["source"])


def settings_entries(
    settings: Settings, models: dict[str, tuple[str, type[BaseModel]]]
) -> list[dict[str, Any]]:
    """One entry per setting, the core's first, then each plugin's section (``models`` as
    :func:`~dagentic.plugin_manager.load_settings_models` returns them):
    ``{key, path, value, source, plugin}``, values as JSON with secrets masked."""
    entries = []
    sections: list[tuple[tuple[str, ...], BaseModel, str | None]] = [((), settings, None)]
    for section, (name, model) in sorted(models.items()):
        sections.append(((section,), settings.plugin(model), name))
    for prefix, values, plugin in sections:
        for path, value in _leaves(values.model_dump(mode="json"), prefix):
            if path == prefix and plugin is not None:  # a model without settings
                continue
            entries.append(
                {
                    "key": ".".join(_key((p,), bracket=False) for p in path),
                    "path": list(path),
                    "value": value,
                    "source": settings.origin(*path),
                    "plugin": plugin,
                }
            )
    return entries


def _leaves(data: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every value in ``data``; a table's own values before its subtables,
    so each table is printed under one header."""
    if not isinstance(data, dict) or not data:
        return [(path, data)]
    plain = [(k, v) for k, v in data.items() if not (isinstance(v, dict) and v)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, dict) and v]
    return [leaf for k, v in plain + tables for leaf in _leaves(v, (*path, str(k)))]


def _key(path: tuple[str, ...], *, bracket: bool = True) -> str:
    """``path`` as TOML spells it: ``[model.prices."gpt-4o"]``, or the bare key."""
    spelled = ".".join(p if _BARE_KEY.match(p) else json.dumps(p, ensure_ascii=False) for p in path)
    return f"[{spelled}]" if bracket else spelled
