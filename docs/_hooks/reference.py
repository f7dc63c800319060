"""MkDocs hook: the reference pages are generated from the code, never written by hand.

A page asks for generated content with a marker on a line of its own,
``<!-- generate: NAME -->``; :data:`GENERATORS` lists the names. An unknown name fails the
build. The hook also lays out ``build/docs-api/dagentic`` for mkdocstrings: setuptools maps
the folders runtime/, plugins/ and sandbox/ to the one import package ``dagentic``
(``[tool.setuptools.package-dir]``), which griffe cannot follow, so the hook builds that
package tree out of symlinks.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel, ByteSize, SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
API_SOURCE = ROOT / "build" / "docs-api"
MARKER = re.compile(r"^<!-- generate: ([a-z-]+) -->$", re.MULTILINE)
HELP_WIDTH = 80  # what a code block shows without scrolling

# --------------------------------------------------------------------------- mkdocs events


@event_priority(100)  # before mkdocstrings, which drops search paths that do not exist
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    lay_out_api_source()
    return config


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        generator = GENERATORS.get(name)
        if generator is None:
            raise PluginError(
                f"{page.file.src_uri}: unknown marker '<!-- generate: {name} -->'; "
                f"known: {', '.join(sorted(GENERATORS))}"
            )
        return generator()

    return MARKER.sub(replace, markdown)


# --------------------------------------------------------------------------- API source


def lay_out_api_source() -> None:
    """``build/docs-api/dagentic``: the installed package's layout, as symlinks into the
    checkout, from pyproject.toml's ``package-dir`` table."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):  # parents before children
        target = API_SOURCE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for child in sorted((ROOT / folder).iterdir()):
            if child.name == "__pycache__" or (child.is_dir() and child.name in mapping):
                continue
            link = target / child.name
            if link.is_symlink() and link.resolve() == child.resolve():
                continue
            if link.is_dir() and not link.is_symlink():  # a mapped subpackage's own folder
                continue
            # Atomic, so two builds at once (a test and `mkdocs serve`) cannot collide.
            temporary = target / f".{child.name}.{os.getpid()}"
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(child)
            temporary.replace(link)
        for link in target.iterdir():  # files removed from the checkout since last time
            if link.is_symlink() and not link.exists():
                link.unlink(missing_ok=True)


# --------------------------------------------------------------------------- CLI


_HELP_SCRIPT = """
import json, sys
import typer
from typer.testing import CliRunner
from dagentic.cli import add_plugin_commands, app

add_plugin_commands()
runner = CliRunner()
pages = []

def walk(command, path):
    done = runner.invoke(app, [*path, "--help"], prog_name="dagentic", terminal_width=WIDTH)
    if done.exit_code != 0:
        sys.exit(f"dagentic {' '.join(path)} --help exited {done.exit_code}: {done.output}")
    pages.append({"path": path, "help": done.output})
    for name, sub in getattr(command, "commands", {}).items():  # in the order of --help
        if not getattr(sub, "hidden", False):
            walk(sub, [*path, name])

walk(typer.main.get_command(app), [])
json.dump(pages, sys.stdout)
"""


def cli_help_pages() -> list[dict[str, Any]]:
    """``dagentic ... --help`` of every command, plugin command groups included, as plain
    text: ``[{"path": ["sandbox", "run"], "help": "Usage: ..."}]``. Rendered in a fresh
    interpreter, where typer's plain (non-rich) help can still be chosen."""
    env = {**os.environ, "TYPER_USE_RICH": "0", "NO_COLOR": "1", "COLUMNS": str(HELP_WIDTH)}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-c", _HELP_SCRIPT.replace("WIDTH", str(HELP_WIDTH))],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise PluginError(f"rendering the CLI help failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def generate_cli() -> str:
    parts = []
    for page in cli_help_pages():
        name = " ".join(["dagentic", *page["path"]])
        level = "#" * min(2 + max(len(page["path"]) - 1, 0), 4)
        parts.append(f"{level} `{name}`\n\n```text\n{page['help'].rstrip()}\n```\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- settings


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(named) + (" \\| null" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        return f"dict[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "dict"
    if isinstance(annotation, type):
        if issubclass(annotation, ByteSize):
            return "size"
        if issubclass(annotation, SecretStr):
            return "secret"
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, BaseModel):
            return annotation.__name__
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation).replace("typing.", "")


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, ByteSize):
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value >= size and value % size == 0:
                return f"`{value // size} {unit}`"
        return f"`{int(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, dict | list):  # of paths too: a list of folders
        return f"`{json.dumps(value, default=lambda v: Path(v).as_posix())}`"
    return f"`{value}`"


