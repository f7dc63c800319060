"""SQL benchmark: the guard's overhead per query, next to DuckDB's time and the whole tool.

Run:  .venv/bin/python tests/benchmarks/bench_sql.py [--repeat 200] [--generated] [--json FILE]

One realistic query of about 1.4 KB (three CTEs, four joins, CASE, FILTER, two window
functions, ORDER BY, LIMIT) over the bundled sample data (plugins/sql/sample_data: 4,120
sales lines), or over a generated copy of its schema with 100,000 sales lines when the
sample is not there or with --generated. Each workload runs a few untimed times, then
--repeat timed times (p50 and p95):
  guard         check_sql(query): sqlglot parse, checks and DuckDB SQL out (layer 1 alone)
  duckdb        the guarded query on the engine's DuckDB connection, every row fetched
  tool          the whole sql.query call: guard, engine worker thread, rows as JSON objects
  tool-trivial  sql.query of SELECT 42: the tool's fixed cost
  plan-step     a one-step plan running the query on dagentic.Executor (validated once)

Target on the 2-core reference machine: guard p50 <= 2 ms.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import duckdb
from dagentic import Executor, Plan, Settings, Step, ToolContext, compile_plan, load_tools
from dagentic.plugins.sql import SAMPLE_DATA, engine_for, query
from dagentic.plugins.sql.guard import check_sql
from stats import latency_line, make_parser, python_version, summary, verdict, write_results

TARGET_GUARD_P50_MS = 2.0
WARMUP = 3
GENERATED_SALES = 100_000

QUERY = """\
WITH settled AS (
    SELECT o.order_id, o.customer_id, o.order_date, o.status
    FROM orders AS o
    WHERE o.status IN ('paid', 'refunded') AND o.order_date >= DATE '2025-01-01'
),
lines AS (
    SELECT s.order_id, s.region, s.quarter, p.category, s.quantity, s.amount,
           CASE WHEN s.amount >= 500 THEN 'large'
                WHEN s.amount >= 100 THEN 'medium'
                ELSE 'small' END AS size_band
    FROM sales AS s
    JOIN products AS p ON p.product_id = s.product_id
),
by_group AS (
    SELECT l.region, l.quarter, c.segment, l.category,
           sum(l.amount) AS revenue, sum(l.quantity) AS units,
           count(DISTINCT l.order_id) AS orders,
           sum(CASE WHEN st.status = 'refunded' THEN l.amount ELSE 0 END) AS refunded,
           count(*) FILTER (WHERE l.size_band = 'large') AS large_lines
    FROM lines AS l
    JOIN settled AS st ON st.order_id = l.order_id
    JOIN customers AS c ON c.customer_id = st.customer_id
    JOIN regions AS r ON r.name = l.region
    GROUP BY l.region, l.quarter, c.segment, l.category
)
SELECT region, quarter, segment, category, revenue, units, orders, refunded, large_lines,
       rank() OVER (PARTITION BY quarter ORDER BY revenue DESC) AS revenue_rank,
       round(revenue / sum(revenue) OVER (PARTITION BY quarter), 4) AS share
FROM by_group
WHERE revenue > 0
ORDER BY quarter, revenue_rank
LIMIT 100
"""


def generate(folder: Path, sales: int) -> None:
    """The sample's five tables, same columns, with ``sales`` sales lines, as CSV files."""
    orders, customers = sales // 2, max(sales // 50, 10)
    tables = {
        "regions": "SELECT i + 1 AS region_id, ['North', 'South', 'East', 'West', 'Central'][i"
        " + 1] AS name, 'Manager ' || i AS manager FROM range(5) AS t(i)",
        "products": "SELECT i + 1 AS product_id, 'Product ' || i AS name, ['widgets', "
        "'gadgets', 'tools', 'electronics', 'garden', 'office'][i % 6 + 1] AS "
        "category, round(3.49 + (i * 37 % 197), 2) AS unit_price "
        "FROM range(40) AS t(i)",
        "customers": f"SELECT i + 1 AS customer_id, 'Customer ' || i AS name, i % 5 + 1 AS "
        f"region_id, ['consumer', 'business', 'enterprise'][i % 3 + 1] AS "
        f"segment, DATE '2023-01-01' + (i % 1200)::INTEGER AS signup_date "
        f"FROM range({customers}) AS t(i)",
        "orders": f"SELECT i + 1 AS order_id, i * 7 % {customers} + 1 AS customer_id, "
        f"DATE '2025-01-01' + (i * 638 // {orders})::INTEGER AS order_date, "
        f"['paid', 'paid', 'paid', 'refunded', 'pending'][i % 5 + 1] AS status "
        f"FROM range({orders}) AS t(i)",
        "sales": f"SELECT i // 2 + 1 AS order_id, i * 13 % 40 + 1 AS product_id, "
        f"['North', 'South', 'East', 'West', 'Central'][(i // 2 * 7 % {customers}) "
        f"% 5 + 1] AS region, '2025Q' || (i % 4 + 1) AS quarter, i % 4 + 1 AS "
        f"quantity, round((i % 4 + 1) * (3.49 + (i * 13 % 40 * 37 % 197)), 2) AS "
        f"amount FROM range({sales}) AS t(i)",
    }
    with duckdb.connect() as con:
        for name, select in tables.items():
            con.execute(f"COPY ({select}) TO '{folder / (name + '.csv')}' (HEADER, DELIMITER ',')")


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    gc.collect()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


