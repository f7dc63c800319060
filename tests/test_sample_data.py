"""The retail sample data of the SQL tools: generated, consistent, and telling its story.

The CSV files in ``plugins/sql/sample_data/`` must be exactly what
``scripts/make_sample_data.py`` writes, and the facts its README tells must hold.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "plugins" / "sql" / "sample_data"
SCRIPT = ROOT / "scripts" / "make_sample_data.py"
TABLES = ["regions", "products", "customers", "orders", "sales"]
QUARTERS = ["2025Q1", "2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3"]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for table in TABLES:
        path = str(DATA / f"{table}.csv").replace("'", "''")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_csv_auto('{path}')")
    yield con
    con.close()


def _rows(db: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple]:
    return db.execute(sql, list(params)).fetchall()


def _one(db: duckdb.DuckDBPyConnection, sql: str, *params: object) -> object:
    return _rows(db, sql, *params)[0][0]


# -- the files are the generator's output ------------------------------------------------


def test_the_files_are_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in DATA.glob("*.csv")) == sorted(f"{t}.csv" for t in TABLES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.csv" for t in TABLES)
    for table in TABLES:
        assert (tmp_path / f"{table}.csv").read_bytes() == (DATA / f"{table}.csv").read_bytes(), (
            f"plugins/sql/sample_data/{table}.csv differs from what the generator writes; "
            "run `python scripts/make_sample_data.py`"
        )


def test_the_generator_is_deterministic_and_fast(tmp_path: Path) -> None:
    generator = _load_generator()
    started = time.perf_counter()
    counts = generator.generate(tmp_path / "a")
    elapsed = time.perf_counter() - started
    generator.generate(tmp_path / "b")
    assert elapsed < 2.0, f"the generator took {elapsed:.2f} s"
    assert counts == {f"{t}.csv": _count_lines(tmp_path / "a" / f"{t}.csv") for t in TABLES}
    for table in TABLES:
        name = f"{table}.csv"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) - 1  # without the header


# -- shape ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "low", "high"),
    [
        ("regions", 5, 5),
        ("products", 35, 45),
        ("customers", 250, 350),
        ("orders", 1800, 2200),
        ("sales", 3500, 4500),
    ],
)
def test_row_counts_are_in_range(
    db: duckdb.DuckDBPyConnection, table: str, low: int, high: int
) -> None:
    assert low <= _one(db, f"SELECT count(*) FROM {table}") <= high


def test_the_readme_states_the_row_counts(db: duckdb.DuckDBPyConnection) -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    documented = {
        m[1]: int(m[2]) for m in re.finditer(r"^\| `(\w+)\.csv` \| (\d+) \|", readme, re.MULTILINE)
    }
    assert documented == {t: _one(db, f"SELECT count(*) FROM {t}") for t in TABLES}


def test_columns_and_types(db: duckdb.DuckDBPyConnection) -> None:
    def columns(table: str) -> list[tuple[str, str]]:
        return [(name, kind) for name, kind, *_ in _rows(db, f"DESCRIBE {table}")]

    assert columns("regions") == [
        ("region_id", "BIGINT"),
        ("name", "VARCHAR"),
        ("manager", "VARCHAR"),
    ]
    assert columns("products") == [
        ("product_id", "BIGINT"),
        ("name", "VARCHAR"),
        ("category", "VARCHAR"),
        ("unit_price", "DOUBLE"),
    ]
    assert columns("customers") == [
        ("customer_id", "BIGINT"),
        ("name", "VARCHAR"),
        ("region_id", "BIGINT"),
        ("segment", "VARCHAR"),
        ("signup_date", "DATE"),
    ]
    assert columns("orders") == [
        ("order_id", "BIGINT"),
        ("customer_id", "BIGINT"),
        ("order_date", "DATE"),
        ("status", "VARCHAR"),
    ]
    assert columns("sales") == [
        ("order_id", "BIGINT"),
        ("product_id", "BIGINT"),
        ("region", "VARCHAR"),
        ("quarter", "VARCHAR"),
        ("quantity", "BIGINT"),
        ("amount", "DOUBLE"),
    ]


def test_domains(db: duckdb.DuckDBPyConnection) -> None:
    assert [r[0] for r in _rows(db, "SELECT name FROM regions ORDER BY region_id")] == [
        "North",
        "South",
        "East",
        "West",
        "Central",
    ]
    assert {r[0] for r in _rows(db, "SELECT DISTINCT category FROM products")} == {
        "widgets",
        "gadgets",
        "tools",
        "electronics",
        "garden",
        "office",
    }
    assert {r[0] for r in _rows(db, "SELECT DISTINCT segment FROM customers")} == {
        "consumer",
        "business",
        "enterprise",
    }
    assert {r[0] for r in _rows(db, "SELECT DISTINCT status FROM orders")} == {
        "paid",
        "refunded",
        "pending",
    }
    assert [r[0] for r in _rows(db, "SELECT DISTINCT quarter FROM sales ORDER BY 1")] == QUARTERS
    low, high = _rows(db, "SELECT min(order_date), max(order_date) FROM orders")[0]
    assert (str(low), str(high)) == ("2025-01-01", "2026-09-30")
    assert _one(db, "SELECT count(*) FROM sales WHERE quantity < 1 OR amount <= 0") == 0
    assert _one(db, "SELECT count(*) FROM products WHERE unit_price <= 0") == 0
    # Money has at most two decimals, in the file itself.
    for table, column in [("products", "unit_price"), ("sales", "amount")]:
        with (DATA / f"{table}.csv").open(newline="", encoding="utf-8") as f:
            values = [row[column] for row in csv.DictReader(f)]
        assert all(re.fullmatch(r"\d+\.\d\d", value) for value in values), table


# -- keys and consistency ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("regions", "region_id"),
        ("regions", "name"),
        ("products", "product_id"),
        ("products", "name"),
        ("customers", "customer_id"),
        ("orders", "order_id"),
        ("sales", "order_id, product_id"),
    ],
)
def test_keys_are_unique(db: duckdb.DuckDBPyConnection, table: str, key: str) -> None:
    assert _one(db, f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}") == 0
    assert _one(db, f"SELECT count(*) FROM {table} WHERE ({key}) IS NULL") == 0


@pytest.mark.parametrize(
    ("child", "column", "parent", "key"),
    [
        ("sales", "order_id", "orders", "order_id"),
        ("sales", "product_id", "products", "product_id"),
        ("sales", "region", "regions", "name"),
        ("orders", "customer_id", "customers", "customer_id"),
        ("customers", "region_id", "regions", "region_id"),
    ],
)
def test_referential_integrity(
    db: duckdb.DuckDBPyConnection, child: str, column: str, parent: str, key: str
) -> None:
    orphans = _rows(
        db,
        f"SELECT DISTINCT {column} FROM {child} WHERE {column} NOT IN (SELECT {key} FROM {parent})",
    )
    assert orphans == [], f"{child}.{column} not in {parent}.{key}: {orphans[:5]}"


def test_every_order_has_sales_lines(db: duckdb.DuckDBPyConnection) -> None:
    assert (
        _one(db, "SELECT count(*) FROM orders WHERE order_id NOT IN (SELECT order_id FROM sales)")
        == 0
    )
    assert _rows(
        db, "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM sales GROUP BY order_id)"
    ) == [(1, 4)]


def test_sales_lines_agree_with_orders_customers_and_prices(db: duckdb.DuckDBPyConnection) -> None:
    mismatches = _rows(
        db,
        """
        SELECT s.order_id, s.product_id
        FROM sales s
        JOIN orders o USING (order_id)
        JOIN customers c USING (customer_id)
        JOIN regions r ON r.region_id = c.region_id
        JOIN products p USING (product_id)
        WHERE s.region <> r.name
           OR s.quarter <> year(o.order_date) || 'Q' || quarter(o.order_date)
           OR round(s.amount * 100) <> round(s.quantity * round(p.unit_price * 100)
                   * CASE c.segment WHEN 'enterprise' THEN 0.90 ELSE 1 END)
           OR o.order_date <= c.signup_date
    """,
    )
    assert mismatches == []


# -- the story (plugins/sql/sample_data/README.md) -----------------------------------------

REVENUE_BY_REGION = """
    SELECT region, sum(amount) AS revenue
    FROM sales JOIN orders USING (order_id)
    WHERE quarter LIKE ? AND status IN (SELECT unnest(?::VARCHAR[]))
    GROUP BY region ORDER BY revenue DESC
