"""``dagentic plugin new NAME``: write a pip-installable tool package to start from.

The package is ``dagentic-NAME`` (import package ``dagentic_NAME``, plugin ``NAME``, tool
``NAME.hello``): a pyproject.toml with the ``dagentic.plugins`` entry point, one tool, its
test (the tool called directly and through :func:`dagentic.run_plan`), a README and a
.gitignore. The files are the templates below, so the command needs no package data.

It uses the src layout: the package's tests then import the installed package (the one the
entry point names), never by accident the folder they run from, so a package that only
works from its checkout fails its own tests.
"""

from __future__ import annotations

import keyword
import os
import re
import shlex
from pathlib import Path
from string import Template
from typing import Annotated

import typer

__all__ = ["plugin_app", "write_package"]

plugin_app = typer.Typer(
    name="plugin", no_args_is_help=True, help="Start a tool package of your own."
)

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

_PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "dagentic-$name"
version = "0.1.0"
description = "dagentic tools: $name.hello."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["dagentic"]

[project.optional-dependencies]
test = ["pytest>=8"]

# dagentic finds the plugin through this entry point: its name ($name) is the plugin's
# name, its value the module that holds the @hookimpl functions.
[project.entry-points."dagentic.plugins"]
$name = "dagentic_$name"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
""")

_MODULE = Template('''\
"""dagentic-$name: dagentic tools. dagentic finds them through the ``$name`` entry point
in pyproject.toml (group ``dagentic.plugins``), which names this module: its
``register_tools`` hook returns the tools."""

from dagentic import Tool, hookimpl, tool


@tool(name="$name.hello", side_effects="none")
def hello(name: str, excited: bool = False) -> dict[str, str]:
    """Greet someone by name.

    Args:
        name: Who to greet.
        excited: End with an exclamation mark instead of a full stop.

    Returns:
        dict: {greeting}, the greeting.
    """
    return {"greeting": f"Hello, {name}{'!' if excited else '.'}"}


@hookimpl
def register_tools() -> list[Tool]:
    return [hello]
''')

_TEST = Template('''\
"""dagentic-$name's tests: its tool called directly, and in a plan that dagentic runs."""

import asyncio
from importlib.metadata import entry_points

import dagentic_$name
from dagentic import load_tools, run_plan
from dagentic_$name import hello

PLAN = {
    "version": 1,
    "name": "$name-hello",
    "steps": [{"id": "greet", "tool": "$name.hello", "args": {"name": "Ada", "excited": True}}],
    "outputs": {"greeting": "$${{ steps.greet.output.greeting }}"},
}


def test_hello_called_directly() -> None:
    assert hello.fn("Ada") == {"greeting": "Hello, Ada."}


def test_hello_runs_in_a_plan() -> None:
    tools = load_tools([dagentic_$name], use_entry_points=False)
    result = asyncio.run(run_plan(PLAN, tools=tools))
    assert result.status == "succeeded", result.error
    assert result.outputs == {"greeting": "Hello, Ada!"}


def test_the_installed_entry_point_names_this_package() -> None:
    (found,) = entry_points(group="dagentic.plugins", name="$name")
    assert found.value == "dagentic_$name"
