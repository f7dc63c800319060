"""Feedback on runs: stored with the run in the durable journal, by the library plan it is
about; bad feedback takes a plan out of routing, good ranks it higher; `dagentic feedback`
and `dagentic report` at the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest
from dagentic import Settings, ToolRegistry, load_tools
from dagentic.agent import Agent
from dagentic.durable import close_journals, open_journal
from dagentic.feedback import FeedbackError, give_feedback
from dagentic.library import library_from_settings
from dagentic.models import ScriptedModel

from tests.cli import invoke, isolate
from tests.sample_plans import sample_plan

GOAL = "What were the best-selling products in 2026Q3?"
ROUTE = {"plan": "top_products", "inputs": {"quarter": "2026Q3", "limit": 5}}
ANSWER = {
    "answer": "Smart Gadget sold best [products].",
    "cited_steps": ["products"],
    "complete": True,
}
PASS = {"passed": True, "reason": "it does"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)  # cwd: tmp_path; the journal: .dagentic/runs there
    monkeypatch.setenv("DAGENTIC_TRACING__EXPORTER", "none")
    monkeypatch.setenv("DAGENTIC_MEMORY__ENABLED", "false")
    (tmp_path / "plans").mkdir()
    for name in ("top_products", "category_revenue", "revenue_by_region"):
        shutil.copy(sample_plan(name), tmp_path / "plans")
    yield
    close_journals()


@pytest.fixture(scope="module")
def tools() -> ToolRegistry:
    return ToolRegistry([t for t in load_tools() if not t.planning_context])


def routed_run(tools: ToolRegistry) -> str:
    settings = Settings()
    agent = Agent(ScriptedModel([ROUTE, PASS]), tools, settings=settings, cache=None)
    result = anyio.run(agent.run, GOAL)
    assert result.succeeded and result.library_plan == "top_products", result.error
    return result.agent_run_id


def ranked(tools: ToolRegistry) -> list[str]:
    settings = Settings()
    journal = open_journal(settings)
    assert journal is not None
    counts = journal.store.feedback_by_plan()
    return [
        r.plan.name
        for r in library_from_settings(settings).rank(GOAL, feedback=counts, tools=tools)
    ]


def test_bad_feedback_takes_a_plan_out_of_routing_and_good_brings_it_back_higher(
    tools: ToolRegistry,
) -> None:
    run_id = routed_run(tools)
    assert ranked(tools)[0] == "top_products"
    journal = open_journal(Settings())
    assert journal is not None
    store = journal.store

    given = give_feedback(store, run_id, "bad", "  wrong quarter  ")
    assert (given.verdict, given.plan, given.note) == ("bad", "top_products", "wrong quarter")
    assert store.feedback_by_plan() == {"top_products": (0, 1)}
    assert "top_products" not in ranked(tools)

    # the same goal now goes elsewhere or to planning: the router is not offered it
    agent = Agent(ScriptedModel([{"plan": "none"}, {"missing_capability": "x"}]), tools, cache=None)
    result = anyio.run(agent.run, GOAL)
    assert result.routing is not None and "top_products" not in result.routing["candidates"]

    give_feedback(store, run_id, "good")
    give_feedback(store, run_id, "good")
    assert store.feedback_by_plan() == {"top_products": (2, 1)}
    assert ranked(tools)[0] == "top_products"

    with pytest.raises(FeedbackError) as caught:
        give_feedback(store, run_id, "meh")
    assert caught.value.message == "feedback is 'good' or 'bad', not 'meh'"
    with pytest.raises(FeedbackError) as caught:
        give_feedback(store, "nope", "good")
    assert caught.value.message == f"there is no run 'nope' in the journal {store.label}"


def test_feedback_from_the_result_and_the_agent(tools: ToolRegistry) -> None:
    settings = Settings()
    agent = Agent(ScriptedModel([ROUTE, PASS]), tools, settings=settings, cache=None)
    result = anyio.run(agent.run, GOAL)
    given = result.feedback("good", "right", settings=settings)
    assert (given.run_id, given.plan) == (result.agent_run_id, "top_products")
    again = anyio.run(agent.feedback, result.run_ids[0], "bad")  # a plan run of it: its agent run
    assert again.run_id == result.agent_run_id
    journal = open_journal(settings)
    assert journal is not None
    assert [(r[2], r[3]) for r in journal.store.feedback(result.agent_run_id)] == [
        ("good", "right"),
        ("bad", None),
    ]


def test_feedback_and_report_at_the_command_line(tools: ToolRegistry) -> None:
    run_id = routed_run(tools)
    done = invoke("feedback", run_id[:10], "bad", "--note", "not what I asked")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == (f"recorded: run {run_id} was bad (library plan 'top_products')")
    assert json.loads(invoke("feedback", run_id, "good", "--json").output)["plan"] == "top_products"
    invoke("feedback", run_id, "bad")

    wrong = invoke("feedback", run_id, "meh")
    assert wrong.exit_code == 2
    unknown = invoke("feedback", "nope", "good")
    assert unknown.exit_code == 2
    assert "error: there is no run 'nope' in the journal" in unknown.output

    report = json.loads(invoke("report", "--json").output)
    assert report["feedback"] == {
        "good": 1,
        "bad": 2,
        "by_plan": {"top_products": {"good": 1, "bad": 2}},
    }
    text = invoke("report").output
    assert "feedback" in text and "top_products" in text
    listed = invoke("plans", "list").output
    row = next(line for line in listed.splitlines() if line.startswith("top_products"))
    assert "+1 -2 (not routed)" in row
