"""Routing benchmark: goals routed to the plan library (and planned freely when no plan
fits) by `dagentic ask`'s agent, answers checked against the sample data; the same goals
with routing off, in the same run.

Run:  .venv/bin/python tests/benchmarks/bench_routing.py [--model local] [--limit N]
          [--modes on,off] [--max-wall-time S] [--off-wall-time S] [--json FILE]
          [--only covered|uncovered] [--parallel] [--shard K/N] [--merge FILE...]

On a busy machine, --parallel runs each mode in a process of its own at the same time, and
--shard K/N runs every Nth goal from the Kth (start N of them, then --merge their --json
files into one report): seconds per goal then include the shards' own contention.

The goals are below (GOALS): 34 that paraphrase the tasks of the ten library plans the
sql and web plugins ship for the sample data (revenue by region and by quarter, top
products and customers, categories, orders over time, refunds, segments, customers by
region, region news), each with the plan and inputs that answer it, and 10 that no plan covers. Each goal
holds a SQL query whose value the benchmark computes itself from the sample data
(plugins/sql/sample_data/*.csv, with DuckDB): the reference. An answer is **correct** when
it states the reference (a name word for word, ignoring case; a number in any of its usual
spellings); two uncovered goals (code, a translation) have none.

Per goal and mode the agent (dagentic.agent.Agent, every installed tool, no memory, no
journal, no caches, the library of plans/ and the plugins' sample plans with saving off)
runs the goal, and the benchmark records the route and plan taken, the inputs, the
status, whether the answer was claimed verified (the run succeeded and verification
passed), whether it is correct, the model calls and the seconds. The summary per mode
gives:
  covered_correct        share of covered goals answered correctly (target >= 0.8 with
                         routing on)
  covered_routed_right   share of covered goals routed to their plan with their inputs
  uncovered_fell_back    share of uncovered goals planned freely, not forced into a plan
  covered_rejected,      goals whose library plan ran but did not hold what they ask for
  uncovered_rejected     (dagentic.answer_type), so that they were planned freely
  wrong_verified         answers claimed verified that are wrong (target 0): a verified
                         answer that does not state its reference, or a verified answer to
                         an uncovered goal that came from a library plan
  seconds, model_calls   per goal (target: a covered goal in <= 30 s)
Routing off gives the agent --off-wall-time seconds per goal (default 60): free planning
with the embedded model takes minutes per goal on two cores, and the benchmark must end.

--model takes what `dagentic ask --model` takes (default local: the bundled Gemma 3 270M on
llama-cpp-python). The model is loaded before the first goal (its load time is reported
apart). The numbers describe this machine: run it on a quiet one.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import duckdb
from dagentic import Settings, load_tools
from dagentic.agent import Agent
from dagentic.models import Model, Models, make_models
from stats import describe, make_parser, python_version, write_results

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "plugins" / "sql" / "sample_data"
# plans/ and the plugins' plans over the sample data (explicitly: whatever the environment says)
LIBRARY = {"folders": [str(ROOT / "plans")], "plugin_plans": True, "save": False}
TABLES = ("regions", "products", "customers", "orders", "sales")
MODES = ("on", "off")
MAX_WALL_TIME = 120.0
OFF_WALL_TIME = 60.0
TARGET_CORRECT = 0.8
TARGET_SECONDS = 30.0

# -- what a reference is: one value the data gives ------------------------------------------

BY_REGION = (
    "SELECT region FROM sales WHERE quarter = ? GROUP BY region ORDER BY sum(amount) DESC LIMIT 1"
)
BEST_QUARTER = (
    "SELECT quarter FROM sales WHERE ? = 'all' OR region = ? GROUP BY quarter "
    "ORDER BY sum(amount) DESC LIMIT 1"
)
TOP_PRODUCT = (
    "SELECT p.name FROM sales AS s JOIN products AS p ON p.product_id = s.product_id "
    "WHERE s.quarter = ? GROUP BY p.name ORDER BY sum(s.amount) DESC, p.name LIMIT 1"
)
TOP_CATEGORY = (
    "SELECT p.category FROM sales AS s JOIN products AS p ON p.product_id = s.product_id "
    "WHERE s.quarter = ? GROUP BY p.category ORDER BY sum(s.amount) DESC LIMIT 1"
)
TOP_CUSTOMER = (
    "SELECT c.name FROM sales AS s JOIN orders AS o ON o.order_id = s.order_id "
    "JOIN customers AS c ON c.customer_id = o.customer_id WHERE ? = 'all' OR s.region = ? "
    "GROUP BY c.name ORDER BY sum(s.amount) DESC, c.name LIMIT 1"
)
BUSIEST = (
    "SELECT year(order_date) || 'Q' || quarter(order_date) AS q FROM orders "
    "WHERE ? = 'all' OR status = ? GROUP BY 1 ORDER BY count(*) DESC, q LIMIT 1"
)
MOST_REFUNDED = (
    "SELECT p.category FROM sales AS s JOIN orders AS o ON o.order_id = s.order_id "
    "JOIN products AS p ON p.product_id = s.product_id GROUP BY p.category ORDER BY "
    "count(DISTINCT CASE WHEN o.status = 'refunded' THEN s.order_id END) "
    "/ count(DISTINCT s.order_id) DESC LIMIT 1"
)
MOST_CUSTOMERS_SEGMENT = "SELECT segment FROM customers GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
SEGMENT_REVENUE = (
    "SELECT c.segment FROM sales AS s JOIN orders AS o ON o.order_id = s.order_id "
    "JOIN customers AS c ON c.customer_id = o.customer_id GROUP BY 1 "
    "ORDER BY sum(s.amount) DESC LIMIT 1"
)
SEGMENT_PER_ORDER = (
    "SELECT c.segment FROM sales AS s JOIN orders AS o ON o.order_id = s.order_id "
    "JOIN customers AS c ON c.customer_id = o.customer_id GROUP BY 1 "
    "ORDER BY sum(s.amount) / count(DISTINCT s.order_id) DESC LIMIT 1"
)
MOST_CUSTOMERS_REGION = (
    "SELECT r.name FROM regions AS r JOIN customers AS c ON c.region_id = r.region_id "
    "WHERE ? = 0 OR year(c.signup_date) = ? GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
)
REGION = "SELECT name FROM regions WHERE name = ?"  # the news goals: about the region asked


def goal(
    text: str, plan: str | None, inputs: dict[str, Any], sql: str | None, *params: Any
) -> dict[str, Any]:
    return {"text": text, "plan": plan, "inputs": inputs, "sql": sql, "params": list(params)}


GOALS: list[dict[str, Any]] = [
    # revenue_by_region
    goal("Which region led revenue in 2026Q2?", "revenue_by_region", {"quarter": "2026Q2"}, BY_REGION, "2026Q2"),
    goal("Rank the regions by sales for 2026Q1.", "revenue_by_region", {"quarter": "2026Q1"}, BY_REGION, "2026Q1"),
    goal("Which region brought in the most revenue in 2025Q3?", "revenue_by_region", {"quarter": "2025Q3"}, BY_REGION, "2025Q3"),
    goal("Which region had the highest revenue in the second quarter of 2025?", "revenue_by_region", {"quarter": "2025Q2"}, BY_REGION, "2025Q2"),
    # revenue_by_quarter
    goal("How has revenue changed quarter by quarter?", "revenue_by_quarter", {}, BEST_QUARTER, "all", "all"),
    goal("Show the quarterly revenue trend for the North region.", "revenue_by_quarter", {"region": "North"}, BEST_QUARTER, "North", "North"),
    goal("Which quarter had the highest revenue for the West region?", "revenue_by_quarter", {"region": "West"}, BEST_QUARTER, "West", "West"),
    # top_products
    goal("What were the best-selling products in 2026Q3?", "top_products", {"quarter": "2026Q3"}, TOP_PRODUCT, "2026Q3"),
    goal("Which products brought in the most revenue in 2025Q4?", "top_products", {"quarter": "2025Q4"}, TOP_PRODUCT, "2025Q4"),
    goal("List the top 3 products by revenue in 2026Q1.", "top_products", {"quarter": "2026Q1", "limit": 3}, TOP_PRODUCT, "2026Q1"),
    goal("Top selling products of 2025Q2?", "top_products", {"quarter": "2025Q2"}, TOP_PRODUCT, "2025Q2"),
    # category_revenue
    goal("What share of revenue did each product category have in 2026Q3?", "category_revenue", {"quarter": "2026Q3"}, TOP_CATEGORY, "2026Q3"),
    goal("Revenue by product category in 2025Q1.", "category_revenue", {"quarter": "2025Q1"}, TOP_CATEGORY, "2025Q1"),
    goal("Which product category earned the most revenue in 2025Q4?", "category_revenue", {"quarter": "2025Q4"}, TOP_CATEGORY, "2025Q4"),
    # top_customers
    goal("Who are our biggest customers by revenue?", "top_customers", {}, TOP_CUSTOMER, "all", "all"),
    goal("Who are the biggest customers in the South region?", "top_customers", {"region": "South"}, TOP_CUSTOMER, "South", "South"),
    goal("Which customer spent the most in the Central region?", "top_customers", {"region": "Central"}, TOP_CUSTOMER, "Central", "Central"),
    goal("List the top 5 customers by revenue in the East.", "top_customers", {"region": "East", "limit": 5}, TOP_CUSTOMER, "East", "East"),
    # orders_over_time
    goal("How many orders were placed in each quarter?", "orders_over_time", {}, BUSIEST, "all", "all"),
    goal("Which quarter had the most orders?", "orders_over_time", {}, BUSIEST, "all", "all"),
    goal("How many refunded orders were there in each quarter?", "orders_over_time", {"status": "refunded"}, BUSIEST, "refunded", "refunded"),
    goal("How did the number of paid orders change over time?", "orders_over_time", {"status": "paid"}, BUSIEST, "paid", "paid"),
    # refund_rates
    goal("Which product categories get refunded most often?", "refund_rates", {}, MOST_REFUNDED),
    goal("What is the refund rate of each product category?", "refund_rates", {}, MOST_REFUNDED),
    goal("Which category has the highest refund rate?", "refund_rates", {}, MOST_REFUNDED),
    # customer_segments
    goal("How many customers does each segment have?", "customer_segments", {}, MOST_CUSTOMERS_SEGMENT),
    goal("Which customer segment brings the most revenue?", "customer_segments", {}, SEGMENT_REVENUE),
    goal("Compare the customer segments by revenue per order.", "customer_segments", {}, SEGMENT_PER_ORDER),
    # customers_by_region
    goal("How many customers does each region have?", "customers_by_region", {}, MOST_CUSTOMERS_REGION, 0, 0),
    goal("Which region has the most customers?", "customers_by_region", {}, MOST_CUSTOMERS_REGION, 0, 0),
    goal("How many customers signed up in each region in 2025?", "customers_by_region", {"year": 2025}, MOST_CUSTOMERS_REGION, 2025, 2025),
    # region_news
    goal("What does the news say about the East region?", "region_news", {"region": "East"}, REGION, "East"),
    goal("Any news about the North region?", "region_news", {"region": "North"}, REGION, "North"),
    goal("Find news articles about the Central region.", "region_news", {"region": "Central"}, REGION, "Central"),
    # no plan covers these
    goal("What is the average unit price of garden products?", None, {}, "SELECT round(avg(unit_price), 2) FROM products WHERE category = 'garden'"),
    goal("How many products are in the catalogue?", None, {}, "SELECT count(*) FROM products"),
    goal("What is the most expensive product?", None, {}, "SELECT name FROM products ORDER BY unit_price DESC LIMIT 1"),
    goal("How many enterprise customers are in the West region?", None, {}, "SELECT count(*) FROM customers AS c JOIN regions AS r ON r.region_id = c.region_id WHERE c.segment = 'enterprise' AND r.name = 'West'"),
    goal("Which customer signed up first?", None, {}, "SELECT name FROM customers ORDER BY signup_date, customer_id LIMIT 1"),
    goal("Which day of the week has the most orders?", None, {}, "SELECT dayname(order_date) FROM orders GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"),
    goal("What is the price of the Smart Gadget?", None, {}, "SELECT unit_price FROM products WHERE name = 'Smart Gadget'"),
    goal("What is 17 times 23?", None, {}, "SELECT 17 * 23"),
    goal("Write a Python function that reverses a string.", None, {}, None),
    goal("Translate 'good morning' into French.", None, {}, None),
]  # fmt: skip


def references(goals: list[dict[str, Any]]) -> None:
    """Each goal's reference, computed from the sample data (``reference``; None: none)."""
    con = duckdb.connect()
    try:
        for table in TABLES:
            path = str(DATA / f"{table}.csv").replace("'", "''")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_csv_auto('{path}')")
        for item in goals:
            if item["sql"] is None:
                item["reference"] = None
                continue
            row = con.execute(item["sql"], item["params"]).fetchone()
            item["reference"] = row[0] if row else None
    finally:
        con.close()


