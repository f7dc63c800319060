"""The plugins' command groups as ``dagentic --help`` lists them: read from the plugins'
source (dagentic._plugin_commands), no plugin imported, the same as loading them; a source
that does not say them plainly is loaded instead."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points
from typing import Any

import pytest
import typer
from dagentic import cli
from dagentic._plugin_commands import (
    ENTRY_POINT_GROUP,
    Unreadable,
    declared_commands,
    entry_points_of,
    read_declared,
)
from dagentic.plugin_manager import ENTRY_POINT_GROUP as LOADED_GROUP
from dagentic.plugin_manager import load_commands

PLAIN = textwrap.dedent(
    """
    import typer
    from dagentic import hookimpl

    index_app = typer.Typer(
        name="index",
        no_args_is_help=True,
        help="Build and query the index.",
    )

    @index_app.command("build")
    def build() -> None:
        "Build it."

    @hookimpl
    def register_commands() -> list[typer.Typer]:
        "The index group."
        return [index_app]
    """
)


def read(source: str) -> list[dict[str, Any]]:
    return read_declared(source)


def test_a_plain_declaration_is_read() -> None:
    assert read(PLAIN) == [
        {"name": "index", "no_args_is_help": True, "help": "Build and query the index."}
    ]


def test_a_module_without_the_hook_declares_nothing() -> None:
    assert read("import typer\napp = typer.Typer(name='x')\n") == []
    assert read("'''This plugin has no register_commands hook.'''\n") == []


@pytest.mark.parametrize(
    "source",
    [
        "from typer import Typer\nfrom dagentic import hookimpl\n"
        "a = Typer(name='a', help='A.')\n"
        "@hookimpl\ndef register_commands():\n    return (a,)\n",
        "import typer as t\nimport dagentic\n"
        "a = t.Typer(name='a', help='A.')\n"
        "@dagentic.hookimpl\ndef register_commands():\n    return [a]\n",
    ],
    ids=["from-import", "module-alias"],
)
def test_other_spellings_of_the_plain_declaration_are_read(source: str) -> None:
    assert read(source) == [{"name": "a", "help": "A."}]


@pytest.mark.parametrize(
    "change",
    [
        # the group's help is computed
        ('help="Build and query the index."', 'help="Build " + "it."'),
        # or given by a callback
        ('@index_app.command("build")', "@index_app.callback()"),
        # or changed after it is made
        ("@hookimpl\n", 'index_app.info.help = "other"\n\n@hookimpl\n'),
        # or the group is made twice
        ("@hookimpl\n", 'index_app = typer.Typer(name="other")\n\n@hookimpl\n'),
        # or passed on to something that might change it
        ("@hookimpl\n", "print(index_app)\n\n@hookimpl\n"),
        # an option of typer.Typer that the stand-in would not have
        ("no_args_is_help=True", "cls=None"),
        # the hook computes its answer
        ("    return [index_app]", "    return [index_app] if True else []"),
        ("    return [index_app]", "    return groups()"),
        # the hook takes arguments, or is not marked, or is marked with options
        ("def register_commands()", "def register_commands(config=None)"),
        ("@hookimpl\n", ""),
        ("@hookimpl\n", "@hookimpl(tryfirst=True)\n"),
        # something else is named like the hook, or the module imports *
        ("import typer\n", "import typer\nfrom elsewhere import register_commands\n"),
        ("import typer\n", "import typer\nfrom elsewhere import *\n"),
        # the group comes from another module
        ("index_app = typer.Typer(", "from .cli import index_app\nother = typer.Typer("),
    ],
)
def test_a_declaration_that_is_not_plain_cannot_be_read(change: tuple[str, str]) -> None:
    old, new = change
    assert old in PLAIN
    with pytest.raises(Unreadable):
        read_declared(PLAIN.replace(old, new, 1))


def test_the_installed_plugins_declare_what_loading_them_gives() -> None:
    assert ENTRY_POINT_GROUP == LOADED_GROUP
    declared = declared_commands()
    assert declared is not None
    loaded = load_commands()
    assert sorted(declared) == sorted(loaded) and "index" in declared
    for name, options in declared.items():
        info = loaded[name].info
        assert {key: getattr(info, key) for key in options} == options


def test_entry_points_are_those_of_importlib_metadata() -> None:
    groups = {ENTRY_POINT_GROUP, "console_scripts", "pytest11"}
    for group in groups:
        found = [(ep.name, ep.value) for ep in entry_points(group=group)]
        assert entry_points_of(group) == found, group


def test_a_stand_in_gives_way_to_the_plugins_own_group(monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer(name="dagentic")
    app.command("run")(lambda: None)
    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli, "_PLUGIN_GROUPS", {})
    stand_ins = cli.load_commands()
    assert sorted(stand_ins) == ["index", "mcp"]
    assert all(isinstance(g, cli._StandIn) for g in stand_ins.values())
    cli.add_plugin_commands(stand_ins)
    cli.add_plugin_commands(cli.load_commands())  # listed again: nothing changes
    assert [g.typer_instance for g in app.registered_groups] == list(stand_ins.values())
    cli.add_plugin_commands()
    groups = [g.typer_instance for g in app.registered_groups]
    assert groups == [load_commands()[name] for name in stand_ins]
    cli.add_plugin_commands(cli.load_commands())  # the plugins' own groups stay
    assert [g.typer_instance for g in app.registered_groups] == groups


def test_a_plugin_group_named_like_a_command_is_refused_even_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = typer.Typer(name="dagentic")
    app.command("index")(lambda: None)
    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli, "_PLUGIN_GROUPS", {})
    with pytest.raises(cli.PluginError, match="a plugin registers command 'index'"):
        cli.add_plugin_commands(cli.load_commands())


def test_when_a_plugin_cannot_be_read_every_plugin_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dagentic._plugin_commands as plugin_commands

    installed = entry_points_of(ENTRY_POINT_GROUP)
    odd = ("odd", "dagentic.plugins.web:index_app")  # an object, not a module
    monkeypatch.setattr(plugin_commands, "entry_points_of", lambda group: [*installed, odd])
    assert declared_commands() is None
    groups = cli.load_commands()
    assert groups == load_commands() and "index" in groups
