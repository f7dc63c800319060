"""Plan folders that plugins ship (``register_plan_folders``): the sql and web plugins' plans
over their sample data join the library in any working directory, after the user's own
folders, and only while that data is the one in use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import (
    PluginError,
    Settings,
    ToolRegistry,
    load_plan,
    load_tools,
    run_plan,
)
from dagentic.agent import Agent
from dagentic.library import library_from_settings
from dagentic.models import ScriptedModel
from dagentic.plugin_manager import load_plan_folders, make_plugin_manager
from dagentic.plugins import sql, web
from dagentic.subplans import plan_folders

from tests.blind import blind_settings
from tests.cli import invoke, isolate
from tests.runtime.test_plugins import make_plugin
from tests.sample_plans import sample_plan

SQL_PLANS = sorted(p.stem for p in sql.SAMPLE_PLANS.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)  # an empty working directory: no plans/ of its own
    monkeypatch.delenv("DAGENTIC_LIBRARY__PLUGIN_PLANS")  # as a user has it: the default


def settings(**values: Any) -> Settings:
    """Blind settings with the plugins' plans in the library, as by default."""
    values["library"] = {"plugin_plans": True, **values.get("library", {})}
    return blind_settings(**values)


@pytest.fixture(scope="module")
def tools() -> ToolRegistry:
    return ToolRegistry([t for t in load_tools() if not t.planning_context])


def test_plugins_add_plan_folders_after_the_configured_ones_unless_turned_off(
    tmp_path: Path,
) -> None:
    def first(settings: Any) -> list[Path]:  # takes the settings
        return [tmp_path / "a", tmp_path / "shared"]

    def second() -> list[Any]:  # does not: hooks may leave arguments out
        return [str(tmp_path / "b"), tmp_path / "shared"]

    plugins = [
        make_plugin("one", register_plan_folders=first),
        make_plugin("two", register_plan_folders=second),
    ]
    pm = make_plugin_manager(plugins, use_entry_points=False)
    on = settings()
    assert load_plan_folders(on, pm) == [tmp_path / "a", tmp_path / "shared", tmp_path / "b"]
    off = settings(library={"plugin_plans": False})
    assert load_plan_folders(off, pm) == []


def test_a_plugin_that_returns_no_path_or_raises_is_named() -> None:
    def number() -> list[Any]:
        return [42]

    def broken() -> list[Path]:
        raise OSError("disk gone")

    for hook, message in [
        (
            number,
            "plugin 'bad': register_plan_folders() returned 42, which is not a folder's path; "
            "return pathlib.Path objects",
        ),
        (broken, "plugin 'bad': register_plan_folders() raised OSError: disk gone"),
    ]:
        pm = make_plugin_manager(
            [make_plugin("bad", register_plan_folders=hook)], use_entry_points=False
        )
        with pytest.raises(PluginError) as caught:
            load_plan_folders(settings(), pm)
        assert str(caught.value) == message
        assert caught.value.fields["plugin"] == "bad"


def test_the_sample_plans_are_offered_only_while_their_data_is_the_one_in_use(
    tmp_path: Path,
) -> None:
    (tmp_path / "mine.csv").write_text("a\n1\n", encoding="utf-8")
    default = plan_folders(settings())
    assert default == [Path("plans"), sql.SAMPLE_PLANS, web.SAMPLE_PLANS]
    own_data = settings(sql={"sources": {"mine": {"path": str(tmp_path / "mine.csv")}}})
    assert plan_folders(own_data) == [Path("plans"), web.SAMPLE_PLANS]
    own_news = settings(web={"local": {"paths": [str(tmp_path)]}})
    assert plan_folders(own_news) == [Path("plans"), sql.SAMPLE_PLANS]
    searxng = settings(web={"backend": "searxng", "searxng": {"url": "http://127.0.0.1:1"}})
    assert plan_folders(searxng) == [Path("plans"), sql.SAMPLE_PLANS]
    none = settings(library={"folders": [], "plugin_plans": False})
    assert plan_folders(none) == []


def test_an_empty_working_directory_lists_the_plugins_plans(tmp_path: Path) -> None:
    listed = json.loads(invoke("plans", "list", "--json").output)
    plans = {p["name"]: p for p in listed["plans"]}
    assert sorted(plans) == sorted([*SQL_PLANS, "region_news"])
    assert len(SQL_PLANS) == 10
    assert listed["problems"] == []
    assert plans["revenue_by_region"]["path"] == str(sql.SAMPLE_PLANS / "revenue_by_region.yaml")
    assert {p["source"] for p in plans.values()} == {"folder"}

    refused = invoke("plans", "forget", "top_products")
    assert refused.exit_code == 2
    assert (
        f"error: plan 'top_products' is a file of plan folder {sql.SAMPLE_PLANS}, not a saved "
        f"plan: delete or move {sql.SAMPLE_PLANS / 'top_products.yaml'} itself, or leave its "
        "folder out (library.folders; library.plugin_plans for a plugin's plans)"
    ) in " ".join(refused.output.split())

    off = invoke("plans", "list", env={"DAGENTIC_LIBRARY__PLUGIN_PLANS": "false"})
    assert off.exit_code == 0
    assert off.output.startswith("the library is empty: no plan in plans or ")


def test_a_plan_of_your_own_folder_wins_over_a_plugins_plan_of_the_same_name(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    (tmp_path / "plans").mkdir()
    mine = sample_plan("top_products").read_text(encoding="utf-8")
    mine = mine.replace("goal: ", "goal: Mine - ", 1)
    (tmp_path / "plans" / "top_products.yaml").write_text(mine, encoding="utf-8")
    library = library_from_settings(settings())
    assert library.get("top_products").path == Path("plans") / "top_products.yaml"
    assert library.get("top_products").plan.goal is not None
    assert library.get("top_products").plan.goal.startswith("Mine - ")
    assert library.get("revenue_by_region").path == sql.SAMPLE_PLANS / "revenue_by_region.yaml"


def test_a_step_names_a_plugins_plan_from_any_working_directory(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    (tmp_path / "compare.yaml").write_text(
        """\
version: 1
name: compare
steps:
  - id: q2
    plan: revenue_by_region
    inputs: {quarter: "2026Q2"}
  - id: changes
    plan: quarter_over_quarter
    inputs: {before: "2026Q1", after: "2026Q2"}
outputs:
  leader: ${{ steps.q2.output.leading_region }}
  changed: ${{ steps.changes.output.leader_changed }}
""",
        encoding="utf-8",
    )
    compiled = load_plan(tmp_path / "compare.yaml", tools)
    result = anyio.run(lambda: run_plan(compiled, tools=tools, settings=settings()))
    assert result.succeeded, result.error
    assert result.outputs["leader"] == "West"
    assert isinstance(result.outputs["changed"], bool)


def test_ask_routes_to_a_plugins_plan_from_an_empty_working_directory(
    tools: ToolRegistry,
) -> None:
    route = {"plan": "revenue_by_region", "inputs": {"quarter": "2026Q2"}}
    model = ScriptedModel([route, {"passed": True, "reason": "it does"}])
    agent = Agent(model, tools, settings=settings(), journal=None, tracing=None, cache=None)
    result = anyio.run(agent.run, "Which region led revenue in 2026Q2?")
    assert result.succeeded, result.error
    assert (result.route, result.library_plan) == ("library", "revenue_by_region")
    assert result.outputs["leading_region"] == "West"
    assert [c.purpose for c in result.model_calls] == ["route", "verify"]
