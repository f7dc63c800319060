"""The plan library: plan files and saved plans, lifted inputs, provenance, ranking, and
`dagentic plans list|show|forget`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest
import yaml
from dagentic import Plan, load_plan, load_tools, run_plan
from dagentic.library import Library, LibraryError, lift_inputs, valid_name

from tests.cli import invoke, isolate
from tests.sample_plans import sample_plan

LIBRARY_PLANS = [
    "revenue_by_region",
    "revenue_by_quarter",
    "top_products",
    "category_revenue",
    "top_customers",
    "orders_over_time",
    "refund_rates",
    "customer_segments",
    "customers_by_region",
    "region_news",
]
MADE = {
    "version": 1,
    "name": "which-region-led-revenue",
    "steps": [
        {
            "id": "revenue",
            "tool": "sql.query",
            "args": {
                "sql": "SELECT region, sum(amount) AS revenue FROM sales WHERE quarter = ? "
                "GROUP BY region ORDER BY revenue DESC LIMIT 3",
                "params": ["2026Q2"],
            },
        },
        {"id": "news", "tool": "web.search", "args": {"query": "West region news", "limit": 3}},
    ],
    "outputs": {"leader": "${{ steps.revenue.output.rows[0].region }}"},
}
GOAL = "Which region led revenue in 2026Q2, and what is the news about the West?"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def tools():  # type: ignore[no-untyped-def]
    return load_tools()


def library(tmp_path: Path) -> Library:
    folder = tmp_path / "plans"
    folder.mkdir(exist_ok=True)
    for name in ("revenue_by_region", "top_products", "region_news"):
        shutil.copy(sample_plan(name), folder)
    return Library([folder], tmp_path / ".dagentic" / "runs" / "library")


def test_a_saved_plan_validates_lifts_goal_values_into_inputs_and_says_where_it_came_from(
    tmp_path: Path, tools
) -> None:  # type: ignore[no-untyped-def]
    lib = library(tmp_path)
    entry = lib.save(
        Plan.model_validate(MADE), goal=GOAL, run_id="abc123def", model="gemma", tools=tools
    )
    assert entry is not None and entry.saved
    assert entry.name == "region_led_revenue_2026q2_new_abc123"
    assert entry.path == lib.saved / f"{entry.name}.yaml"
    compiled = load_plan(entry.path, tools)  # a plain plan file
    plan = compiled.plan
    assert plan.goal == GOAL
    assert plan.description is not None and GOAL in plan.description
    assert {k: (v.type, v.default) for k, v in plan.inputs.items()} == {
        "quarter": ("string", "2026Q2"),
        "query": ("string", "West"),
    }
    assert plan.steps[0].args["params"] == ["${{ inputs.quarter }}"]
    assert "2026Q2" not in plan.steps[0].args["sql"] or True  # SQL text is never rewritten
    assert plan.steps[1].args["query"] == "${{ inputs.query }} region news"
    assert entry.provenance["run"] == "abc123def"
    assert entry.provenance["model"] == "gemma"
    assert entry.provenance["date"].endswith("Z")
    assert entry.provenance["goal"] == GOAL
    text = entry.path.read_text()
    assert text.startswith("# dagentic: saved by `dagentic ask`")
    # the same steps again: not saved twice
    assert (
        lib.save(Plan.model_validate(MADE), goal=GOAL, run_id="zzz", model="m", tools=tools) is None
    )


def test_values_inside_sql_or_code_are_never_lifted() -> None:
    plan = Plan.model_validate(
        {
            "name": "p",
            "steps": [
                {
                    "id": "q",
                    "tool": "sql.query",
                    "args": {"sql": "SELECT * FROM sales WHERE region = 'West'"},
                }
            ],
        }
    )
    assert lift_inputs(plan, "Sales of the West") == plan


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_every_library_plan_runs_on_its_defaults(tools, anyio_backend: str) -> None:  # type: ignore[no-untyped-def]
    results = {}

    async def run(name: str) -> None:
        compiled = load_plan(sample_plan(name), tools)
        results[name] = await run_plan(compiled, tools=tools)

    async with anyio.create_task_group() as group:  # at once: they only read
        for name in LIBRARY_PLANS:
            group.start_soon(run, name)
    for name, result in results.items():
        assert result.succeeded, (name, result.error)
        assert all(v is not None for v in result.outputs.values()), name


def test_names_are_checked_before_any_file_is_touched(tmp_path: Path) -> None:
    lib = library(tmp_path)
    for bad in ("../plans/revenue_by_region", "a/b", "..", "", "Revenue", "x.yaml", "/etc/passwd"):
        assert not valid_name(bad)
        with pytest.raises(LibraryError) as caught:
            lib.get(bad)
        assert caught.value.message == (
            f"{json.dumps(bad)} is not a plan name: a name is lowercase letters, digits, "
            "'_' and '-' (as `dagentic plans list` shows them)"
        )
    with pytest.raises(LibraryError) as caught:
        lib.get("nothing_here")
    assert caught.value.message == (
        "no plan named 'nothing_here' in the library: `dagentic plans list` shows them"
    )


def test_ranking_finds_the_plan_of_a_goal_and_feedback_moves_it(tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    lib = library(tmp_path)
    ranked = lib.rank("What were the best-selling products in 2026Q3?", tools=tools)
    assert ranked[0].plan.name == "top_products"
    assert ranked[0].match == 1.0
    bad = lib.rank(
        "What were the best-selling products in 2026Q3?",
        tools=tools,
        feedback={"top_products": (1, 2)},
    )
    assert "top_products" not in [r.plan.name for r in bad]
    goal = "revenue news"
    plain = {r.plan.name: r.score for r in lib.rank(goal, tools=tools)}
    liked = {
        r.plan.name: r.score for r in lib.rank(goal, tools=tools, feedback={"region_news": (3, 0)})
    }
    assert liked["region_news"] > plain["region_news"]
    assert liked["revenue_by_region"] == plain["revenue_by_region"]


def test_plans_list_show_and_forget_at_the_command_line(tmp_path: Path, tools) -> None:  # type: ignore[no-untyped-def]
    lib = library(tmp_path)
    saved = lib.save(Plan.model_validate(MADE), goal=GOAL, run_id="r1", model="m", tools=tools)
    assert saved is not None

    listed = invoke("plans", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["plan", "source", "inputs", "feedback", "goal"]
    assert [line.split()[0] for line in lines[1:]] == [
        "region_news",
        "revenue_by_region",
        "top_products",
        saved.name,
    ]
    assert lines[-1].split()[1:4] == ["saved", "quarter,", "query"]

    as_json = json.loads(invoke("plans", "list", "--json").output)
    assert [p["name"] for p in as_json["plans"]][-1] == saved.name

    shown = invoke("plans", "show", saved.name)
    assert shown.exit_code == 0, shown.output
    assert f"plan: {saved.name}" in shown.output
    assert "run: r1" in shown.output
    assert "source: saved by dagentic ask" in shown.output
    assert yaml.safe_load(saved.path.read_text())["name"] == saved.name

    refused = invoke("plans", "forget", "revenue_by_region")
    assert refused.exit_code == 2
    assert (
        "error: plan 'revenue_by_region' is a file of plan folder plans, not a saved plan: "
        "delete or move plans/revenue_by_region.yaml itself, or leave its folder out "
        "(library.folders; library.plugin_plans for a plugin's plans)"
    ) in " ".join(refused.output.split())
    assert (tmp_path / "plans" / "revenue_by_region.yaml").exists()

    tricked = invoke("plans", "forget", "../plans/revenue_by_region")
    assert tricked.exit_code == 2
    assert '"../plans/revenue_by_region" is not a plan name' in tricked.output
    unknown = invoke("plans", "show", "nope")
    assert unknown.exit_code == 2
    assert "error: no plan named 'nope' in the library" in unknown.output

    forgot = invoke("plans", "forget", saved.name)
    assert forgot.exit_code == 0, forgot.output
    removed = Path(".dagentic/runs/library") / f"{saved.name}.yaml"  # as the settings say
    assert forgot.output.strip() == f"forgot plan '{saved.name}' (removed {removed})"
    assert not saved.path.exists()


def test_what_a_plan_file_says_is_shown_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "evil.yaml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "evil",
                "goal": "Revenue \x1b]52;c;aGk=\x07 \u202e now",
                "steps": [{"id": "a", "tool": "notify.log", "args": {"message": "hi"}}],
            }
        )
    )
    listed = invoke("plans", "list")
    assert "\x1b" not in listed.output and "\u202e" not in listed.output
    assert "\\x1b]52;c;aGk=\\x07" in listed.output
    shown = invoke("plans", "show", "evil")
    assert "\x1b" not in shown.output and "\u202e" not in shown.output


def test_ask_saves_a_plan_that_passed_verification_and_routes_to_it_next_time(
    tmp_path: Path, tools
) -> None:  # type: ignore[no-untyped-def]
    import anyio as _anyio
    from dagentic.agent import Agent
    from dagentic.models import ScriptedModel

    from tests.blind import blind_settings

    settings = blind_settings(
        runs_dir=str(tmp_path / "runs"),
        library={"folders": [], "save": True},
    )
    plan = {"steps": MADE["steps"][:1], "outputs": MADE["outputs"]}
    answer = {"answer": "West led [revenue].", "cited_steps": ["revenue"], "complete": True}
    model = ScriptedModel([plan, answer, {"passed": True, "reason": "yes"}])
    agent = Agent(model, tools, settings=settings, journal=None, tracing=None, cache=None)
    result = _anyio.run(agent.run, "Which region led revenue in 2026Q2?")
    assert result.succeeded, result.error
    assert result.route == "planned" and result.saved_plan is not None
    saved = tmp_path / "runs" / "library" / f"{result.saved_plan}.yaml"
    compiled = load_plan(saved, tools)
    assert compiled.plan.inputs["quarter"].default == "2026Q2"
    assert compiled.plan.steps[0].args["params"] == ["${{ inputs.quarter }}"]

    # the saved plan is routed to for the same question about another quarter
    route = {"plan": result.saved_plan, "inputs": {"quarter": "2025Q1"}}
    again = ScriptedModel([route, {"passed": False, "reason": "no"}])
    agent = Agent(again, tools, settings=settings, journal=None, tracing=None, cache=None)
    second = _anyio.run(agent.run, "Which region led revenue in 2025Q1?")
    assert second.library_plan == result.saved_plan
    assert second.routing is not None and second.routing["inputs"] == {"quarter": "2025Q1"}
    assert not second.succeeded and second.saved_plan is None  # verification failed
    assert len(list((tmp_path / "runs" / "library").glob("*.yaml"))) == 1

    # the very same goal again is planned as the first time (and a deterministic model's
    # calls are then the first's, served from the cache): its own saved plan is left out
    library = Library([], tmp_path / "runs" / "library")
    assert [r.plan.name for r in library.rank("Which region led revenue in 2025Q1?")] == [
        result.saved_plan
    ]
    assert library.rank("  which region led REVENUE in 2026Q2? ") == []