''')

_README = Template("""\
# dagentic-$name

dagentic tools: `$name.hello` greets someone by name. The tools live in
`src/dagentic_$name/__init__.py`; dagentic finds them through the `$name` entry point in
`pyproject.toml` (group `dagentic.plugins`).

## Install

```console
$$ pip install -e './dagentic-$name[test]'   # editable, with pytest
$$ dagentic tools                            # lists $name.hello, from plugin $name
```

## Test

```console
$$ pytest dagentic-$name
```

The tests call the tool directly (`hello.fn(...)`) and run it in a plan with
`dagentic.run_plan`.

## Use it in a plan

Save this as hello.yaml:

```yaml title="hello.yaml"
version: 1
name: $name-hello
steps:
  - id: greet
    tool: $name.hello
    args: {name: Ada, excited: true}
outputs:
  greeting: $${{ steps.greet.output.greeting }}
```

```console
$$ dagentic run hello.yaml --json   # "greeting": "Hello, Ada!"
```

## Add tools

Write a function with type hints and a Google-style docstring (`Args:`, `Returns:`),
decorate it with `@tool(name="$name.verb", side_effects=...)` (`none`, `read` or `write`:
the most a call may do) and return it from `register_tools`. A parameter annotated with
`dagentic.ToolContext` receives the run id, the step and the settings; settings of your own
come from a `register_settings` hook (section `[$name]` of dagentic.toml). See dagentic's
"Write a tool package" guide.
""")

_GITIGNORE = """\
__pycache__/
*.py[cod]
*.egg-info/
build/
dist/
.venv/
.pytest_cache/
.dagentic/
"""


def _files(name: str) -> dict[str, str]:
    """The package's files for plugin ``name``: path in the package folder -> text."""
    return {
        "pyproject.toml": _PYPROJECT.substitute(name=name),
        "README.md": _README.substitute(name=name),
        ".gitignore": _GITIGNORE,
        f"src/dagentic_{name}/__init__.py": _MODULE.substitute(name=name),
        f"tests/test_{name}.py": _TEST.substitute(name=name),
    }


def _core_names() -> set[str]:
    """Names dagentic itself uses for plugins and settings sections: a plugin with one of
    them would clash with dagentic's own."""
    from importlib.metadata import distribution

    from .settings import Settings

    builtin = {
        entry.name
        for entry in distribution("dagentic").entry_points
        if entry.group == "dagentic.plugins"
    }
    return {"dagentic", *builtin, *Settings.model_fields}


class TemplateError(Exception):
    """Why the package was not written (the message says so, and what to do)."""


def write_package(name: str, parent: Path, *, force: bool = False) -> tuple[Path, list[str]]:
    """Write the tool package for plugin ``name`` to ``parent/dagentic-NAME``; return the
    folder and the files written (paths inside it). Raises :class:`TemplateError` for an
    invalid or taken name, or a folder that exists (unless ``force``: then the template's
    files are written over the folder's, and its other files are left)."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise TemplateError(
            f"{name!r} is not a valid plugin name: use a lowercase Python identifier "
            "(a letter, then letters, digits or underscores), such as weather"
        )
    if name in _core_names():
        raise TemplateError(
            f"{name!r} is a name dagentic itself uses (a built-in plugin or a settings "
            "section); choose another name"
        )
    folder = parent / f"dagentic-{name}"
    if folder.exists() and not folder.is_dir():
        raise TemplateError(f"{folder} exists and is not a folder")
    if folder.exists() and not force:
        raise TemplateError(f"{folder} already exists; pass --force to write over it")
    files = _files(name)
    for relative, text in files.items():
        path = folder / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return folder, list(files)


def _shown(folder: Path, dot: str = "") -> str:
    """``folder`` as a command line argument: relative to here (after ``dot``) when it is
    inside it, else absolute."""
    relative = os.path.relpath(folder.absolute())
    if relative.startswith(".."):
        return shlex.quote(str(folder.absolute()))
    return shlex.quote(dot + relative)


@plugin_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The plugin's name: a lowercase identifier.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the dagentic-NAME folder.")
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Write over an existing dagentic-NAME folder.")
    ] = False,
) -> None:
    """Write dagentic-NAME, a pip-installable tool package: pyproject.toml with the
    dagentic.plugins entry point, one tool (NAME.hello), its test, a README."""
    from rich.console import Console

    from .display import safe_markup, safe_text

    try:
        folder, written = write_package(name, directory, force=force)
    except TemplateError as exc:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/red] {safe_markup(str(exc))}", highlight=False
        )
        raise typer.Exit(2) from exc
    print(safe_text(f"wrote {folder}:", one_line=True))
    for relative in written:
        print(safe_text(f"  {relative}", one_line=True))
    print("next:")
    print(safe_text(f"  pip install -e {_shown(folder, './')}", one_line=True))
    print(safe_text(f"  pytest {_shown(folder)}", one_line=True))
    print("  dagentic tools")