"""
ALL_STATUSES = ["paid", "refunded", "pending"]


def test_the_architecture_example_query_runs(db: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(
        db, "SELECT region, sum(amount) AS revenue FROM sales GROUP BY region ORDER BY 2 DESC"
    )
    assert len(rows) == 5
    assert rows[0][0] == "North"  # over the whole period (see the next tests)


@pytest.mark.parametrize("statuses", [ALL_STATUSES, ["paid"]], ids=["gross", "net"])
def test_west_clearly_leads_the_last_quarter(
    db: duckdb.DuckDBPyConnection, statuses: list[str]
) -> None:
    rows = _rows(db, REVENUE_BY_REGION, "2026Q3", statuses)
    (top, top_revenue), (_, second_revenue) = rows[0], rows[1]
    total = sum(revenue for _, revenue in rows)
    assert top == "West"
    assert top_revenue / total > 0.30
    assert top_revenue > 1.4 * second_revenue


def test_the_last_quarter_figures_in_the_readme(db: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(db, REVENUE_BY_REGION, "2026Q3", ALL_STATUSES)
    assert [(region, round(revenue)) for region, revenue in rows[:2]] == [
        ("West", 38327),
        ("North", 24182),
    ]
    assert round(sum(revenue for _, revenue in rows)) == 116475
    assert round(_one(db, "SELECT sum(amount) FROM sales"), 2) == 615394.85


def test_west_led_every_quarter_of_2026_north_led_2025_and_overall(
    db: duckdb.DuckDBPyConnection,
) -> None:
    for quarter in ["2026Q1", "2026Q2", "2026Q3"]:
        assert _rows(db, REVENUE_BY_REGION, quarter, ALL_STATUSES)[0][0] == "West", quarter
    year_2025 = _rows(db, REVENUE_BY_REGION, "2025Q_", ALL_STATUSES)
    assert year_2025[0][0] == "North"
    assert year_2025[-1][0] == "West"  # the smallest region before the expansion
    overall = _rows(db, REVENUE_BY_REGION, "%", ALL_STATUSES)
    assert [region for region, _ in overall[:2]] == ["North", "West"]


def test_the_2026_signups_are_the_west_expansion(db: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(
        db,
        "SELECT r.name, count(*) FROM customers c JOIN regions r USING (region_id) "
        "WHERE signup_date >= DATE '2026-01-01' GROUP BY 1",
    )
    assert rows == [("West", 40)]


def test_gadgets_gain_share_every_quarter(db: duckdb.DuckDBPyConnection) -> None:
    shares = [
        share
        for _, share in _rows(
            db,
            """
        SELECT quarter, sum(amount) FILTER (WHERE category = 'gadgets') / sum(amount)
        FROM sales JOIN products USING (product_id) GROUP BY quarter ORDER BY quarter
    """,
        )
    ]
    assert len(shares) == len(QUARTERS)
    assert all(a < b for a, b in pairwise(shares)), shares
    assert shares[0] < 0.15
    assert shares[-1] >= 0.45


def test_gadgets_top_the_leading_regions_in_the_last_quarter(db: duckdb.DuckDBPyConnection) -> None:
    for region, _ in _rows(db, REVENUE_BY_REGION, "2026Q3", ALL_STATUSES)[:3]:
        top = _one(
            db,
            "SELECT category FROM sales JOIN products USING (product_id) "
            "WHERE region = ? AND quarter = ? GROUP BY 1 ORDER BY sum(amount) DESC "
            "LIMIT 1",
            region,
            "2026Q3",
        )
        assert top == "gadgets", region


def test_refunds_concentrate_in_electronics(db: duckdb.DuckDBPyConnection) -> None:
    rates = dict(
        _rows(
            db,
            """
        SELECT category, avg((status = 'refunded')::INTEGER)
        FROM sales JOIN products USING (product_id) JOIN orders USING (order_id)
        WHERE status <> 'pending' GROUP BY category
    """,
        )
    )
    electronics = rates.pop("electronics")
    assert electronics > 0.15
    assert all(electronics > 2.5 * rate for rate in rates.values()), (electronics, rates)

    refunded, with_electronics = _rows(
        db,
        """
        SELECT count(*), count(*) FILTER (WHERE has_electronics)
        FROM orders JOIN (
            SELECT order_id, bool_or(category = 'electronics') AS has_electronics
            FROM sales JOIN products USING (product_id) GROUP BY order_id
        ) USING (order_id)
        WHERE status = 'refunded'
    """,
    )[0]
    assert with_electronics / refunded > 2 / 3


def test_pending_orders_are_recent(db: duckdb.DuckDBPyConnection) -> None:
    count, first = _rows(
        db, "SELECT count(*), min(order_date) FROM orders WHERE status = 'pending'"
    )[0]
    assert count > 0
    assert str(first) > "2026-09-10"


def test_the_holiday_quarter_has_the_most_orders(db: duckdb.DuckDBPyConnection) -> None:
    busiest = _one(
        db,
        "SELECT quarter FROM sales GROUP BY quarter ORDER BY count(DISTINCT order_id) DESC LIMIT 1",
    )
    assert busiest == "2025Q4"


def test_enterprise_orders_are_the_largest(db: duckdb.DuckDBPyConnection) -> None:
    per_order = dict(
        _rows(
            db,
            """
        SELECT segment, sum(amount) / count(DISTINCT order_id)
        FROM sales JOIN orders USING (order_id) JOIN customers USING (customer_id)
        GROUP BY segment
    """,
        )
    )
    assert per_order["enterprise"] > per_order["business"] > per_order["consumer"]
