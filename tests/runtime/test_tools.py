"""The @tool decorator, the Tool it builds, and the ToolRegistry."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Literal

import pydantic
import pytest
from dagentic import (
    Executor,
    FailureMode,
    PluginError,
    RunStatus,
    Settings,
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolNotFoundError,
    ToolRegistry,
    tool,
)


@tool
async def ping(host: str) -> str:
    """Check that a host answers.

    Args:
        host: The host name.
    """
    return f"pong from {host}"


def as_if_from(module: str, function: Any) -> Any:
    """Pretend ``function`` was defined in ``module`` (tool names derive from it)."""
    function.__module__ = module
    return function


# --------------------------------------------------------------------------- building


def test_bare_decorator_names_the_tool_after_its_module_and_function() -> None:
    module = __name__.rsplit(".", 1)[-1]
    assert isinstance(ping, Tool)
    assert ping.name == f"{module}.ping"
    assert ping.description == "Check that a host answers."
    assert ping.is_async


def test_name_uses_the_last_part_of_a_dotted_module() -> None:
    def forecast(city: str) -> str:
        """Forecast the weather."""
        return city

    built = tool(as_if_from("acme_tools.weather", forecast))
    assert built.name == "weather.forecast"
    assert not built.is_async
    assert built.fn is forecast


def test_bare_decorator_uses_the_default_metadata() -> None:
    assert (ping.side_effects, ping.idempotent, ping.trusted) == ("read", True, True)
    assert (ping.timeout, ping.max_concurrency, ping.plugin, ping.context_param) == (
        None,
        None,
        None,
        None,
    )


def test_decorator_options_are_recorded_on_the_tool() -> None:
    @tool(
        name="acme.upload",
        description="Upload a file.",
        timeout=5,
        max_concurrency=2,
        side_effects="write",
        idempotent=False,
        trusted=False,
    )
    def upload(path: str) -> None:
        """The docstring loses to description=."""

    assert upload.name == "acme.upload"
    assert upload.description == "Upload a file."
    assert upload.timeout == 5
    assert upload.max_concurrency == 2
    assert upload.side_effects == "write"
    assert upload.idempotent is False
    assert upload.trusted is False


def test_description_joins_the_summary_and_the_long_description() -> None:
    @tool(name="acme.report")
    def report(topic: str) -> str:
        """Write a report.

        It covers one topic in depth.

        Args:
            topic: What the report is about.
        """
        return topic

    assert report.description == "Write a report.\n\nIt covers one topic in depth."


def test_tool_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ping.name = "other.name"  # type: ignore[misc]


def test_with_plugin_returns_a_copy_naming_the_plugin() -> None:
    copy = ping.with_plugin("netkit")
    assert copy.plugin == "netkit"
    assert ping.plugin is None
    assert copy.name == ping.name


# --------------------------------------------------------------------------- argument model


@tool(name="weather.forecast")
async def forecast(
    city: str, days: int = 3, units: Literal["metric", "imperial"] = "metric", hourly: bool = False
) -> dict[str, Any]:
    """Forecast the weather of a city.

    Args:
        city: The city name, e.g. Oslo.
        days: How many days ahead.
        units: Unit system of the temperatures.
    """
    return {"city": city, "days": days, "units": units, "hourly": hourly}


def test_argument_schema_comes_from_the_signature_and_docstring() -> None:
    assert forecast.args_schema() == {
        "title": "WeatherForecastArgs",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"title": "City", "type": "string", "description": "The city name, e.g. Oslo."},
            "days": {
                "title": "Days",
                "type": "integer",
                "default": 3,
                "description": "How many days ahead.",
            },
            "units": {
                "title": "Units",
                "enum": ["metric", "imperial"],
                "type": "string",
                "default": "metric",
                "description": "Unit system of the temperatures.",
            },
            "hourly": {"title": "Hourly", "type": "boolean", "default": False},
        },
        "required": ["city"],
    }


def test_spec_describes_the_tool_to_planners() -> None:
    spec = forecast.spec()
    assert spec == {
        "name": "weather.forecast",
        "description": "Forecast the weather of a city.",
        "args": forecast.args_schema(),
        "side_effects": "read",
        "effects_per_call": False,
        "egress": {},
        "idempotent": True,
        "uses_idempotency_key": False,
        "trusted": True,
        "plugin": None,
        "returns": None,
    }


def test_returns_section_of_the_docstring_tells_planners_what_comes_back() -> None:
    @tool(name="weather.now")
    def now(city: str) -> dict:
        """The weather now.

        Args:
            city: The city.

        Returns:
            dict: {temperature, wind}; read the temperature as
                output.temperature.
        """
        return {}

    assert now.returns == "{temperature, wind}; read the temperature as output.temperature."
    assert now.spec()["returns"] == now.returns


def test_argument_model_applies_defaults_and_validates_types() -> None:
    args = forecast.args_model.model_validate({"city": "Oslo", "days": "5"})
    assert args.model_dump() == {"city": "Oslo", "days": 5, "units": "metric", "hourly": False}
    with pytest.raises(pydantic.ValidationError) as caught:
        forecast.args_model.model_validate({"city": "Oslo", "units": "kelvin"})
    assert [e["loc"] for e in caught.value.errors()] == [("units",)]


def test_argument_model_requires_arguments_without_defaults() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        forecast.args_model.model_validate({})
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("missing", ("city",))]


def test_argument_model_forbids_unknown_arguments() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        forecast.args_model.model_validate({"city": "Oslo", "country": "NO"})
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [
        ("extra_forbidden", ("country",))
    ]


def test_field_adapter_validates_one_argument() -> None:
    adapter = forecast.field_adapter("days")
    assert adapter is not None
    assert adapter.validate_python("4") == 4
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python("soon")
    assert forecast.field_adapter("nope") is None


# --------------------------------------------------------------------------- ToolContext


@tool(name="acme.whoami")
def whoami(label: str, context: ToolContext) -> dict[str, Any]:
    """Report where it runs.

    Args:
        label: A label to echo.
    """
    return {
        "label": label,
        "run": context.run_id,
        "step": context.step_id,
        "attempt": context.attempt,
        "thread": threading.get_ident(),
    }


def test_tool_context_parameter_is_hidden_from_the_schema() -> None:
    assert whoami.context_param == "context"
    schema = whoami.args_schema()
    assert list(schema["properties"]) == ["label"]
    assert schema["required"] == ["label"]
    with pytest.raises(pydantic.ValidationError):
        whoami.args_model.model_validate({"label": "x", "context": {}})


@pytest.mark.anyio
async def test_tool_context_parameter_is_injected_when_the_tool_runs(settings: Settings) -> None:
    executor = Executor(ToolRegistry([whoami]), settings=settings)
    result = await executor.run(
        """