async def timed_async(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    for _ in range(WARMUP):
        await fn()
    gc.collect()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return times


def raw_connection(engine: Any) -> duckdb.DuckDBPyConnection:
    """A connection built as the engine builds its own in its process, to time DuckDB alone."""
    from dagentic.plugins.sql._worker import Database

    sources = {n: {"path": str(s.path)} for n, s in engine.sources.items()}
    spill = tempfile.mkdtemp(prefix="bench-sql-")
    return Database(
        sources, roots=None, memory_limit="512MB", threads=2, temp_directory=spill
    ).connection


async def measure(settings: Settings, repeat: int) -> dict[str, Any]:
    engine = await engine_for(settings)
    connection = raw_connection(engine)
    context = ToolContext("bench", "sql", 1, settings)
    guarded = check_sql(QUERY, tables=engine.tables, writable=engine.writable)

    def guard() -> None:
        check_sql(QUERY, tables=engine.tables, writable=engine.writable)

    def execute() -> int:
        cursor = connection.cursor()
        try:
            return len(cursor.execute(guarded.sql).fetchall())
        finally:
            cursor.close()

    async def tool() -> dict[str, Any]:
        result = await query.fn(sql=QUERY, context=context)
        if result["truncated"] or not result["rows"]:
            raise RuntimeError(f"sql.query returned an unexpected result: {result!r:.200}")
        return result

    async def trivial() -> None:
        result = await query.fn(sql="SELECT 42 AS answer", context=context)
        if result["rows"] != [{"answer": 42}]:
            raise RuntimeError(f"SELECT 42 returned {result!r}")

    tools = load_tools()
    executor = Executor(tools, settings=settings)
    compiled = compile_plan(
        Plan(name="bench-sql", steps=[Step(id="q", tool="sql.query", args={"sql": QUERY})]), tools
    )

    async def plan_step() -> None:
        result = await executor.run(compiled)
        if not result.succeeded:
            raise RuntimeError(f"the plan failed: {result.error}")

    cursor = connection.cursor()
    try:
        sales = cursor.execute("SELECT count(*) FROM sales").fetchone()
    finally:
        cursor.close()
    rows = (await tool())["row_count"]
    return {
        "query": {
            "bytes": len(QUERY.encode()),
            "rows_returned": rows,
            "sales_rows": sales[0] if sales else 0,
        },
        "guard": summary(timed(guard, repeat)),
        "duckdb": summary(timed(execute, repeat)),
        "tool": summary(await timed_async(tool, repeat)),
        "tool-trivial": summary(await timed_async(trivial, repeat)),
        "plan-step": summary(await timed_async(plan_step, repeat)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=200, help="Timed runs per workload.")
    parser.add_argument("--quick", action="store_true", help="5 runs each (smoke test).")
    parser.add_argument(
        "--generated",
        action="store_true",
        help=f"Use {GENERATED_SALES:,} generated sales lines, not the sample.",
    )
    args = parser.parse_args(argv)
    repeat = 5 if args.quick else args.repeat

    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        if args.generated or not (SAMPLE_DATA / "sales.csv").exists():
            generate(Path(tmp), GENERATED_SALES)
            data, sources = "generated", {"bench": {"path": tmp}}
        else:
            data, sources = "sample", {}
        # Defaults, but blind to any dagentic.toml or DAGENTIC_* variables around it.
        settings = Settings(
            _env_prefix="DAGENTIC_BENCH_UNUSED_",  # type: ignore[call-arg]
            sql={"sources": sources},
            tracing={"exporter": "none"},
        )
        results = anyio.run(measure, settings, repeat, backend="asyncio")
    results["query"]["data"] = data
    guard_p50 = results["guard"]["p50_ms"]
    results["guard_share_of_tool"] = guard_p50 / results["tool"]["p50_ms"]
    results["targets"] = {
        "guard_p50_ms": {
            "value": guard_p50,
            "target": TARGET_GUARD_P50_MS,
            "met": guard_p50 <= TARGET_GUARD_P50_MS,
        }
    }

    q = results["query"]
    print(
        f"sql benchmark ({repeat} runs each, Python {python_version()}, DuckDB "
        f"{duckdb.__version__}; {q['bytes']} B query returning {q['rows_returned']} rows "
        f"over {q['sales_rows']:,} sales lines of {data} data)"
    )
    for name in ("guard", "duckdb", "tool", "tool-trivial", "plan-step"):
        print(latency_line(name, results[name], width=13, digits=3))
    print(f"  guard share of the tool's p50: {results['guard_share_of_tool']:.0%}")
    for key, target in results["targets"].items():
        print(
            f"  target {key}: {target['value']:.3f} vs {target['target']} -> "
            f"{verdict(target['met'])}"
        )
    write_results(results, args.json_file, echo=True)
    return results


if __name__ == "__main__":
    main()