def spellings(value: Any) -> list[str]:
    """How an answer may state ``value``: a name as itself; a number as 391, 391.0,
    1,234.5, 33% for 0.33 is not assumed (references are never shares)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        number = float(value)
        forms = {f"{number:g}", f"{number:.2f}", f"{number:,.2f}", f"{number:,.0f}"}
        if number.is_integer():
            forms |= {str(int(number)), f"{int(number):,}"}
        return sorted(forms)
    return [str(value)]


def states(answer: str | None, value: Any) -> bool:
    """Whether ``answer`` states ``value`` (a whole word or number, ignoring case)."""
    if not answer or value is None:
        return False
    text = answer.lower()
    for form in spellings(value):
        if re.search(rf"(?<![\w.]){re.escape(form.lower())}(?![\w]|\.\d)", text):
            return True
    return False


# -- the answer type check on paraphrases written for another purpose ------------------------

PARAPHRASES = Path(__file__).parent / "retrieval_sets" / "routing.yaml"


async def answer_type_on_paraphrases(tools: Any, runs_dir: str) -> dict[str, Any]:
    """The answer type check (dagentic.answer_type) on bench_retrieval's routing set
    (retrieval_sets/routing.yaml: paraphrases of the library plans' tasks, written for
    ranking, not for this check), each goal against the outputs of the plan that answers
    it, run with its defaults: the goals it rejects would be planned freely although
    their plan was right. No model."""
    import yaml
    from dagentic.answer_type import answer_misfit
    from dagentic.executor import Executor
    from dagentic.library import library_from_settings

    goals = yaml.safe_load(PARAPHRASES.read_text())["goals"]
    settings = Settings(
        runs_dir=runs_dir, cache={"enabled": False}, journal={"enabled": False}, library=LIBRARY
    )
    executor = Executor(tools, settings=settings, journal=None, tracing=None)
    library = library_from_settings(settings)
    outputs: dict[str, dict[str, Any]] = {}
    rejected = []
    for item in goals:
        name = item["plan"]
        if name not in outputs:
            result = await executor.run(library.get(name).path)
            outputs[name] = result.outputs
        misfit = answer_misfit(item["text"], outputs[name])
        if misfit is not None:
            rejected.append({"text": item["text"], "plan": name, "why": misfit})
    return {"goals": len(goals), "rejected": rejected}


# -- running ---------------------------------------------------------------------------------


def settings_for(mode: str, runs_dir: str, wall_time: float) -> Settings:
    return Settings(
        runs_dir=runs_dir,
        library=LIBRARY,
        agent={"routing": mode == "on", "max_wall_time": wall_time},
        cache={"enabled": False},
        memory={"enabled": False},
        journal={"enabled": False},
        tracing={"exporter": "none"},
    )


async def run_goal(
    item: dict[str, Any], mode: str, models: Model | Models, tools: Any, settings: Settings
) -> dict[str, Any]:
    agent = Agent(models, tools, settings=settings, journal=None, tracing=None, cache=None)
    t0 = time.perf_counter()
    result = await agent.run(item["text"])
    seconds = time.perf_counter() - t0
    verified = (
        result.succeeded
        and result.verification is not None
        and result.verification.get("passed") is True
    )
    correct = states(result.answer, item["reference"]) if item["reference"] is not None else None
    covered = item["plan"] is not None
    routed_right = (
        result.library_plan == item["plan"]
        and all(
            (result.routing or {}).get("inputs", {}).get(k) == v for k, v in item["inputs"].items()
        )
        if covered
        else None
    )
    wrong_verified = verified and (correct is False or (not covered and result.route == "library"))
    return {
        "text": item["text"],
        "mode": mode,
        "expected_plan": item["plan"],
        "reference": item["reference"],
        "route": result.route,
        "plan": result.library_plan,
        "inputs": (result.routing or {}).get("inputs"),
        "reason": (result.routing or {}).get("reason"),
        "rejected": (result.routing or {}).get("rejected"),
        "status": result.status.value,
        "failure_mode": result.error.failure_mode.value if result.error else None,
        "verified": verified,
        "correct": correct,
        "routed_right": routed_right,
        "wrong_verified": wrong_verified,
        "answer": (result.answer or "")[:400],
        "model_calls": result.usage.model_calls,
        "purposes": [c.purpose for c in result.model_calls],
        "seconds": round(seconds, 2),
    }


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    covered = [r for r in records if r["expected_plan"] is not None]
    uncovered = [r for r in records if r["expected_plan"] is None]

    def share(rows: list[dict[str, Any]], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in rows) / len(rows), 3) if rows else None

    covered_seconds = [r["seconds"] for r in covered]
    return {
        "goals": len(records),
        "covered": len(covered),
        "uncovered": len(uncovered),
        "covered_correct": share(covered, "correct"),
        "covered_correct_and_verified": (
            round(sum(bool(r["correct"] and r["verified"]) for r in covered) / len(covered), 3)
            if covered
            else None
        ),
        "covered_routed_right": share(covered, "routed_right"),
        "covered_within_target_seconds": (
            round(sum(s <= TARGET_SECONDS for s in covered_seconds) / len(covered), 3)
            if covered
            else None
        ),
        "uncovered_fell_back": (
            round(sum(r["route"] != "library" for r in uncovered) / len(uncovered), 3)
            if uncovered
            else None
        ),
        "covered_rejected": sum(bool(r.get("rejected")) for r in covered),
        "uncovered_rejected": sum(bool(r.get("rejected")) for r in uncovered),
        "uncovered_correct": share([r for r in uncovered if r["reference"] is not None], "correct"),
        "verified": sum(bool(r["verified"]) for r in records),
        "wrong_verified": sum(bool(r["wrong_verified"]) for r in records),
        "seconds_covered": describe(covered_seconds),
        "seconds_uncovered": describe([r["seconds"] for r in uncovered]),
        "model_calls_covered": describe([r["model_calls"] for r in covered]),
        "model_calls_uncovered": describe([r["model_calls"] for r in uncovered]),
        "failure_modes": dict(
            sorted(
                {
                    m: sum(r["failure_mode"] == m for r in records)
                    for m in {r["failure_mode"] for r in records if r["failure_mode"]}
                }.items()
            )
        ),
    }


async def measure(
    goals: list[dict[str, Any]],
    modes: list[str],
    make: Callable[[], Model | Models],
    *,
    wall_time: float,
    off_wall_time: float,
    echo: bool = True,
) -> dict[str, Any]:
    """Run every goal in every mode (all of one mode, then the next), with models from
    ``make`` (called once)."""
    tools = load_tools()
    t0 = time.perf_counter()
    models = make()
    main = models.main if isinstance(models, Models) else models
    load = getattr(main, "load", None)
    if callable(load):
        await anyio.to_thread.run_sync(load)
    loaded = time.perf_counter() - t0
    records: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as runs_dir:
        checked = await answer_type_on_paraphrases(tools, runs_dir)
        for mode in modes:
            settings = settings_for(mode, runs_dir, wall_time if mode == "on" else off_wall_time)
            rows = records[mode] = []
            for n, item in enumerate(goals, 1):
                row = await run_goal(item, mode, models, tools, settings)
                rows.append(row)
                if echo:
                    mark = {True: "right", False: "WRONG", None: "-"}[row["correct"]]
                    print(
                        f"[{mode} {n}/{len(goals)}] {row['seconds']:6.1f}s "
                        f"{row['model_calls']} calls {row['route'] or '-':8} "
                        f"{row['plan'] or '-':20} {row['status']:9} "
                        f"verified={row['verified']!s:5} {mark:5} {item['text']}",
                        flush=True,
                    )
    return {
        "model": main.name,
        "load_seconds": round(loaded, 2),
        "records": records,
        "answer_type": checked,
    }


def report(results: dict[str, Any]) -> None:
    print()
    print(f"model {results['model']} (loaded in {results['load_seconds']} s)")
    for mode, summary in results["summary"].items():
        secs = summary["seconds_covered"]
        calls = summary["model_calls_covered"]
        print(
            f"routing {mode}: covered correct {summary['covered_correct']} "
            f"(verified too {summary['covered_correct_and_verified']}), routed right "
            f"{summary['covered_routed_right']}, uncovered fell back "
            f"{summary['uncovered_fell_back']} ({summary['uncovered_rejected']} after their "
            f"plan ran), wrong verified {summary['wrong_verified']}, "
            f"covered seconds median {secs['median'] and round(secs['median'], 1)} "
            f"(<= {TARGET_SECONDS:g} s: {summary['covered_within_target_seconds']}), "
            f"model calls median {calls['median']}"
        )
    checked = results.get("answer_type")
    if checked:
        print(
            f"answer type check on {checked['goals']} paraphrases of their own plan "
            f"({PARAPHRASES.name}): {len(checked['rejected'])} rejected"
        )
        for item in checked["rejected"]:
            print(f"  {item['plan']}: {item['text']}")


def _merge(files: list[str], json_file: str | None) -> dict[str, Any]:
    """The results of several runs (shards, modes) as one: goals in benchmark order."""
    import json

    parts = [json.loads(Path(f).read_text()) for f in files]
    order = {g["text"]: n for n, g in enumerate(GOALS)}
    records: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for mode, rows in part["goals"].items():
            records.setdefault(mode, []).extend(rows)
    for rows in records.values():
        rows.sort(key=lambda r: order.get(r["text"], len(order)))
    results = dict(parts[0])
    results["config"] = {**parts[0]["config"], "goals": None, "merged": files}
    results["environment"]["load_average"] = [p["environment"]["load_average"] for p in parts]
    results["summary"] = {mode: summarize(rows) for mode, rows in records.items()}
    results["goals"] = records
    results["seconds"] = max(p["seconds"] for p in parts)
    report(results)
    write_results(results, json_file)
    return results


def _in_parallel(args: Any, modes: list[str]) -> dict[str, Any]:
    """Each mode in a process of its own, started together; their results merged."""
    import json
    import subprocess
    import sys

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-routing-modes-") as folder:
        children = []
        for mode in modes:
            command = [sys.executable, __file__, "--modes", mode, "--model", args.model]
            command += ["--max-wall-time", str(args.max_wall_time)]
            command += ["--off-wall-time", str(args.off_wall_time)]
            command += ["--json", str(Path(folder) / f"{mode}.json")]
            if args.limit:
                command += ["--limit", str(args.limit)]
            if args.only:
                command += ["--only", args.only]
            children.append(subprocess.Popen(command))
        for child in children:
            if child.wait() != 0:
                raise SystemExit(f"bench_routing: the {child.args[3]} run failed")
        parts = [json.loads((Path(folder) / f"{m}.json").read_text()) for m in modes]
    results = dict(parts[0])
    results["config"] = {**parts[0]["config"], "modes": modes, "parallel": True}
    results["summary"] = {m: p["summary"][m] for m, p in zip(modes, parts, strict=True)}
    results["goals"] = {m: p["goals"][m] for m, p in zip(modes, parts, strict=True)}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    print()
    report(results)
    write_results(results, args.json_file)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--model", default="local", help="As `dagentic ask --model`.")
    parser.add_argument("--limit", type=int, help="Only the first N covered and N uncovered goals.")
    parser.add_argument("--modes", default="on,off", help="on, off or on,off (default).")
    parser.add_argument(
        "--only", choices=("covered", "uncovered"), help="Only the goals a plan covers, or not."
    )
    parser.add_argument("--max-wall-time", type=float, default=MAX_WALL_TIME)
    parser.add_argument("--off-wall-time", type=float, default=OFF_WALL_TIME)
    parser.add_argument(
        "--shard",
        help="K/N: only every Nth goal from the Kth (0-based), to run a busy machine's share "
        "in N processes; --merge joins their --json files.",
    )
    parser.add_argument("--merge", nargs="+", metavar="FILE", help="Merge --json files, report.")
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="Run each mode in a process of its own, at the same time (a busy machine).",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return _merge(args.merge, args.json_file)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error("--modes takes on, off or on,off")
    goals = [dict(g) for g in GOALS]
    if args.limit:
        goals = [g for g in goals if g["plan"]][: args.limit] + [g for g in goals if not g["plan"]][
            : args.limit
        ]
    if args.only:
        goals = [g for g in goals if (g["plan"] is not None) == (args.only == "covered")]
    if args.shard:
        k, n = (int(x) for x in args.shard.split("/"))
        goals = goals[k::n]
    references(goals)
    if args.parallel and len(modes) > 1:
        return _in_parallel(args, modes)
    settings = Settings()
    t0 = time.perf_counter()
    measured = anyio.run(
        lambda: measure(
            goals,
            modes,
            lambda: make_models(settings, args.model),
            wall_time=args.max_wall_time,
            off_wall_time=args.off_wall_time,
        )
    )
    results = {
        "model": measured["model"],
        "load_seconds": measured["load_seconds"],
        "config": {
            "goals": len(goals),
            "modes": modes,
            "max_wall_time": args.max_wall_time,
            "off_wall_time": args.off_wall_time,
        },
        "environment": {
            "python": python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "summary": {mode: summarize(rows) for mode, rows in measured["records"].items()},
        "goals": measured["records"],
        "answer_type": measured["answer_type"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    report(results)
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
