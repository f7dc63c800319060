"""Routing in `ask`: the library plans closest to the goal, one schema-constrained call that
chooses one (with its inputs) or none, a hostile reply that runs nothing unvalidated, free
planning with the closest plans as examples, and the route in the result and the trace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import Settings, ToolRegistry, load_tools
from dagentic.agent import Agent, AgentResult
from dagentic.models import ScriptedModel
from dagentic.routing import ground_inputs, router_schema
from dagentic.tracing import tracing_from_settings

from tests.blind import blind_settings
from tests.cli import invoke, isolate
from tests.sample_plans import FOLDERS, sample_plan

GOAL = "Which region led revenue in 2026Q2?"
PLANS = ("revenue_by_region", "top_products", "region_news", "orders_over_time")
ANSWER = {
    "answer": "West led revenue in 2026Q2 [revenue].",
    "cited_steps": ["revenue"],
    "complete": True,
}
PASS = {"passed": True, "reason": "it does"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)
    (tmp_path / "plans").mkdir()
    for name in PLANS:
        shutil.copy(sample_plan(name), tmp_path / "plans")


@pytest.fixture(scope="module")
def tools() -> ToolRegistry:
    return ToolRegistry([t for t in load_tools() if not t.planning_context])


def settings(tmp_path: Path, **agent: Any) -> Settings:
    return blind_settings(
        runs_dir=str(tmp_path / "runs"),
        library={"folders": [str(tmp_path / "plans")], "save": False},
        agent=agent,
    )


def ask(
    replies: list[Any], tools: ToolRegistry, tmp_path: Path, goal: str = GOAL, **options: Any
) -> tuple[AgentResult, ScriptedModel]:
    model = ScriptedModel(replies)
    agent = Agent(
        model,
        tools,
        settings=settings(tmp_path, **options.pop("agent", {})),
        journal=None,
        tracing=options.pop("tracing", None),
        cache=None,
        **options,
    )
    return anyio.run(agent.run, goal), model


def purposes(result: AgentResult) -> list[str]:
    return [c.purpose for c in result.model_calls]


def test_a_library_plan_is_chosen_filled_and_run_in_one_model_call(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    route = {"plan": "revenue_by_region", "inputs": {"quarter": "2026Q2"}}
    result, model = ask([route, PASS], tools, tmp_path)

    assert result.succeeded, result.error
    assert (result.route, result.library_plan) == ("library", "revenue_by_region")
    assert purposes(result) == ["route", "verify"]  # no planning call; the outputs answer
    assert result.answer is not None
    assert result.answer.splitlines()[:2] == ["quarter: 2026Q2", "leading region: West"]
    assert result.cited_steps == ["revenue"]
    assert result.verification == {"passed": True, "failure_mode": None, "reasons": []}
    assert result.outputs["quarter"] == "2026Q2"
    assert result.outputs["leading_region"] == "West"
    assert result.routing is not None
    assert result.routing["inputs"] == {"quarter": "2026Q2"}
    assert result.routing["candidates"][0] == "revenue_by_region"
    assert result.plans[0]["name"] == "revenue_by_region" and result.plans[0]["attempts"] == 0
    # the call's schema: the offered plans by name, each with its inputs' allowed values
    schema = model.calls[0]["schema"]
    variants = {v["properties"]["plan"]["const"]: v for v in schema["anyOf"]}
    assert "none" in variants and "revenue_by_region" in variants
    quarter = variants["revenue_by_region"]["properties"]["inputs"]["properties"]["quarter"]
    assert quarter == {
        "enum": ["2025Q1", "2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3"]
    }
    assert "Goal: Which region led revenue in 2026Q2?" in model.calls[0]["messages"][-1].content
    assert json.loads(result.model_dump_json())["route"] == "library"


def test_the_model_may_write_a_library_plans_answer(tools: ToolRegistry, tmp_path: Path) -> None:
    route = {"plan": "revenue_by_region", "inputs": {"quarter": "2026Q2"}}
    result, _ = ask([route, ANSWER, PASS], tools, tmp_path, agent={"library_answer": "model"})
    assert result.succeeded, result.error
    assert purposes(result) == ["route", "answer", "verify"]
    assert result.answer == ANSWER["answer"]


def test_none_falls_back_to_planning_with_the_closest_plans_as_examples(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    plan = {
        "steps": [
            {
                "id": "revenue",
                "tool": "sql.query",
                "args": {"sql": "SELECT region FROM sales WHERE quarter = '2026Q2' LIMIT 1"},
            }
        ]
    }
    result, model = ask([{"plan": "none"}, plan, ANSWER, PASS], tools, tmp_path)

    assert result.route == "planned" and result.library_plan is None
    assert result.routing is not None
    assert result.routing["reason"] == "the router found no plan that fits"
    assert purposes(result) == ["route", "plan", "answer", "verify"]
    prompt = model.calls[1]["messages"][-1].content
    assert "A plan that achieved a similar goal" in prompt
    assert '"The best-selling products' in prompt or '"Which region led revenue' in prompt
    assert "${{ inputs." not in prompt.split("A plan that achieved")[1][:1500]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            {"plan": "../../etc/passwd", "inputs": {}},
            'the router named "../../etc/passwd", which is not one of the plans offered',
        ),
        (
            {"plan": "troubled"},
            'the router named "troubled", which is not one of the plans offered',
        ),
        (
            {"plan": "revenue_by_region", "inputs": {"quarter": 2026}},
            "the router's inputs for 'revenue_by_region' do not fit them: quarter must be "
            'one of "2025Q1", "2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3"; '
            "got 2026",
        ),
        (
            {"plan": "revenue_by_region", "inputs": {"quarter": "2026Q2", "sql": "DROP TABLE x"}},
            "the router's inputs for 'revenue_by_region' do not fit them: it has no input \"sql\"",
        ),
        ("Sure! The revenue_by_region plan.", "the router's reply is not JSON"),
        ([1, 2], "the router's reply is not a JSON object"),
    ],
)
def test_a_hostile_router_reply_runs_nothing_unvalidated(
    tools: ToolRegistry, tmp_path: Path, reply: Any, reason: str
) -> None:
    result, _ = ask([reply, {"missing_capability": "no"}], tools, tmp_path)

    assert result.route == "planned"
    assert result.routing is not None and result.routing["reason"] == reason
    assert result.run_ids == [] and result.steps == {}  # nothing ran
    assert purposes(result) == ["route", "plan"]
    assert result.error is not None and result.error.failure_mode.value == "missing_capability"


def test_an_input_the_goal_does_not_state_gives_way_to_the_one_it_states() -> None:
    from dagentic import load_plan

    plan = load_plan(sample_plan("top_products"), load_tools()).plan
    goal = "What were the 3 best-selling products in the second quarter of 2025?"
    inputs, corrected = ground_inputs(goal, plan.inputs, {"quarter": "2026Q3", "limit": 10})
    assert inputs == {"quarter": "2025Q2", "limit": 3}
    assert corrected == {"quarter": "2026Q3", "limit": 10}
    # nothing stated: the defaults
    inputs, corrected = ground_inputs(
        "Best sellers?", plan.inputs, {"quarter": "2025Q1", "limit": 5}
    )
    assert inputs == {} and corrected == {"quarter": "2025Q1"}


def test_a_goal_no_plan_matches_is_planned_without_asking_the_router(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    result, _ = ask([{"missing_capability": "no"}], tools, tmp_path, goal="Write a haiku on tea")
    assert result.route == "planned"
    assert result.routing is not None
    assert result.routing["reason"] == "no library plan shares a word with the goal"
    assert purposes(result) == ["plan"]


def test_routing_off_plans_freely(tools: ToolRegistry, tmp_path: Path) -> None:
    result, _ = ask([{"missing_capability": "no"}], tools, tmp_path, agent={"routing": False})
    assert result.route is None and result.routing is None
    assert purposes(result) == ["plan"]


def test_router_schema_offers_only_the_candidates_and_none() -> None:
    from dagentic.library import Library

    lib = Library(FOLDERS, Path("/nonexistent"))
    schema = router_schema([lib.get("refund_rates")])
    assert [v["properties"]["plan"] for v in schema["anyOf"]] == [
        {"const": "refund_rates"},
        {"const": "none"},
    ]
    assert schema["anyOf"][0]["properties"]["inputs"]["properties"] == {}


def test_the_trace_shows_the_route(
    tools: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGENTIC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DAGENTIC_TRACING__METRICS", "false")
    tracing = tracing_from_settings(Settings())
    route = {"plan": "revenue_by_region", "inputs": {"quarter": "2026Q2"}}
    result, _ = ask([route, PASS], tools, tmp_path, tracing=tracing)
    assert tracing is not None
    tracing.flush()

    shown = invoke("trace", result.agent_run_id)
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.stdout.splitlines() if line.startswith("route:")]
    assert lines == [
        "route: library revenue_by_region (chosen by the router; offered: "
        + ", ".join(result.routing["candidates"] if result.routing else [])
        + ")"
    ]
    analysis = json.loads(invoke("trace", result.agent_run_id, "--json").stdout)
    assert analysis["route"]["plan"] == "revenue_by_region"


FIRST = "Which customer signed up first?"
FIRST_PLAN = {
    "steps": [
        {
            "id": "first",
            "tool": "sql.query",
            "args": {"sql": "SELECT name FROM customers ORDER BY signup_date LIMIT 1"},
        }
    ]
}
FIRST_ANSWER = {
    "answer": "Ironwood Labs signed up first [first].",
    "cited_steps": ["first"],
    "complete": True,
}


@pytest.mark.parametrize("replans", [0, 2])
def test_a_library_plan_that_ran_but_gives_no_such_thing_as_asked_gives_way_to_planning(
    tools: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replans: int
) -> None:
    # customers_by_region counts customers per region: it names no customer
    shutil.copy(sample_plan("customers_by_region"), tmp_path / "plans")
    monkeypatch.setenv("DAGENTIC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DAGENTIC_TRACING__METRICS", "false")
    tracing = tracing_from_settings(Settings())
    route = {"plan": "customers_by_region", "inputs": {}}
    result, model = ask(
        [route, FIRST_PLAN, FIRST_ANSWER, PASS],
        tools,
        tmp_path,
        goal=FIRST,
        agent={"max_replans": replans},
        tracing=tracing,
    )

    assert result.succeeded, result.error
    assert purposes(result) == ["route", "plan", "answer", "verify"]
    assert (result.route, result.library_plan) == ("planned", None)
    assert result.routing is not None and result.routing["rejected"] == "customers_by_region"
    reason = (
        "library plan 'customers_by_region' ran, but it gives region, manager, customers, "
        "signed_up_that_year, year: no column of names is named for what the goal asks "
        "which of (customer, sign)"
    )
    assert result.routing["reason"] == reason
    assert [p["name"] for p in result.plans] == [
        "customers_by_region",
        "which-customer-signed-up-first",
    ]
    assert result.answer == FIRST_ANSWER["answer"]
    prompt = model.calls[1]["messages"][-1].content
    assert "How many customers each region has" not in prompt  # not an example any more
    assert tracing is not None
    tracing.flush()
    shown = invoke("trace", result.agent_run_id)
    assert [line for line in shown.stdout.splitlines() if line.startswith("route:")] == [
        f"route: planned ({reason}; offered: {', '.join(result.routing['candidates'])})"
    ]


def test_a_plan_that_cannot_take_a_value_the_goal_names_is_not_offered(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    from dagentic.library import Library
    from dagentic.routing import unserved

    lib = Library([tmp_path / "plans"], tmp_path / "saved")
    assert unserved("How many orders did the West place?", lib.get("orders_over_time")) == ["West"]
    assert unserved("Best sellers of the second quarter of 2025", lib.get("top_products")) == []
    assert unserved("Top 7 products in 2026Q1", lib.get("top_products")) == ["7"]
    # the only plan that matches cannot take "West": no router call, planning at once
    result, _ = ask(
        [{"missing_capability": "no"}],
        tools,
        tmp_path,
        goal="How many orders were placed each quarter by the West?",
    )
    assert result.routing is not None
    assert result.routing["reason"] == (
        'no library plan that matches the goal can take "West", which it names'
    )
    assert purposes(result) == ["plan"]


def test_a_plan_is_offered_only_if_it_is_about_what_the_question_asks() -> None:
    from dagentic.library import Library
    from dagentic.routing import about, asked_about

    lib = Library(FOLDERS, Path("/nonexistent"))
    goal = "Which region brought in the most revenue in 2025Q3?"
    assert asked_about(goal) == ["region", "brought"]
    assert about(goal, lib.get("revenue_by_region"))
    assert not about(goal, lib.get("top_products"))  # it speaks of products, not regions
    assert about("Rank the regions by sales.", lib.get("top_products"))  # not a question


def test_ask_at_the_command_line_says_the_route_and_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dagentic.models

    route = {"plan": "revenue_by_region", "inputs": {"quarter": "2026Q2"}}
    model = ScriptedModel([route, PASS, route, PASS])
    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model)

    shown = invoke("ask", GOAL, "--no-memory")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "route: library revenue_by_region (chosen by the router)" in lines
    assert "quarter: 2026Q2" in lines and "leading region: West" in lines

    data = json.loads(invoke("ask", GOAL, "--no-memory", "--json").stdout)
    assert (data["route"], data["library_plan"]) == ("library", "revenue_by_region")
    assert data["routing"]["inputs"] == {"quarter": "2026Q2"}


def test_an_answer_that_says_nothing_is_not_verified() -> None:
    from datetime import UTC, datetime

    from dagentic.reflection import evidence_problems
    from dagentic.result import RunResult

    now = datetime.now(UTC)
    empty = RunResult(
        run_id="r", plan="p", status="succeeded", steps={}, started_at=now, finished_at=now
    )
    assert evidence_problems("...", [], True, "goal", empty) == [
        "the answer says nothing: it has no word or number"
    ]
    assert evidence_problems("West.", [], True, "goal", empty) == []
