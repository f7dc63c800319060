"""Settings: the core's and the sections plugins register (``register_settings``), their
precedence (arguments > environment > dagentic.toml > pyproject.toml > defaults), the errors
for unknown sections and settings, and ``dagentic config show``."""

from __future__ import annotations

import json
import textwrap
import types
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from dagentic import (
    PluginError,
    Settings,
    SettingsError,
    hookimpl,
    load_settings,
    make_plugin_manager,
)
from dagentic.plugin_manager import load_settings_models
from dagentic.plugins.sql.settings import SqlSettings
from dagentic.plugins.web.settings import WebSettings
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tests.cli import invoke, isolate

CORE = "agent, cache, execution, guardrails, journal, library, memory, model, ray, sandbox, serve, tool_concurrency, tracing"


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "https://weather.example/api"
    timeout: float = 5.0
    key: SecretStr | None = None


class WeatherSettings(BaseModel):
    """A third-party plugin's settings, as its author would write them."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "weather"

    units: Literal["metric", "imperial"] = "metric"
    cities: list[str] = Field(default_factory=list)
    days: int = Field(3, ge=1)
    api: ApiSettings = Field(default_factory=ApiSettings)


class KeyedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "keyed"

    token: SecretStr


def plugin(name: str, *models: Any) -> types.ModuleType:
    """A plugin module registering ``models``, as a third-party package's would."""
    module = types.ModuleType(name)
    module.register_settings = hookimpl(lambda: list(models))  # type: ignore[attr-defined]
    return module


def checked(*models: Any) -> Settings:
    """Settings of the working directory, checked against a weather plugin (only)."""
    pm = make_plugin_manager([plugin("acme_weather", *models)], use_entry_points=False)
    return load_settings(plugin_manager=pm)


