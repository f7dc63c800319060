"""Plugins: the plugin manager, collecting tools, errors a plugin author sees, entry points,
and a real third-party package installed with pip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import dagentic.plugins.notify
import pluggy
import pytest
from dagentic import (
    ENTRY_POINT_GROUP,
    PluginError,
    Tool,
    hookimpl,
    load_tools,
    make_plugin_manager,
    tool,
)

DATA = Path(__file__).resolve().parents[1] / "data"


@tool(name="weather.forecast", side_effects="none")
async def forecast(city: str) -> str:
    """Forecast the weather.

    Args:
        city: The city name.
    """
    return f"sunny in {city}"


@tool(name="weather.alerts", side_effects="none")
async def alerts(region: str) -> list[str]:
    """List weather alerts.

    Args:
        region: The region.
    """
    return []


def make_plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module named ``name`` whose functions are marked as hook implementations,
    as a third-party package's module would be."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def returning(*items: Any) -> Callable[[], list[Any]]:
    def register_tools() -> list[Any]:
        return list(items)

    return register_tools


# --------------------------------------------------------------------------- the manager


def test_make_plugin_manager_registers_the_given_plugins() -> None:
    weather = make_plugin("acme_weather", register_tools=returning(forecast))
    pm = make_plugin_manager([weather], use_entry_points=False)
    assert isinstance(pm, pluggy.PluginManager)
    assert pm.get_plugin("acme_weather") is weather
    assert pm.project_name == "dagentic"


def test_each_plugin_manager_is_fresh() -> None:
    weather = make_plugin("acme_weather", register_tools=returning(forecast))
    first = make_plugin_manager([weather], use_entry_points=False)
    second = make_plugin_manager(use_entry_points=False)
    assert first is not second
    assert first.is_registered(weather)
    assert not second.is_registered(weather)
    assert second.get_plugins() == set()


# --------------------------------------------------------------------------- collecting tools


def test_load_tools_collects_tools_and_records_the_plugin_name() -> None:
    weather = make_plugin("acme_weather", register_tools=returning(forecast, alerts))
    registry = load_tools([weather], use_entry_points=False)
    assert registry.names() == ["weather.alerts", "weather.forecast"]
    assert {t.plugin for t in registry} == {"acme_weather"}
    assert forecast.plugin is None  # the decorated original is left alone


def test_load_tools_collects_from_every_plugin() -> None:
    sunny = make_plugin("acme_sunny", register_tools=returning(forecast))
    stormy = make_plugin("acme_stormy", register_tools=returning(alerts))
    registry = load_tools([sunny, stormy], use_entry_points=False)
    assert [(t.name, t.plugin) for t in registry] == [
        ("weather.alerts", "acme_stormy"),
        ("weather.forecast", "acme_sunny"),
    ]


def test_load_tools_adds_tools_given_directly() -> None:
    registry = load_tools(tools=[forecast], use_entry_points=False)
    assert registry.get("weather.forecast") is forecast


def test_load_tools_accepts_a_plugin_manager() -> None:
    weather = make_plugin("acme_weather", register_tools=returning(forecast))
    pm = make_plugin_manager([weather], use_entry_points=False)
    assert load_tools(plugin_manager=pm).names() == ["weather.forecast"]


def test_plugin_returning_nothing_adds_no_tools() -> None:
    empty = make_plugin("acme_empty", register_tools=lambda: None)
    assert len(load_tools([empty], use_entry_points=False)) == 0


def test_plugin_returning_a_non_tool_is_an_error() -> None:
    def undecorated(city: str) -> str:
        return city

    bad = make_plugin("acme_bad", register_tools=returning(forecast, undecorated))
    with pytest.raises(PluginError) as caught:
        load_tools([bad], use_entry_points=False)
    assert caught.value.message == (
        f"plugin 'acme_bad': register_tools() returned {undecorated!r}, which is not a "
        "Tool; decorate the function with @tool and return it"
    )
    assert caught.value.fields == {"plugin": "acme_bad"}


def test_plugin_whose_hook_raises_is_an_error_naming_it() -> None:
    def register_tools() -> list[Tool]:
        raise ValueError("config missing")

    broken = make_plugin("acme_broken", register_tools=register_tools)
    with pytest.raises(PluginError) as caught:
        load_tools([broken], use_entry_points=False)
    assert (
        caught.value.message
        == "plugin 'acme_broken': register_tools() raised ValueError: config missing"
    )
    assert isinstance(caught.value.__cause__, ValueError)


def test_two_plugins_registering_one_tool_name_is_an_error_naming_both() -> None:
    sunny = make_plugin("acme_sunny", register_tools=returning(forecast))
    rainy = make_plugin("acme_rainy", register_tools=returning(forecast))
    with pytest.raises(PluginError) as caught:
        load_tools([sunny, rainy], use_entry_points=False)
    assert caught.value.message == (
        "tool 'weather.forecast' is registered twice: by plugin 'acme_sunny' and by plugin "
        "'acme_rainy'; uninstall one of them or rename the tool"
    )


def test_typo_in_a_hook_name_is_reported_naming_the_plugin_and_the_hook() -> None:
    typo = make_plugin("acme_typo", register_tool=returning(forecast))
    with pytest.raises(PluginError) as caught:
        make_plugin_manager([typo], use_entry_points=False)
    message = caught.value.message
    assert isinstance(caught.value.__cause__, pluggy.PluginValidationError)
    assert "'register_tool'" in message
    # Named as the plugin is registered (and shown by `dagentic tools`), with the fix.
    assert message.startswith("plugin 'acme_typo' "), message
    assert "did you mean 'register_tools'?" in message, message
    assert caught.value.fields == {"plugin": "acme_typo", "hook": "register_tool"}


# --------------------------------------------------------------------------- entry points


def test_builtin_notify_plugin_is_listed_in_the_entry_point_group() -> None:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert ENTRY_POINT_GROUP == "dagentic.plugins"
    assert found.get("notify") == "dagentic.plugins.notify"


def test_builtin_notify_log_is_loaded_through_its_entry_point() -> None:
    registry = load_tools()
    log = registry.get("notify.log")
    assert log.plugin == "notify"
    assert log.side_effects == "write"
    assert "notify.log" not in load_tools(use_entry_points=False)


def test_entry_point_plugins_are_registered_under_their_entry_point_name() -> None:
    pm = make_plugin_manager()
    assert pm.get_plugin("notify") is dagentic.plugins.notify


def test_plugin_given_explicitly_and_installed_as_an_entry_point_is_loaded_once() -> None:
    registry = load_tools([dagentic.plugins.notify])
    assert [t.name for t in registry].count("notify.log") == 1


# --------------------------------------------------------------------------- end to end


def _run(command: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def hello_plugin(tmp_path: Path) -> Iterator[Path]:
    """dagentic-hello-plugin pip-installed into this environment for one test; yields the
    working directory for commands. Uninstalled afterwards, even when the test fails."""
    package = tmp_path / "dagentic-hello-plugin"
    shutil.copytree(DATA / "dagentic-hello-plugin", package)  # build files stay in tmp
    workdir = tmp_path / "work"
    workdir.mkdir()
    pip = [sys.executable, "-m", "pip"]
    try:
        installed = _run(
            [*pip, "install", "--no-build-isolation", "--no-deps", "--quiet", str(package)],
            cwd=tmp_path,
            timeout=110,
        )
        assert installed.returncode == 0, installed.stderr
        yield workdir
    finally:
        removed = _run([*pip, "uninstall", "-y", "dagentic-hello-plugin"], cwd=tmp_path)
        assert removed.returncode == 0, removed.stderr


@pytest.mark.slow
def test_third_party_plugin_installed_with_pip_is_found_and_runs(hello_plugin: Path) -> None:
    dagentic = Path(sys.executable).parent / "dagentic"

    listed = _run([str(dagentic), "tools", "--json"], cwd=hello_plugin)
    assert listed.returncode == 0, listed.stderr
    specs = {spec["name"]: spec for spec in json.loads(listed.stdout)}
    greet = specs["hello.greet"]
    assert greet["plugin"] == "hello"
    assert greet["description"] == "Greet someone by name."
    assert greet["args"]["required"] == ["name"]
    assert specs["notify.log"]["plugin"] == "notify"

    ran = _run(
        [str(dagentic), "run", str(DATA / "hello_plugin_plan.yaml"), "--json"], cwd=hello_plugin
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["status"] == "succeeded"
    assert result["outputs"] == {"greeting": "Hello, Ada!"}
    assert result["steps"]["greet"]["output"] == {"greeting": "Hello, Ada!"}

    # Its settings: section [hello] of dagentic.toml, read by the tool, shown by config show.
    (hello_plugin / "dagentic.toml").write_text('[hello]\ngreeting = "Howdy"\n', encoding="utf-8")
    ran = _run(
        [str(dagentic), "run", str(DATA / "hello_plugin_plan.yaml"), "--json"], cwd=hello_plugin
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"] == {"greeting": "Howdy, Ada!"}
    shown = _run([str(dagentic), "config", "show", "--json"], cwd=hello_plugin)
    assert shown.returncode == 0, shown.stderr
    assert {
        "key": "hello.greeting",
        "path": ["hello", "greeting"],
        "value": "Howdy",
        "source": "dagentic.toml",
        "plugin": "hello",
    } in json.loads(shown.stdout)

    (hello_plugin / "dagentic.toml").write_text('[helo]\ngreeting = "Howdy"\n', encoding="utf-8")
    ran = _run(
        [str(dagentic), "run", str(DATA / "hello_plugin_plan.yaml"), "--json"], cwd=hello_plugin
    )
    assert ran.returncode == 2
    assert " ".join(ran.stderr.split()) == (
        "error: dagentic.toml: unknown section [helo]; did you mean [hello]? (sections come "
        "from the core: agent, cache, execution, guardrails, journal, library, memory, model, "
        "ray, sandbox, serve, tool_concurrency, tracing; and from installed plugins: hello, "
        "mcp, sql, web)"
    )


# --------------------------------------------------------------------------- commands


def commands(*groups: Any) -> Callable[[], list[Any]]:
    def register_commands() -> list[Any]:
        return list(groups)

    return register_commands


def test_load_commands_collects_named_command_groups() -> None:
    import typer
    from dagentic.plugin_manager import load_commands

    group = typer.Typer(name="weather")
    pm = make_plugin_manager(
        [make_plugin("acme_cli", register_commands=commands(group))], use_entry_points=False
    )
    assert load_commands(pm) == {"weather": group}


def test_builtin_web_plugin_adds_the_index_command_group() -> None:
    from dagentic.plugin_manager import load_commands

    assert "index" in load_commands()


def test_command_group_without_a_name_is_an_error_naming_the_plugin() -> None:
    import typer
    from dagentic.plugin_manager import load_commands

    pm = make_plugin_manager(
        [make_plugin("acme_cli", register_commands=commands(typer.Typer()))], use_entry_points=False
    )
    with pytest.raises(PluginError) as caught:
        load_commands(pm)
    assert caught.value.message.startswith("plugin 'acme_cli': register_commands() returned ")
    assert caught.value.message.endswith(
        "; return typer.Typer objects made with a name, e.g. typer.Typer(name='index')"
    )


def test_one_command_name_from_two_plugins_is_an_error() -> None:
    import typer
    from dagentic.plugin_manager import load_commands

    pm = make_plugin_manager(
        [
            make_plugin("acme_a", register_commands=commands(typer.Typer(name="weather"))),
            make_plugin("acme_b", register_commands=commands(typer.Typer(name="weather"))),
        ],
        use_entry_points=False,
    )
    with pytest.raises(PluginError) as caught:
        load_commands(pm)
    assert caught.value.message in (
        "plugin 'acme_a': command 'weather' is registered twice",
        "plugin 'acme_b': command 'weather' is registered twice",
    )


def test_plugin_command_named_like_a_builtin_one_stops_the_cli_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer
    from dagentic import cli

    monkeypatch.setattr(cli, "load_commands", lambda: {"run": typer.Typer(name="run")})
    monkeypatch.setattr(sys, "argv", ["dagentic", "--help"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert (
        "a plugin registers command 'run', which dagentic has already; rename the "
        "plugin's command group" in " ".join(capsys.readouterr().err.split())
    )