name: who
steps:
  - {id: me, tool: acme.whoami, args: {label: hi}}
""",
        run_id="r-1",
    )
    assert result.status is RunStatus.SUCCEEDED
    output = result.steps["me"].output
    assert {k: output[k] for k in ("label", "run", "step", "attempt")} == {
        "label": "hi",
        "run": "r-1",
        "step": "me",
        "attempt": 1,
    }
    assert output["thread"] != threading.get_ident()  # a sync tool runs in a worker thread


# --------------------------------------------------------------------------- definition errors


def test_every_definition_problem_is_reported_at_once() -> None:
    def bad(a: int, /, b, *args: int, context: ToolContext, **kwargs: Any):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(ToolDefinitionError) as caught:
        tool(
            name="Bad Name",
            side_effects="delete",
            timeout=0,  # type: ignore[arg-type]
            max_concurrency=0,
        )(bad)
    error = caught.value
    assert error.message == (
        "tool 'Bad Name' is not a valid tool:\n"
        "  - name 'Bad Name' is not 'namespace.verb' in lower case; pass "
        "@tool(name='myns.my_verb')\n"
        "  - side_effects must be 'none', 'read' or 'write', not 'delete'\n"
        "  - timeout must be a positive number of seconds, not 0\n"
        "  - max_concurrency must be at least 1, not 0\n"
        "  - it has no description; write a docstring (planners choose tools by it) or pass "
        "description=\n"
        "  - parameter 'a' is positional-only; tools are called with keyword arguments\n"
        "  - parameter 'b' has no type annotation\n"
        "  - parameter 'args': *args and **kwargs cannot be described to a planner; list the "
        "arguments\n"
        "  - parameter 'kwargs': *args and **kwargs cannot be described to a planner; list the "
        "arguments"
    )
    assert len(error.problems) == 9
    assert error.fields == {"tool": "Bad Name"}
    assert isinstance(error, TypeError)


def test_docstring_documenting_a_missing_parameter_is_a_definition_error() -> None:
    def lookup(key: str, limit: int = 5) -> list[str]:
        """Look a key up.

        Args:
            key: What to look up.
            limt: How many results (typo'd).
        """
        return [key] * limit

    with pytest.raises(ToolDefinitionError) as caught:
        tool(name="acme.lookup")(lookup)
    assert caught.value.message == (
        "tool 'acme.lookup' is not a valid tool:\n"
        "  - the docstring documents 'limt' but there is no such parameter"
    )


def test_derived_name_that_is_not_namespace_verb_is_a_definition_error() -> None:
    def Fetch(url: str) -> str:  # the upper-case name is the point
        """Fetch a URL.

        Args:
            url: The address.
        """
        return url

    with pytest.raises(ToolDefinitionError) as caught:
        tool(as_if_from("acme.web", Fetch))
    assert caught.value.message == (
        "tool 'web.Fetch' is not a valid tool:\n"
        "  - name 'web.Fetch' is not 'namespace.verb' in lower case; pass "
        "@tool(name='myns.my_verb')"
    )


def test_malformed_docstring_is_a_definition_error_listed_with_the_others() -> None:
    def sloppy(query: str, limit) -> list[str]:  # type: ignore[no-untyped-def]
        """Search for something.

        Args:
        query: unindented, so the Args section is empty.
        """
        return [query]

    with pytest.raises(ToolDefinitionError) as caught:
        tool(name="acme.sloppy")(sloppy)
    problems = caught.value.problems
    assert any("docstring" in p for p in problems), problems
    assert "parameter 'limit' has no type annotation" in problems


def test_description_argument_stands_in_for_a_docstring() -> None:
    def quiet(x: int) -> int:
        return x

    built = tool(name="acme.quiet", description="Return x.")(quiet)
    assert built.description == "Return x."


# --------------------------------------------------------------------------- registry


def test_registry_get_returns_the_tool_by_name() -> None:
    registry = ToolRegistry([forecast, whoami])
    assert registry.get("weather.forecast") is forecast
    assert "acme.whoami" in registry
    assert "acme.nothing" not in registry
    assert registry.names() == ["acme.whoami", "weather.forecast"]
    assert [t.name for t in registry] == ["acme.whoami", "weather.forecast"]
    assert len(registry) == 2


def test_unknown_tool_is_not_found_with_a_suggestion() -> None:
    registry = ToolRegistry([forecast, whoami])
    with pytest.raises(ToolNotFoundError) as caught:
        registry.get("weather.forcast")
    assert (
        caught.value.message == "unknown tool 'weather.forcast' (did you mean 'weather.forecast'?)"
    )
    assert caught.value.failure_mode is FailureMode.INVALID_TOOL
    assert isinstance(caught.value, LookupError)


def test_unknown_tool_without_a_close_name_has_no_suggestion() -> None:
    with pytest.raises(ToolNotFoundError) as caught:
        ToolRegistry([forecast]).get("zzz.qqq")
    assert caught.value.message == "unknown tool 'zzz.qqq'"


def test_same_tool_name_from_two_plugins_is_an_error_naming_both() -> None:
    registry = ToolRegistry([forecast.with_plugin("sunny")])
    with pytest.raises(PluginError) as caught:
        registry.add(forecast.with_plugin("rainy"))
    assert caught.value.message == (
        "tool 'weather.forecast' is registered twice: by plugin 'sunny' and by plugin "
        "'rainy'; uninstall one of them or rename the tool"
    )
    assert registry.get("weather.forecast").plugin == "sunny"


def test_adding_the_same_tool_object_twice_is_harmless() -> None:
    registry = ToolRegistry([forecast])
    registry.add(forecast)
    assert len(registry) == 1


def test_planning_context_tools_must_run_without_arguments_or_side_effects() -> None:
    with pytest.raises(ToolDefinitionError) as caught:

        @tool(name="db.describe", planning_context=True)
        def describe(table: str) -> dict:
            """Describe a table.

            Args:
                table: Which one.
            """
            return {}

    assert caught.value.problems == [
        "planning_context=True needs a tool without side effects that runs with no "
        "arguments (every argument has a default)"
    ]

    @tool(name="db.tables", planning_context=True)
    def tables() -> list:
        """The tables."""
        return []

    assert tables.planning_context is True