def problems(*models: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        checked(*models)
    assert caught.value.message == "\n".join(caught.value.problems)
    return caught.value.problems


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no DAGENTIC_* variables from around the tests."""
    isolate(tmp_path, monkeypatch)
    return tmp_path


def write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text), encoding="utf-8")


# --------------------------------------------------------------------------- the hook


def test_builtin_plugins_register_their_settings_through_the_hook() -> None:
    models = load_settings_models()
    assert models["sql"] == ("sql", SqlSettings)
    assert models["web"] == ("web", WebSettings)
    assert "sql" not in Settings.model_fields and "web" not in Settings.model_fields


def test_a_plugin_reads_its_section_through_settings_plugin(workdir: Path) -> None:
    write(workdir / "dagentic.toml", '[weather]\nunits = "imperial"\n')
    settings = checked(WeatherSettings)
    config = settings.plugin(WeatherSettings)
    assert config == WeatherSettings(units="imperial")
    assert settings.plugin(WeatherSettings) is config  # validated once, then the same object


def test_a_section_is_read_without_the_plugin_manager_too(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "[weather]\ndays = 9\n")
    assert Settings().plugin(WeatherSettings).days == 9


def test_settings_are_read_once_when_made(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir / "dagentic.toml", "[weather]\ndays = 9\n")
    settings = Settings()
    write(workdir / "dagentic.toml", "[weather]\ndays = 4\n")
    monkeypatch.setenv("DAGENTIC_WEATHER__UNITS", "imperial")
    assert settings.plugin(WeatherSettings) == WeatherSettings(days=9)


def test_a_model_without_a_section_name_is_an_error_naming_the_plugin() -> None:
    class Nameless(BaseModel):
        units: str = "metric"

    with pytest.raises(PluginError) as caught:
        checked(Nameless)
    assert caught.value.message == (
        "plugin 'acme_weather': register_settings(): settings model Nameless has no valid "
        "section name (None); give it a class variable of lowercase letters, digits and _, "
        "e.g. section: ClassVar[str] = 'weather'"
    )


def test_a_section_named_like_a_core_one_is_an_error() -> None:
    class Sneaky(BaseModel):
        section: ClassVar[str] = "model"

    with pytest.raises(PluginError) as caught:
        checked(Sneaky)
    assert caught.value.message == (
        "plugin 'acme_weather': register_settings(): settings model Sneaky names section "
        "[model], which is the core's; choose another name"
    )


def test_returning_something_that_is_not_a_model_class_is_an_error() -> None:
    with pytest.raises(PluginError) as caught:
        checked(WeatherSettings())
    assert caught.value.message == (
        "plugin 'acme_weather': register_settings(): WeatherSettings(units='metric', "
        "cities=[], days=3, api=ApiSettings(url='https://weather.example/api', timeout=5.0, "
        "key=None)) is not a pydantic model class; return settings models"
    )


def test_one_section_from_two_plugins_is_an_error_naming_both() -> None:
    pm = make_plugin_manager(
        [plugin("acme_sunny", WeatherSettings), plugin("acme_rainy", WeatherSettings)],
        use_entry_points=False,
    )
    with pytest.raises(PluginError) as caught:
        load_settings_models(pm)
    assert caught.value.message == (
        "settings section [weather] is registered twice: by plugin 'acme_sunny' and by "
        "plugin 'acme_rainy'; uninstall one of them or rename the section"
    )


def test_two_models_cannot_read_one_section() -> None:
    class Other(BaseModel):
        section: ClassVar[str] = "weather"

    settings = Settings()
    settings.plugin(WeatherSettings)
    with pytest.raises(PluginError) as caught:
        settings.plugin(Other)
    assert caught.value.message == (
        "settings section [weather] is read with WeatherSettings already; Other cannot read "
        "it too: give it a section of its own"
    )


# --------------------------------------------------------------------------- precedence


def test_arguments_beat_environment_beat_dagentic_toml_beat_pyproject_beat_defaults(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        workdir / "pyproject.toml",
        """\
        [tool.dagentic]
        concurrency = 3
        foreach_concurrency = 3
        [tool.dagentic.weather]
        units = "imperial"
        days = 5
        cities = ["Oslo"]
        [tool.dagentic.weather.api]
        timeout = 1.0
        """,
    )
    write(
        workdir / "dagentic.toml",
        """\
        concurrency = 4
        [weather]
        days = 7
        [weather.api]
        url = "http://127.0.0.1:9/api"
        """,
    )
    monkeypatch.setenv("DAGENTIC_CONCURRENCY", "5")
    monkeypatch.setenv("DAGENTIC_WEATHER__CITIES", '["Lima", "Pune"]')
    monkeypatch.setenv("dagentic_weather__api__timeout", "2.5")  # names ignore case
    settings = Settings(weather={"api": {"url": "http://args/api"}})

    assert settings.plugin(WeatherSettings) == WeatherSettings(
        units="imperial",
        days=7,
        cities=["Lima", "Pune"],
        api=ApiSettings(url="http://args/api", timeout=2.5),
    )
    assert (settings.concurrency, settings.foreach_concurrency) == (5, 3)
    origins = {
        path: settings.origin(*path.split("."))
        for path in (
            "weather.units",
            "weather.days",
            "weather.cities",
            "weather.api.timeout",
            "weather.api.url",
            "weather.api.key",
            "concurrency",
            "foreach_concurrency",
            "worker_threads",
        )
    }
    assert origins == {
        "weather.units": "pyproject.toml",
        "weather.days": "dagentic.toml",
        "weather.cities": "DAGENTIC_WEATHER__CITIES",
        "weather.api.timeout": "dagentic_weather__api__timeout",
        "weather.api.url": "arguments",
        "weather.api.key": "default",
        "concurrency": "DAGENTIC_CONCURRENCY",
        "foreach_concurrency": "pyproject.toml",
        "worker_threads": "default",
    }


def test_a_whole_section_can_be_one_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGENTIC_WEATHER", '{"days": 2, "api": {"timeout": 9}}')
    config = checked(WeatherSettings).plugin(WeatherSettings)
    assert (config.days, config.api.timeout) == (2, 9.0)


def test_a_model_instance_given_as_argument_is_its_section() -> None:
    settings = Settings(web=WebSettings(cache_ttl=0))
    assert settings.plugin(WebSettings) == WebSettings(cache_ttl=0)
    assert settings.origin("web", "cache_ttl") == "arguments"
    assert settings.origin("web", "retries") == "default"


def test_a_partial_table_keeps_the_other_defaults_of_its_model(workdir: Path) -> None:
    write(workdir / "dagentic.toml", '[web.brave]\napi_key = "k"\n')  # brave's url is a default
    brave = Settings().plugin(WebSettings).brave
    assert brave.url == "https://api.search.brave.com/res/v1/web/search"
    assert brave.api_key is not None and brave.api_key.get_secret_value() == "k"


def test_blind_settings_read_no_plugin_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGENTIC_WEATHER__DAYS", "8")
    blind = Settings(_env_prefix="DAGENTIC_TEST_UNUSED_")  # type: ignore[call-arg]
    assert blind.plugin(WeatherSettings).days == 3
    assert Settings().plugin(WeatherSettings).days == 8


# --------------------------------------------------------------------------- errors


def test_unknown_section_in_dagentic_toml_is_an_error_with_did_you_mean(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "[weathr]\nunits = 'metric'\n")
    assert problems(WeatherSettings) == [
        "dagentic.toml: unknown section [weathr]; did you mean [weather]? (sections come "
        f"from the core: {CORE}; and from installed plugins: weather)"
    ]


def test_unknown_section_in_pyproject_is_spelled_as_pyproject_spells_it(workdir: Path) -> None:
    write(workdir / "pyproject.toml", "[tool.dagentic.sandbx]\nimage = 'x'\n")
    assert problems(WeatherSettings) == [
        "pyproject.toml: unknown section [tool.dagentic.sandbx]; did you mean "
        f"[tool.dagentic.sandbox]? (sections come from the core: {CORE}; and from installed "
        "plugins: weather)"
    ]


def test_section_of_a_plugin_that_is_not_installed_is_an_error(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "[kubernetes]\nnamespace = 'x'\n")
    assert problems() == [
        "dagentic.toml: unknown section [kubernetes] (sections come from the core: "
        f"{CORE}; and from installed plugins: none)"
    ]


def test_unknown_section_in_a_variable_names_the_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGENTIC_WEATHR__DAYS", "2")
    monkeypatch.setenv("DAGENTIC_SANDBOX_FORCE", "1")  # no __: not a section, not ours
    assert problems(WeatherSettings) == [
        "environment variable DAGENTIC_WEATHR__DAYS: unknown section 'weathr'; did you mean "
        f"DAGENTIC_WEATHER__DAYS? (sections come from the core: {CORE}; and from installed "
        "plugins: weather)"
    ]


def test_unknown_section_given_as_argument_is_an_error() -> None:
    pm = make_plugin_manager([plugin("acme_weather", WeatherSettings)], use_entry_points=False)
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings(weathe={"days": 1}), plugin_manager=pm)
    assert caught.value.problems == [
        "Settings() arguments: unknown section 'weathe'; did you mean 'weather'? (sections "
        f"come from the core: {CORE}; and from installed plugins: weather)"
    ]


def test_unknown_keys_in_a_plugin_section_are_errors_naming_where_they_are(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "dagentic.toml", "[weather]\nday = 2\n[weather.api]\nurl = 'x'\ntimout = 3\n")
    monkeypatch.setenv("DAGENTIC_WEATHER__UNITZ", "imperial")
    assert problems(WeatherSettings) == [
        "dagentic.toml: unknown setting 'weather.api.timout'; did you mean 'weather.api.timeout'?",
        "dagentic.toml: unknown setting 'weather.day'; did you mean 'weather.days'?",
        "environment variable DAGENTIC_WEATHER__UNITZ: unknown setting 'weather.unitz'; did "
        "you mean 'weather.units'?",
    ]


def test_invalid_values_name_their_file_or_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "pyproject.toml", "[tool.dagentic.weather]\ndays = 0\n")
    monkeypatch.setenv("DAGENTIC_WEATHER__UNITS", "kelvin")
    assert problems(WeatherSettings) == [
        "environment variable DAGENTIC_WEATHER__UNITS: weather.units: Input should be "
        "'metric' or 'imperial'",
        "pyproject.toml: weather.days: Input should be greater than or equal to 1",
    ]


def test_a_variable_whose_json_does_not_parse_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGENTIC_WEATHER__CITIES", "[Lima")
    assert problems(WeatherSettings) == [
        "environment variable DAGENTIC_WEATHER__CITIES: error parsing value for field "
        '"weather" from source "EnvSettingsSource"; lists and tables are JSON'
    ]


def test_every_problem_is_reported_at_once(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "[weathr]\n[weather]\ndays = 'many'\n")
    assert problems(WeatherSettings) == [
        "dagentic.toml: unknown section [weathr]; did you mean [weather]? (sections come "
        f"from the core: {CORE}; and from installed plugins: weather)",
        "dagentic.toml: weather.days: Input should be a valid integer, unable to parse "
        "string as an integer",
    ]


def test_an_unset_section_with_required_settings_fails_only_when_read() -> None:
    settings = checked(KeyedSettings)  # installing such a plugin breaks nothing else
    with pytest.raises(SettingsError) as caught:
        settings.plugin(KeyedSettings)
    assert caught.value.problems == [
        "keyed.token is required: set it in dagentic.toml or with DAGENTIC_KEYED__TOKEN"
    ]


def test_unknown_core_setting_is_an_error_with_did_you_mean(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "concurency = 4\n[model]\ntemprature = 0.5\n")
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert caught.value.problems == [
        "dagentic.toml: unknown setting 'model.temprature'; did you mean 'model.temperature'?",
        "dagentic.toml: unknown setting 'concurency'; did you mean 'concurrency'?",
    ]


def test_invalid_core_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGENTIC_SANDBOX__POOL_SIZE", "-1")
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert caught.value.message == (
        "environment variable DAGENTIC_SANDBOX__POOL_SIZE: sandbox.pool_size: Input should "
        "be greater than or equal to 0"
    )


# --------------------------------------------------------------------------- the command line


def block(output: str, header: str) -> str:
    """The lines of ``output`` from ``header`` to the next blank line."""
    start = output.index(f"\n{header}\n" if "#" not in header else f"\n{header}")
    return output[start + 1 :].split("\n\n", 1)[0]


def test_the_cli_stops_before_running_anything_on_an_unknown_section(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "[sqll]\nmax_rows = 5\n")
    result = invoke("tools")
    assert result.exit_code == 2
    installed = ", ".join(sorted(load_settings_models()))  # sql, web and any third party's
    assert " ".join(result.stderr.split()) == (
        "error: dagentic.toml: unknown section [sqll]; did you mean [sql]? (sections come "
        f"from the core: {CORE}; and from installed plugins: {installed})"
    )


@pytest.fixture
def configured(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(
        workdir / "dagentic.toml",
        """\
        concurrency = 8
        [sql]
        max_rows = 50
        [web.brave]
        api_key = "brave-secret-123"
        """,
    )
    monkeypatch.setenv("DAGENTIC_SQL__TIMEOUT", "2.5")
    monkeypatch.setenv("DAGENTIC_MODEL__API_KEY", "sk-secret-456")
    return workdir


def test_config_show_prints_each_value_with_where_it_came_from(configured: Path) -> None:
    result = invoke("config", "show")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "concurrency = 8  # dagentic.toml",
        "foreach_concurrency = 16  # default",
        "tool_concurrency = {}  # default",
    ]
    assert block(result.stdout, "[sql]  # plugin sql") == textwrap.dedent(
        """\
        [sql]  # plugin sql
        sources = {}  # default
        allowed_roots = []  # default
        max_rows = 50  # dagentic.toml
        max_bytes = 1000000  # default
        timeout = 2.5  # DAGENTIC_SQL__TIMEOUT
        memory_limit = "512MB"  # default
        threads = 2  # default"""
    )
    assert block(result.stdout, "[web.brave]") == textwrap.dedent(
        """\
        [web.brave]
        url = "https://api.search.brave.com/res/v1/web/search"  # default
        api_key = "**********"  # dagentic.toml
        rate_limit = 1.0  # default"""
    )
    assert 'api_key = "**********"  # DAGENTIC_MODEL__API_KEY' in lines
    assert "[web]  # plugin web" in lines and "[sandbox.limits]" in lines


