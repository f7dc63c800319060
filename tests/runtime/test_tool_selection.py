"""Tool selection: with many tools installed, the planner is shown those relevant to the
goal (and the planning-context tools), in its prompt and in its output schema."""

from __future__ import annotations

from typing import Any

import pytest
from dagentic import Agent, ScriptedModel, Tool, ToolRegistry, tool
from dagentic.planner import LLMPlanner
from dagentic.settings import AgentSettings
from dagentic.tool_selection import rank_tools, select_tools, words

from tests.blind import blind_settings


def made(name: str, description: str, **options: Any) -> Tool:
    async def call() -> str:
        return name

    return tool(name=name, description=description, side_effects="none", **options)(call)


TOOLS = [
    made("weather.forecast", "The weather forecast of a city: temperature, rain, wind."),
    made("calendar.add_event", "Add an event to the user's calendar at a date and time."),
    made("files.read_text", "Read a text file from the workspace."),
    made("db.query", "Run one read-only query over the configured tables."),
    made("db.describe", "Describe the tables of the database.", planning_context=True),
    made("crm.find_contact", "Find a contact of the customer relationship system by name."),
]


def test_words_are_lower_case_without_stop_words_and_with_endings_cut() -> None:
    assert words("What are the Forecasts of cities, and Running totals?") == [
        "forecast",
        "city",
        "runn",
        "total",
    ]


def test_the_tool_that_matches_the_goal_ranks_first() -> None:
    ranked = rank_tools(TOOLS, "Will it rain in Oslo tomorrow? Check the forecast.")
    assert ranked[0][1].name == "weather.forecast"
    assert ranked[0][0] > 0
    assert [score for score, _ in ranked[-3:]] == [0.0, 0.0, 0.0]  # ties: by name


def test_a_namespaces_planning_context_makes_its_tools_findable_by_the_data() -> None:
    goal = "What was the total of unpaid invoices per customer?"
    blind = rank_tools(TOOLS, goal)
    assert blind[0][1].name == "crm.find_contact"  # "customer" is all it can go by
    context = {"db.describe": "tables: invoices (customer, amount, paid), customers (name)"}
    assert rank_tools(TOOLS, goal, context)[0][1].name in ("db.query", "db.describe")
    chosen = select_tools(ToolRegistry(TOOLS), goal, limit=1, context=context)
    assert chosen.names() == ["db.describe", "db.query"]  # planning context: always


def planner(limit: int, above: int | None) -> LLMPlanner:
    return LLMPlanner(
        ScriptedModel([]), ToolRegistry(TOOLS), select_above=above, select_limit=limit
    )


def offered_in_prompt(planner: LLMPlanner, goal: str) -> list[str]:
    prompt = planner.prompt(goal)[1].content
    tools = prompt.split("Tools:\n", 1)[1].split("\n\n", 1)[0]
    return [line[2:].split(":", 1)[0] for line in tools.splitlines() if line.startswith("- ")]


def test_above_the_threshold_the_prompt_and_schema_offer_only_the_selected_tools() -> None:
    goal = "Add a calendar event for the team lunch on Friday at noon."
    selecting = planner(limit=2, above=5)

    shown = offered_in_prompt(selecting, goal)
    assert shown == ["calendar.add_event", "crm.find_contact", "db.describe"]  # a tie: by name
    _, schema = selecting.offered(goal)
    steps = schema["anyOf"][0]["properties"]["steps"]["items"]["anyOf"]
    assert [v["properties"]["tool"]["const"] for v in steps if "tool" in v["properties"]] == shown
    assert planner(limit=2, above=6).offered(goal)[0].names() == ToolRegistry(TOOLS).names()
    assert len(offered_in_prompt(planner(limit=2, above=None), goal)) == len(TOOLS)


@pytest.mark.anyio
async def test_the_agent_plans_with_the_selected_tools_and_runs_the_plan() -> None:
    model = ScriptedModel(
        [
            {"steps": [{"id": "w", "tool": "weather.forecast", "args": {}}]},
            {"answer": "sunny [w]", "cited_steps": ["w"], "complete": True},
            {"passed": True, "reason": "yes"},
        ]
    )
    settings = blind_settings(
        memory={"enabled": False}, agent={"tool_selection_above": 3, "tool_selection_limit": 1}
    )
    tools = ToolRegistry([t for t in TOOLS if not t.planning_context])
    agent = Agent(model, tools, settings=settings, journal=None, tracing=None)

    result = await agent.run("What is the weather forecast for Oslo?")

    assert result.succeeded, result.error
    prompt = model.calls[0]["messages"][1].content
    assert "- weather.forecast:" in prompt
    assert "calendar.add_event" not in prompt and "crm.find_contact" not in prompt
    assert AgentSettings().tool_selection_above == 40