@functools.cache
def _roles() -> types.ModuleType:
    """griffe_roles.py beside this file (hooks are loaded by path, not as a package)."""
    spec = importlib.util.spec_from_file_location(
        "griffe_roles", Path(__file__).with_name("griffe_roles.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(text: str | None) -> str:
    """One table cell of Markdown from docstring text (reST roles and literals made plain)."""
    text = _roles().ROLE.sub(r"`\1`", " ".join((text or "").split())).replace("``", "`")
    return text.replace("|", "\\|")


def _nested_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _dict_of_models(info: FieldInfo) -> type[BaseModel] | None:
    if typing.get_origin(info.annotation) is dict:
        value = typing.get_args(info.annotation)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
    return None


def settings_sections(
    model: type[BaseModel], instance: BaseModel | None, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], type[BaseModel], list[tuple[str, FieldInfo, Any]]]]:
    """Each table of the settings file, depth first: its key path, its model, and its
    plain settings with their defaults."""
    plain = []
    nested = []
    for name, info in model.model_fields.items():
        if instance is not None:
            default = getattr(instance, name)
        else:
            default = info.get_default(call_default_factory=True)
        sub = _nested_model(info)
        if sub is not None:
            nested.append((name, sub, default))
            continue
        plain.append((name, info, default))
        item = _dict_of_models(info)
        if item is not None:
            nested.append((f"{name}.NAME", item, None))
    yield path, model, plain
    for name, sub, default in nested:
        yield from settings_sections(sub, default, (*path, *name.split(".")))


def settings_models() -> Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    """The core's settings model, then each section a built-in plugin owns (through its
    ``register_settings`` hook), by key path."""
    from dagentic import Settings, make_plugin_manager

    yield (), Settings
    hook = getattr(make_plugin_manager().hook, "register_settings", None)
    declared: list[Any] = hook() if hook is not None else []
    models = [m for d in declared for m in ([d] if isinstance(d, type) else d or ())]
    for model in sorted(models, key=lambda m: str(getattr(m, "section", m.__name__))):
        if model.__module__.startswith("dagentic."):  # not a third-party plugin's
            yield (str(model.section),), model


def generate_settings() -> str:
    sections = (
        section
        for path, model in settings_models()
        for section in settings_sections(model, None, path)
    )
    parts = []
    for path, model, fields in sections:
        if not fields:
            continue
        title = f"[{'.'.join(path)}]" if path else "Top level"
        doc = _cell((model.__doc__ or "").strip().split("\n\n")[0]) if path else ""
        rows = ["| setting | type | default | what it does |", "|---|---|---|---|"]
        for name, info, default in fields:
            env = "DAGENTIC_" + "__".join(p.upper() for p in (*path, name))
            env_line = "" if "NAME" in path else f"<br><small>`{env}`</small>"
            rows.append(
                f"| `{name}` | {_type_name(info.annotation)} | {_show(default)} "
                f"| {_cell(info.description)}{env_line} |"
            )
        parts.append(f"### {title}\n\n" + (f"{doc}\n\n" if doc else "") + "\n".join(rows) + "\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- plan fields


def generate_plan_fields() -> str:
    from dagentic import Check, InputSpec, Plan, Retry, Step

    parts = []
    for model, key in (
        (Plan, "plan"),
        (InputSpec, "inputs.NAME"),
        (Step, "steps[]"),
        (Retry, "steps[].retry"),
        (Check, "steps[].check"),
    ):
        doc = _cell((model.__doc__ or "").strip().split("\n\n")[0])
        rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            shown = info.alias or name
            if info.is_required():
                default = "required"
            else:
                default = _show(info.get_default(call_default_factory=True))
            rows.append(
                f"| `{shown}` | {_type_name(info.annotation)} | {default} "
                f"| {_cell(info.description)} |"
            )
        parts.append(f"### `{key}`: {model.__name__}\n\n{doc}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- built-in tools


def _schema_type(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " \\| ".join(_schema_type(p) for p in prop["anyOf"])
    if "$ref" in prop:
        return "JSON"
    return prop.get("type", "JSON")


def generate_builtin_tools() -> str:
    from dagentic import load_tools

    parts = []
    for item in sorted(load_tools(), key=lambda t: t.name):
        if not item.fn.__module__.startswith("dagentic."):
            continue  # a third-party plugin installed next to dagentic
        schema = item.args_schema()
        required = set(schema.get("required", []))
        effects = f"side effects `{item.side_effects}`"
        facts = [
            f"plugin `{item.plugin}`",
            f"{effects} at most, judged per call" if item.effects else effects,
            "trusted output" if item.trusted else "**untrusted** output",
        ]
        if item.egress:
            sent = ", ".join(f"`{arg}` ({how})" for arg, how in item.egress.items())
            facts.append(f"egress: {sent}")
        if not item.idempotent:
            facts.append("not idempotent")
        if item.uses_idempotency_key:
            facts.append("writes once per idempotency key")
        if item.planning_context:
            facts.append("planning context")
        rows = ["| argument | type | default | meaning |", "|---|---|---|---|"]
        for name, prop in schema.get("properties", {}).items():
            default = "required" if name in required else _show(prop.get("default"))
            rows.append(
                f"| `{name}` | {_schema_type(prop)} | {default} | {_cell(prop.get('description'))} |"
            )
        returns = f"\n\n**Returns** {_cell(item.returns)}" if item.returns else ""
        parts.append(
            f"### `{item.name}`\n\n{_cell(item.description)}\n\n{' · '.join(facts)}\n\n"
            + "\n".join(rows)
            + returns
            + "\n"
        )
    return "\n".join(parts)


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": generate_cli,
    "settings": generate_settings,
    "plan-fields": generate_plan_fields,
    "builtin-tools": generate_builtin_tools,
}