def test_config_show_never_prints_a_secret(configured: Path) -> None:
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = invoke(*args)
        assert result.exit_code == 0
        assert "brave-secret-123" not in result.output
        assert "sk-secret-456" not in result.output


def test_config_show_json_lists_every_setting(configured: Path) -> None:
    result = invoke("config", "show", "--json")
    assert result.exit_code == 0, result.output
    entries = {entry["key"]: entry for entry in json.loads(result.stdout)}
    assert entries["sql.timeout"] == {
        "key": "sql.timeout",
        "path": ["sql", "timeout"],
        "value": 2.5,
        "source": "DAGENTIC_SQL__TIMEOUT",
        "plugin": "sql",
    }
    assert entries["web.brave.api_key"]["value"] == "**********"
    assert entries["model.api_key"] == {
        "key": "model.api_key",
        "path": ["model", "api_key"],
        "value": "**********",
        "source": "DAGENTIC_MODEL__API_KEY",
        "plugin": None,
    }
    assert entries["concurrency"]["source"] == "dagentic.toml"
    assert entries["sql.sources"] == {
        "key": "sql.sources",
        "path": ["sql", "sources"],
        "value": {},
        "source": "default",
        "plugin": "sql",
    }


def test_config_show_prints_outside_text_as_data(workdir: Path) -> None:
    write(
        workdir / "dagentic.toml",
        """\
        [tool_concurrency]
        "[bold]web.search\\u202e" = 2
        [web.local]
        base_url = "[red]x[/red] \\u001b]8;;http://evil/\\u0007\\u009b31m"
        """,
    )
    result = invoke("config", "show")
    assert result.exit_code == 0, result.output
    # Markup is printed as written; control and direction characters as their escapes.
    assert block(result.stdout, "[tool_concurrency]") == (
        '[tool_concurrency]\n"[bold]web.search\\u202e" = 2  # dagentic.toml'
    )
    assert 'base_url = "[red]x[/red] \\u001b]8;;http://evil/\\u0007\\x9b31m"  # dagentic.toml' in (
        result.stdout.splitlines()
    )
    assert not {"\x1b", "\x07", "\x9b", "\u202e"} & set(result.output)


def test_config_show_reports_invalid_settings_and_exits_2(workdir: Path) -> None:
    write(workdir / "dagentic.toml", "[web]\nbackend = 'bing'\n")
    result = invoke("config", "show")
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        "error: dagentic.toml: web.backend: Input should be 'local', 'searxng', 'brave' or 'tavily'"
    )
