"""Security tests of ``sql.query`` / ``sql.schema``: both guard layers, attacked for real.

Layer 1 (``plugins.sql.guard.check_sql``) must refuse every statement that is not one
read-only query over the configured tables, naming the construct and saying why; layer 2
(``plugins.sql.engine.SqlEngine``) must hold when layer 1 is bypassed. The data is our own,
in tmp_path: a folder of CSV files, a read-only DuckDB file, a writable DuckDB file, and a
canary file whose token no query may ever return.

Tests marked "Regression" pin bugs this suite found (two layer-1 bypasses, two layer-2
write holes among them) and that were fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagentic.plugins.sql as sql_plugin
import duckdb
import pytest
from dagentic import (
    DagenticError,
    Executor,
    FailureMode,
    InvalidArgsError,
    Plan,
    PolicyBlockedError,
    RunResult,
    Settings,
    Step,
    StepStatus,
    StepTimeoutError,
    ToolContext,
    load_tools,
)
from dagentic.errors import failure_mode_of
from dagentic.plugins.sql import engine_for
from dagentic.plugins.sql._worker import Database
from dagentic.plugins.sql.engine import SqlEngine
from dagentic.plugins.sql.guard import check_sql
from dagentic.plugins.sql.settings import SqlSource

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

TOOLS = load_tools()
TOKEN = "CANARY-7f3a9c1e-DO-NOT-LEAK"

ONLY_READS = (
    "only read-only queries (SELECT, WITH ... SELECT, UNION, VALUES, DESCRIBE, SHOW) run here"
)
STACKED_2 = "sql.query: refused: exactly one statement is allowed, found 2; send one query per step"
TABLES = "the tables are: ledger, orders, products (sql.schema describes them)"


def not_allowed(name: str) -> str:
    return f"sql.query: refused: {name} is not allowed; {ONLY_READS}"


def table_function(name: str) -> str:
    return (
        f"sql.query: refused: the table function {name}() is not allowed; only "
        "generate_series, range, unnest are"
    )


def function(name: str) -> str:
    return (
        f"sql.query: refused: the function {name}() is not allowed: it reaches files, "
        "the network, the environment, settings or sequences"
    )


def file_path(path: str) -> str:
    return (
        f"sql.query: refused: {path!r} looks like a file path; only the configured "
        "tables can be read"
    )


def read_only(statement: str, table: str) -> str:
    return (
        f"sql.query: refused: {statement} into {table!r}: its source does not allow "
        "writes (set allow_write: true on the source to permit them)"
    )


def unknown(table: str, hint: str = "") -> str:
    hint = f" (did you mean {hint}?)" if hint else ""
    return f"sql.query: unknown table {table!r}{hint}; {TABLES}"


# -- data ---------------------------------------------------------------------------------

PRODUCTS = "id,name,price,category\n1,Widget,9.5,tools\n2,Gadget,20,toys\n3,Gizmo,15.25,tools\n"
ORDERS = "id,product_id,qty,city\n1,1,3,Paris\n2,2,1,Oslo\n3,1,2,Lima\n4,3,5,Paris\n"


def make_data(root: Path) -> Path:
    """shop/ (two CSV tables and an unregistered secret), books.duckdb (read-only source),
    scratch.duckdb (writable source) and canary.csv (outside every source)."""
    shop = root / "shop"
    shop.mkdir()
    (shop / "products.csv").write_text(PRODUCTS)
    (shop / "orders.csv").write_text(ORDERS)
    (shop / "secret.txt").write_text(f"{TOKEN}\n")  # inside a source folder, not a table
    (root / "canary.csv").write_text(f"secret\n{TOKEN}\n")
    with duckdb.connect(str(root / "books.duckdb")) as con:
        con.execute("CREATE TABLE ledger (id INTEGER, amount DOUBLE, memo VARCHAR)")
        con.execute("INSERT INTO ledger VALUES (1, 10.0, 'rent'), (2, 5.5, 'tea')")
    with duckdb.connect(str(root / "scratch.duckdb")) as con:
        con.execute("CREATE TABLE notes (id INTEGER, body VARCHAR)")
        con.execute("INSERT INTO notes VALUES (1, 'hello')")
    return root


def settings_for(root: Path, *, writable: bool = False, **sql: Any) -> Settings:
    """Settings blind to dagentic.toml / DAGENTIC_* with the shop and books sources (and
    the writable scratch source if asked)."""
    sources: dict[str, Any] = {
        "shop": {"path": str(root / "shop")},
        "books": {"path": str(root / "books.duckdb")},
    }
    if writable:
        sources["scratch"] = {"path": str(root / "scratch.duckdb"), "allow_write": True}
    return blind_settings(sql={"sources": sources, **sql})


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with the sha256 of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared, never written: for read-only tests."""
    return make_data(tmp_path_factory.mktemp("sql"))


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """A private copy of the data, for tests that write or attack layer 2."""
    return make_data(tmp_path)


@pytest.fixture(autouse=True)
def _close_engines() -> Iterator[None]:
    """engine_for caches one engine per settings for the process: close the ones a test
    opened, so DuckDB files in tmp_path are released."""
    before = set(sql_plugin._ENGINES)
    yield
    for key in set(sql_plugin._ENGINES) - before:
        sql_plugin._ENGINES.pop(key).close()


def context(settings: Settings) -> ToolContext:
    return ToolContext("run", "step", 1, settings)


async def query(settings: Settings, sql: str, **args: Any) -> dict[str, Any]:
    """sql.query as a plan step calls it; the canary never comes back."""
    result = await sql_plugin.query.fn(sql=sql, context=context(settings), **args)
    assert TOKEN not in json.dumps(result)
    return result


async def refused(settings: Settings, sql: str, **args: Any) -> DagenticError:
    with pytest.raises(DagenticError) as info:
        await query(settings, sql, **args)
    assert TOKEN not in str(info.value)
    return info.value


async def run_plan(settings: Settings, *steps: Step) -> RunResult:
    return await Executor(TOOLS, settings=settings).run(Plan(name="sql-guard", steps=list(steps)))


def paths(data: Path) -> dict[str, str]:
    return {"canary": str(data / "canary.csv"), "root": str(data), "shop": str(data / "shop")}


# -- layer 1: the attack suite ------------------------------------------------------------

POLICY, ARGS = PolicyBlockedError, InvalidArgsError

# (sql, error, message); {canary}, {root} and {shop} are filled in from the data fixture.
ATTACKS: list[tuple[str, type[DagenticError], str]] = [
    # file reads
    ("SELECT * FROM read_csv('{canary}')", POLICY, table_function("read_csv")),
    ("SELECT * FROM read_csv_auto('{canary}')", POLICY, table_function("read_csv_auto")),
    ("SELECT * FROM read_parquet('{root}/x.parquet')", POLICY, table_function("read_parquet")),
    ("SELECT * FROM read_json('{root}/x.json')", POLICY, table_function("read_json")),
    ("SELECT * FROM read_text('{canary}')", POLICY, table_function("read_text")),
    ("SELECT * FROM read_blob('{canary}')", POLICY, table_function("read_blob")),
    ("SELECT * FROM glob('{root}/*')", POLICY, table_function("glob")),
    ("SELECT * FROM sniff_csv('{canary}')", POLICY, table_function("sniff_csv")),
    (
        "SELECT * FROM parquet_metadata('{root}/x.parquet')",
        POLICY,
        table_function("parquet_metadata"),
    ),
    ("SELECT * FROM main.read_csv('{canary}')", POLICY, table_function("read_csv")),
    (
        "SELECT * FROM products JOIN read_csv('{canary}') AS c ON true",
        POLICY,
        table_function("read_csv"),
    ),
    (
        "SELECT * FROM products WHERE id IN (SELECT id FROM read_parquet('x.parquet'))",
        POLICY,
        table_function("read_parquet"),
    ),
    ("SELECT read_csv/**/('{canary}')", POLICY, function("read_csv")),
    ("SELECT * FROM 'products.csv'", POLICY, file_path("products.csv")),
    ('SELECT * FROM "orders.csv"', POLICY, file_path("orders.csv")),
    ("SELECT * FROM '{canary}'", POLICY, file_path("{canary}")),
    ('SELECT * FROM "{canary}"', POLICY, file_path("{canary}")),
    ("SELECT * FROM '/etc/passwd'", POLICY, file_path("/etc/passwd")),
    ("FROM '{canary}'", POLICY, file_path("{canary}")),
    ("DESCRIBE '{canary}'", POLICY, file_path("{canary}")),
    ("DESCRIBE SELECT * FROM read_csv('{canary}')", POLICY, table_function("read_csv")),
    # file writes
    ("COPY products TO '{root}/out.csv'", POLICY, not_allowed("COPY")),
    (
        "COPY (SELECT * FROM products) TO '{root}/out.parquet' (FORMAT parquet)",
        POLICY,
        not_allowed("COPY"),
    ),
    ("/* report */ COPY products TO '{root}/out.csv'", POLICY, not_allowed("COPY")),
    # Regression: EXPORT DATABASE is reported as unparseable (invalid_args), not refused
    ("EXPORT DATABASE '{root}/export'", POLICY, not_allowed("EXPORT")),
    # stacked statements
    ("SELECT 1; DROP TABLE products", POLICY, STACKED_2),
    ("SELECT * FROM products; DROP TABLE products;", POLICY, STACKED_2),
    ("SELECT 1 --\n; DROP TABLE products", POLICY, STACKED_2),
    # Regression: a comment between the statements is counted as a third statement
    ("SELECT 1; /* gap */ DROP TABLE products", POLICY, STACKED_2),
    ("SELECT 1; -- gap\nDROP TABLE products", POLICY, STACKED_2),
    # extensions
    ("INSTALL httpfs", POLICY, not_allowed("INSTALL")),
    ("FORCE INSTALL httpfs", POLICY, not_allowed("INSTALL")),
    # Regression: LOAD is refused as "this command", without naming it
    ("LOAD httpfs", POLICY, not_allowed("LOAD")),
    # settings
    ("SET enable_external_access = true", POLICY, not_allowed("SET")),
    ("SET GLOBAL lock_configuration = false", POLICY, not_allowed("SET")),
    ("SET VARIABLE x = 1", POLICY, not_allowed("SET")),
    ("PRAGMA enable_profiling", POLICY, not_allowed("PRAGMA")),
    # Regression: RESET is refused as "this command"
    ("RESET lock_configuration", POLICY, not_allowed("RESET")),
    ("SELECT set_config('threads', '8', false)", POLICY, function("set_config")),
    # the catalog and the session
    ("ATTACH '{root}/new.duckdb' AS n", POLICY, not_allowed("ATTACH")),
    ("DETACH books", POLICY, not_allowed("DETACH")),
    ("USE books", POLICY, not_allowed("USE")),
    ("BEGIN TRANSACTION", POLICY, not_allowed("BEGIN")),
    # Regression: CALL is refused as "this command", CHECKPOINT as "this statement"
    ("CALL pragma_version()", POLICY, not_allowed("CALL")),
    ("CHECKPOINT", POLICY, not_allowed("CHECKPOINT")),
    # DDL and DML
    ("CREATE TABLE t (a INTEGER)", POLICY, not_allowed("CREATE")),
    ("CREATE VIEW v AS SELECT 1", POLICY, not_allowed("CREATE")),
    ("CREATE MACRO m() AS 1", POLICY, not_allowed("CREATE")),
    ("CREATE SEQUENCE s", POLICY, not_allowed("CREATE")),
    ("DROP TABLE products", POLICY, not_allowed("DROP")),
    ("DROP/**/TABLE products", POLICY, not_allowed("DROP")),
    ("ALTER TABLE products ADD COLUMN z INTEGER", POLICY, not_allowed("ALTER")),
    ("INSERT INTO products VALUES (9, 'x', 1, 'y')", POLICY, read_only("INSERT", "products")),
    ("UPDATE products SET price = 0", POLICY, read_only("UPDATE", "products")),
    ("DELETE FROM products", POLICY, read_only("DELETE", "products")),
    ("DELETE FROM books.ledger", POLICY, read_only("DELETE", "books.ledger")),
    ("SELECT nextval('s')", POLICY, function("nextval")),
    ("SELECT currval('s')", POLICY, function("currval")),
    # nested query strings
    (
        "SELECT * FROM query('SELECT * FROM read_csv(''{canary}'')')",
        POLICY,
        table_function("query"),
    ),
    ("SELECT * FROM query_table('products')", POLICY, table_function("query_table")),
    ("SELECT * FROM products, LATERAL query('SELECT 1')", POLICY, function("query")),
    (
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
        POLICY,
        table_function("json_execute_serialized_sql"),
    ),
    # quoted and mixed-case function names
    ("SELECT * FROM \"READ_CSV\"('{canary}')", POLICY, table_function("read_csv")),
    ("SELECT * FROM Read_Csv('{canary}')", POLICY, table_function("read_csv")),
    ("SELECT * FROM \"read_csv\"('{canary}')", POLICY, table_function("read_csv")),
    ("SELECT * FROM READ_CSV_AUTO('{canary}')", POLICY, table_function("read_csv_auto")),
    # Regression: the quotes stay in the name: 'the table function "read_text"() ...'
    ("SELECT * FROM \"Read_Text\"('{canary}')", POLICY, table_function("read_text")),
    # Regression (a bypass this suite found): a quoted name skipped the deny-list
    ("SELECT \"current_setting\"('allowed_paths')", POLICY, function("current_setting")),
    ("SELECT \"GETENV\"('HOME')", POLICY, function("getenv")),
    # the environment, settings and secrets
    ("SELECT getenv('HOME')", POLICY, function("getenv")),
    ("SELECT 'HOME'.getenv()", POLICY, function("getenv")),
    ("SELECT count(*) FROM products WHERE getenv('X') IS NULL", POLICY, function("getenv")),
    ("SELECT current_setting('allowed_paths')", POLICY, function("current_setting")),
    ("SELECT * FROM duckdb_settings()", POLICY, table_function("duckdb_settings")),
    ("SELECT * FROM duckdb_secrets()", POLICY, table_function("duckdb_secrets")),
    ("SELECT * FROM products, LATERAL duckdb_settings()", POLICY, function("duckdb_settings")),
    ("SELECT * FROM pragma_table_info('products')", POLICY, table_function("pragma_table_info")),
    ("SELECT * FROM which_secret('s3://bucket/x', 's3')", POLICY, table_function("which_secret")),
    ("SELECT * FROM pg_catalog.pg_settings", ARGS, unknown("pg_catalog.pg_settings")),
    ("SELECT * FROM duckdb_databases", ARGS, unknown("duckdb_databases")),
    # Regression (a bypass this suite found): a CTE of another scope let any name pass
    (
        "SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT 1) AS x, pg_settings",
        ARGS,
        unknown("pg_settings"),
    ),
    (
        "SELECT * FROM (WITH duckdb_databases AS (SELECT 1) SELECT 1) AS x, duckdb_databases",
        ARGS,
        unknown("duckdb_databases"),
    ),
    (
        'SELECT * FROM (WITH "{canary}" AS (SELECT 1) SELECT 1) AS x, "{canary}"',
        POLICY,
        file_path("{canary}"),
    ),
    # comment tricks that end up unparseable or unknown
    (
        "SEL/**/ECT 1",
        ARGS,
        "sql.query: the SQL does not parse: Invalid expression / Unexpected token at line 1, "
        "column 12",
    ),
    ("SELECT * FROM read/**/_csv('{canary}')", ARGS, unknown("read")),
    # unparseable SQL: invalid_args with the position
    (
        "SELECT * FRM products",
        ARGS,
        "sql.query: the SQL does not parse: Invalid expression / Unexpected token at line 1, "
        "column 21",
    ),
    (
        "SELECT * FROM products\nWHERE id IN (1,",
        ARGS,
        "sql.query: the SQL does not parse: Expecting ) at line 2, column 15",
    ),
    # unknown tables: did-you-mean and the list
    ("SELECT * FROM prodcts", ARGS, unknown("prodcts", "products")),
    ("SELECT * FROM legder", ARGS, unknown("legder", "ledger, books.ledger, orders")),
    ("SELECT * FROM nothing_like_it", ARGS, unknown("nothing_like_it")),
    ("SELECT * FROM main.products", ARGS, unknown("main.products", "products")),
]


@pytest.mark.parametrize(
    ("sql", "error", "message"), ATTACKS, ids=[a[0].replace("\n", " ")[:70] for a in ATTACKS]
)
async def test_layer1_refuses_with_the_exact_reason(
    data: Path, sql: str, error: type[DagenticError], message: str
) -> None:
    sql, message = sql.format(**paths(data)), message.format(**paths(data))
    settings = settings_for(data)
    engine = await engine_for(settings)
    with pytest.raises(DagenticError) as guard:
        check_sql(sql, tables=engine.tables, writable=engine.writable)
    assert (type(guard.value), guard.value.message) == (error, message)
    tool = await refused(settings, sql)
    assert (type(tool), tool.message) == (error, message)
    assert failure_mode_of(tool) is error.failure_mode


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM (SELECT 1) AS t, LATERAL json_execute_serialized_sql(json_serialize_sql("
        "'SELECT name, value FROM duckdb_settings()')) AS s",
        "SELECT s.content FROM (SELECT 1) AS t, LATERAL read_text('{shop}/products.csv') AS s",
        "SELECT s.content FROM (SELECT 1) AS t, LATERAL \"read_text\"('{shop}/products.csv') AS s",
        'SELECT * FROM (SELECT 1) AS t, LATERAL "duckdb_settings"() AS s',
        "SELECT * FROM (SELECT 1) AS t, LATERAL checkpoint()",
    ],
    ids=[
        "json_execute_serialized_sql",
        "read_text",
        "quoted read_text",
        "quoted settings",
        "checkpoint",
    ],
)
async def test_table_functions_behind_lateral_are_refused(data: Path, sql: str) -> None:
    """Regression (a bypass this suite found): a table function after LATERAL is not an
    exp.Table, so the allowlist of
    table functions never sees it; only the deny-list does. json_execute_serialized_sql
    runs any nested SELECT (duckdb_settings(), read_text of the source files...) and
    checkpoint() writes to the attached databases."""
    sql = sql.format(**paths(data))
    exc = await refused(settings_for(data), sql)
    assert isinstance(exc, PolicyBlockedError), exc
    name = re.search(r"LATERAL \"?(\w+)", sql)[1]  # type: ignore[index]
    assert re.fullmatch(
        rf"sql\.query: refused: the (table )?function {name}\(\) is not "
        r"allowed[;:] .+",
        exc.message,
    ), exc.message


async def test_unterminated_string_is_invalid_args_not_a_refusal(data: Path) -> None:
    """Regression: a tokenizer error (unterminated string) is reported as policy_blocked "cannot
    be classified"; it is unparseable SQL, so invalid_args "does not parse"."""
    exc = await refused(settings_for(data), "SELECT 'unterminated FROM products")
    assert failure_mode_of(exc) is FailureMode.INVALID_ARGS, exc.message
    assert exc.message.startswith("sql.query: the SQL does not parse"), exc.message


ALLOWED: list[tuple[str, list[dict[str, Any]]]] = [
    ("SELECT 1 AS one;", [{"one": 1}]),
    ("SELECT 1 AS one;;", [{"one": 1}]),
    ("SELECT 1 AS one /*; DROP TABLE products */", [{"one": 1}]),
    ("SELECT count(*) AS n FROM products -- ; DROP TABLE products", [{"n": 3}]),
    ("SELECT 1 AS a -- */; INSTALL httpfs; /*", [{"a": 1}]),
    (
        "SELECT table_name FROM information_schema.tables ORDER BY 1",
        [{"table_name": "ledger"}, {"table_name": "orders"}, {"table_name": "products"}],
    ),
    (
        "WITH cheap AS (SELECT * FROM products WHERE price < 16) "
        "SELECT name FROM cheap ORDER BY id",
        [{"name": "Widget"}, {"name": "Gizmo"}],
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT sum(n) AS s FROM r",
        [{"s": 6}],
    ),
    (
        "SELECT id FROM products UNION SELECT product_id FROM orders ORDER BY 1",
        [{"id": 1}, {"id": 2}, {"id": 3}],
    ),
    ("SELECT city FROM orders INTERSECT SELECT 'Paris' ORDER BY 1", [{"city": "Paris"}]),
    ("SELECT id FROM products EXCEPT SELECT product_id FROM orders", []),
    ("VALUES (1, 'a'), (2, 'b')", [{"col0": 1, "col1": "a"}, {"col0": 2, "col1": "b"}]),
    # the DuckDB source's tables are on the search path too, so SHOW TABLES lists them
    ("SHOW TABLES", [{"name": "ledger"}, {"name": "orders"}, {"name": "products"}]),
    ("FROM products SELECT name WHERE id = 2", [{"name": "Gadget"}]),
    ("SELECT name FROM PRODUCTS WHERE ID = 3", [{"name": "Gizmo"}]),
    ("SELECT sum(amount) AS total FROM books.ledger", [{"total": 15.5}]),
    ("SELECT * FROM range(3) AS r(i) ORDER BY i", [{"i": 0}, {"i": 1}, {"i": 2}]),
    ("SELECT max(x) AS m FROM generate_series(1, 4) AS g(x)", [{"m": 4}]),
    ("SELECT * FROM unnest([1, 2]) AS u(v)", [{"v": 1}, {"v": 2}]),
]


@pytest.mark.parametrize(("sql", "rows"), ALLOWED, ids=[a[0][:60] for a in ALLOWED])
async def test_read_only_queries_run(data: Path, sql: str, rows: list[dict[str, Any]]) -> None:
    settings = settings_for(data)
    assert (await query(settings, sql))["rows"] == rows
    engine = await engine_for(settings)
    guarded = check_sql(sql, tables=engine.tables)
    # what reaches DuckDB is exactly one statement, whatever the comments said
    assert len(duckdb.extract_statements(guarded.sql)) == 1
    assert (await query(settings, "SELECT count(*) AS n FROM products"))["rows"] == [{"n": 3}]


async def test_describe_is_allowed(data: Path) -> None:
    result = await query(settings_for(data), "DESCRIBE products")
    assert [(r["column_name"], r["column_type"]) for r in result["rows"]] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("price", "DOUBLE"),
        ("category", "VARCHAR"),
    ]


async def test_a_trailing_comment_after_the_semicolon_is_still_one_statement(data: Path) -> None:
    """Regression: "SELECT 1; -- done" is refused with "found 2" (sqlglot yields a Semicolon node
    for the comment); it is one statement and should run."""
    settings = settings_for(data)
    assert (await query(settings, "SELECT 1 AS one; -- done"))["rows"] == [{"one": 1}]
    assert (await query(settings, "SELECT 1 AS one; /* done */"))["rows"] == [{"one": 1}]


async def test_parameters_are_values_not_sql(data: Path) -> None:
    settings = settings_for(data)
    hostile = "x' OR 1=1; DROP TABLE products; --"
    result = await query(
        settings, "SELECT count(*) AS n FROM products WHERE name = ?", params=[hostile]
    )
    assert result["rows"] == [{"n": 0}]
    assert (await query(settings, "SELECT count(*) AS n FROM products"))["rows"] == [{"n": 3}]


async def test_attacks_in_a_real_plan_fail_policy_blocked(data: Path) -> None:
    settings = settings_for(data)
    await engine_for(settings)  # see test_parallel_first_use_of_a_writable_source
    attacks = {
        "copy": ("COPY products TO '{root}/out.csv'", POLICY, not_allowed("COPY")),
        "stacked": ("SELECT 1; DROP TABLE products", POLICY, STACKED_2),
        "read_csv": ("SELECT * FROM read_csv('{canary}')", POLICY, table_function("read_csv")),
        "path": ("SELECT * FROM '{canary}'", POLICY, file_path("{canary}")),
        "attach": ("ATTACH '{root}/new.duckdb' AS n", POLICY, not_allowed("ATTACH")),
        "install": ("INSTALL httpfs", POLICY, not_allowed("INSTALL")),
        "setting": ("SELECT current_setting('allowed_paths')", POLICY, function("current_setting")),
        "write": (
            "INSERT INTO books.ledger VALUES (3, 1, 'x')",
            POLICY,
            read_only("INSERT", "books.ledger"),
        ),
        "typo": ("SELECT * FROM prodcts", ARGS, unknown("prodcts", "products")),
    }
    steps = [
        Step(id=sid, tool="sql.query", args={"sql": sql.format(**paths(data))})
        for sid, (sql, _, _) in attacks.items()
    ]
    steps.append(
        Step(
            id="fine",
            tool="sql.query",
            args={
                "sql": "SELECT city, sum(qty) AS qty FROM orders GROUP BY city "
                "ORDER BY qty DESC, city"
            },
        )
    )
    result = await run_plan(settings, *steps)
    assert not result.succeeded
    assert result.steps["fine"].status is StepStatus.SUCCEEDED
    assert result.steps["fine"].output["rows"] == [
        {"city": "Paris", "qty": 8},
        {"city": "Lima", "qty": 2},
        {"city": "Oslo", "qty": 1},
    ]
    for sid, (_, error, message) in attacks.items():
        step = result.steps[sid]
        assert step.status is StepStatus.FAILED, sid
        assert step.error is not None
        assert (step.error.failure_mode, step.error.type, step.error.message) == (
            error.failure_mode,
            error.__name__,
            message.format(**paths(data)),
        ), sid
    assert TOKEN not in result.model_dump_json()
    assert not (data / "out.csv").exists() and not (data / "new.duckdb").exists()


# -- resource exhaustion ------------------------------------------------------------------


async def test_a_recursive_cte_that_never_ends_times_out_and_the_engine_lives_on(
    data: Path,
) -> None:
    settings = settings_for(data, timeout=1)
    engine = await engine_for(settings)
    start = time.monotonic()
    with pytest.raises(StepTimeoutError) as info:
        await query(
            settings,
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
            "SELECT count(*) FROM r",
        )
    assert time.monotonic() - start < 5
    assert failure_mode_of(info.value) is FailureMode.TIMEOUT
    assert info.value.message == (
        "sql.query: the query did not finish within 1s and was interrupted"
    )
    assert await engine_for(settings) is engine
    assert (await query(settings, "SELECT count(*) AS n FROM orders"))["rows"] == [{"n": 4}]


async def test_a_huge_cross_join_in_a_plan_times_out_and_the_next_query_works(data: Path) -> None:
    settings = settings_for(data, timeout=1)
    engine = await engine_for(settings)
    start = time.monotonic()
    result = await run_plan(
        settings,
        Step(
            id="bomb",
            tool="sql.query",
            args={"sql": "SELECT count(*) FROM range(100000000) AS a, range(100000000) AS b"},
        ),
    )
    assert time.monotonic() - start < 5
    step = result.steps["bomb"]
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.failure_mode is FailureMode.TIMEOUT
    assert step.error.message == (
        "sql.query: the query did not finish within 1s and was interrupted"
    )
    after = await run_plan(
        settings,
        Step(id="after", tool="sql.query", args={"sql": "SELECT max(price) AS top FROM products"}),
    )
    assert after.succeeded and after.steps["after"].output["rows"] == [{"top": 20.0}]
    assert await engine_for(settings) is engine


# -- layer 2, with layer 1 bypassed -------------------------------------------------------

DISABLED = "file system operations are disabled by configuration"
LOCKED = "the configuration has been locked"

# (sql, what DuckDB's refusal says); run straight on the engine, no check_sql
LAYER2: list[tuple[str, str]] = [
    (
        "COPY (SELECT 42 AS x) TO '{root}/out.csv'",
        f'Cannot access file "{{root}}/out.csv" - {DISABLED}',
    ),
    (
        "COPY products TO '{root}/out.parquet' (FORMAT parquet)",
        f'Cannot access file "{{root}}/out.parquet" - {DISABLED}',
    ),
    ("EXPORT DATABASE '{root}/export'", DISABLED),
    ("SELECT * FROM read_csv('{canary}')", f'Cannot access file "{{canary}}" - {DISABLED}'),
    (
        "SELECT * FROM read_text('{shop}/secret.txt')",
        f'Cannot access file "{{shop}}/secret.txt" - {DISABLED}',
    ),
    ("SELECT * FROM read_blob('{canary}')", f'Cannot access file "{{canary}}" - {DISABLED}'),
    ("SELECT * FROM '{canary}'", f'Cannot access file "{{canary}}" - {DISABLED}'),
    ("SELECT * FROM glob('{root}/*')", DISABLED),
    ("ATTACH '{root}/new.duckdb' AS n", f'Cannot access file "{{root}}/new.duckdb" - {DISABLED}'),
    ("INSTALL httpfs", DISABLED),
    ("FORCE INSTALL httpfs", DISABLED),
    ("LOAD httpfs", "Loading external extensions is disabled through configuration"),
    ("SELECT * FROM duckdb_secrets()", DISABLED),
    ("SET enable_external_access = true", LOCKED),
    ("SET lock_configuration = false", LOCKED),
    ("RESET lock_configuration", LOCKED),
    ("SET GLOBAL allowed_directories = ['/']", LOCKED),
    ("SET allowed_paths = ['{canary}']", LOCKED),
    ("SET temp_directory = '{root}/spill'", LOCKED),
    ("PRAGMA enable_profiling", LOCKED),
    ("SET profiling_output = '{root}/profile.json'", LOCKED),
    ("SET autoinstall_known_extensions = true", LOCKED),
    (
        "INSERT INTO books.ledger VALUES (3, 1.0, 'x')",
        'Cannot execute statement of type "INSERT" on database "books" which is attached in '
        "read-only mode",
    ),
    ("INSERT INTO products VALUES (9, 'x', 1, 'y')", "products is not an table"),
]


def layer2_engine(root: Path) -> SqlEngine:
    return SqlEngine(
        {"shop": SqlSource(path=root / "shop"), "books": SqlSource(path=root / "books.duckdb")},
        memory_limit="256MB",
        threads=2,
    )


async def run_raw(engine: SqlEngine, sql: str) -> dict[str, Any]:
    return await engine.run(sql, None, max_rows=100, max_bytes=100_000, timeout=5)


async def test_layer2_holds_when_layer1_is_bypassed(fresh: Path) -> None:
    before = snapshot(fresh)
    engine = layer2_engine(fresh)
    failures: list[str] = []
    for template, reason in LAYER2:
        sql, reason = template.format(**paths(fresh)), reason.format(**paths(fresh))
        try:
            result = await run_raw(engine, sql)
        except DagenticError as exc:
            assert TOKEN not in exc.message
            # Refused by DuckDB's own configuration, or before that by the engine's check
            # that DuckDB's parser sees a single SELECT.
            if reason not in exc.message and "refused by the engine" not in exc.message:
                failures.append(f"{sql}: {exc.message}")
            if DISABLED in reason or "extensions" in reason:
                assert isinstance(exc, PolicyBlockedError), exc.message
        else:
            assert TOKEN not in json.dumps(result)
            failures.append(f"{sql}: ran and returned {result}")
    # the same through a raw cursor of a connection built as the engine process builds
    # its own: DuckDB's own errors
    raw = Database(
        {"shop": {"path": str(fresh / "shop")}, "books": {"path": str(fresh / "books.duckdb")}},
        roots=None,
        memory_limit="256MB",
        threads=1,
        temp_directory=str(fresh / "spill"),
    )
    for template in (
        "SELECT * FROM read_csv_auto('{canary}')",
        "COPY (SELECT 1) TO '{root}/raw.csv'",
    ):
        with pytest.raises(duckdb.PermissionException):
            raw.connection.cursor().execute(template.format(**paths(fresh)))
    raw.close()
    settings = await run_raw(
        engine,
        "SELECT current_setting('enable_external_access') AS ext, "
        "current_setting('lock_configuration') AS locked",
    )
    assert settings["rows"] == [{"ext": False, "locked": True}]
    assert (await run_raw(engine, "SELECT count(*) AS n FROM books.ledger"))["rows"] == [{"n": 2}]
    engine.close()
    assert not failures, "\n".join(failures)
    assert snapshot(fresh) == before


async def test_layer2_cannot_overwrite_a_source_file(fresh: Path) -> None:
    """Regression (layer 2): allowed_paths grants writes as well as reads, so with layer 1
    bypassed `COPY ... TO '<source>.csv' (USE_TMP_FILE false)` overwrites a read-only CSV
    source (the default USE_TMP_FILE only fails by luck, on tmp_products.csv)."""
    before = snapshot(fresh)
    engine = layer2_engine(fresh)
    products = fresh / "shop" / "products.csv"
    with pytest.raises(DagenticError):
        await run_raw(engine, f"COPY (SELECT 'pwned' AS x) TO '{products}' (USE_TMP_FILE false)")
    engine.close()
    assert snapshot(fresh) == before


async def test_layer2_cannot_reattach_a_read_only_source_writable(fresh: Path) -> None:
    """Regression (layer 2): DuckDB keeps attached files in allowed_paths, and DETACH/ATTACH are
    not refused by the engine, so with layer 1 bypassed the read-only source can be
    re-attached read-write and written to disk."""
    before = snapshot(fresh)
    engine = layer2_engine(fresh)
    books = fresh / "books.duckdb"
    attack = [
        "DETACH books",
        f"ATTACH '{books}' AS books",
        "INSERT INTO books.ledger VALUES (3, 0.0, 'pwned')",
    ]
    refusals = 0
    for sql in attack:
        try:
            await run_raw(engine, sql)
        except DagenticError:
            refusals += 1
    engine.close()
    assert refusals, "DETACH, ATTACH and INSERT all ran"
    with duckdb.connect(str(books), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ledger").fetchone() == (2,)
    assert snapshot(fresh) == before


# -- writes -------------------------------------------------------------------------------


async def test_writes_reach_only_sources_that_allow_them(fresh: Path) -> None:
    settings = settings_for(fresh, writable=True)
    for sql, statement, table in [
        ("INSERT INTO products VALUES (9, 'x', 1, 'y')", "INSERT", "products"),
        ("INSERT INTO books.ledger VALUES (3, 1.0, 'x')", "INSERT", "books.ledger"),
        ("UPDATE books.ledger SET amount = 0", "UPDATE", "books.ledger"),
        ("DELETE FROM books.ledger WHERE id = 1", "DELETE", "books.ledger"),
        ("INSERT INTO books.ledger (id) SELECT id FROM scratch.notes", "INSERT", "books.ledger"),
        (
            "WITH x AS (SELECT 7 AS id) INSERT INTO books.ledger (id) SELECT id FROM x",
            "INSERT",
            "books.ledger",
        ),
    ]:
        exc = await refused(settings, sql)
        assert (type(exc), exc.message) == (PolicyBlockedError, read_only(statement, table))
        assert exc.fields["table"] == table

    result = await query(settings, "INSERT INTO scratch.notes VALUES (2, 'two'), (3, 'three')")
    assert result["rows"] == [{"Count": 2}]
    assert result["side_effects"] == {"statement": "INSERT", "tables": ["scratch.notes"]}
    result = await query(settings, "UPDATE scratch.notes SET body = upper(body) WHERE id < 3")
    assert result["side_effects"] == {"statement": "UPDATE", "tables": ["scratch.notes"]}
    assert result["rows"] == [{"Count": 2}]
    result = await query(settings, "DELETE FROM scratch.notes WHERE id = 3")
    assert result["side_effects"] == {"statement": "DELETE", "tables": ["scratch.notes"]}
    seen = await query(settings, "SELECT id, body FROM scratch.notes ORDER BY id")
    assert seen["rows"] == [{"id": 1, "body": "HELLO"}, {"id": 2, "body": "TWO"}]
    assert "side_effects" not in seen

    for sql, message in [
        ("CREATE TABLE scratch.extra (a INTEGER)", not_allowed("CREATE")),
        ("DROP TABLE scratch.notes", not_allowed("DROP")),
        ("ALTER TABLE scratch.notes ADD COLUMN z INTEGER", not_allowed("ALTER")),
        (
            "INSERT INTO scratch.notes SELECT 9, secret FROM read_csv('{canary}')",
            table_function("read_csv"),
        ),
        ("INSERT INTO scratch.notes SELECT 9, secret FROM '{canary}'", file_path("{canary}")),
        ("INSERT INTO scratch.notes VALUES (9, 'a'); DROP TABLE products", STACKED_2),
    ]:
        exc = await refused(settings, sql.format(**paths(fresh)))
        assert (type(exc), exc.message) == (PolicyBlockedError, message.format(**paths(fresh)))
    assert (await query(settings, "SELECT count(*) AS n FROM scratch.notes"))["rows"] == [{"n": 2}]


async def test_a_write_in_a_plan_reports_its_side_effects(fresh: Path) -> None:
    settings = settings_for(fresh, writable=True)
    await engine_for(settings)  # see test_parallel_first_use_of_a_writable_source
    result = await run_plan(
        settings,
        Step(
            id="add",
            tool="sql.query",
            args={"sql": "INSERT INTO scratch.notes VALUES (?, ?)", "params": [5, "five"]},
        ),
        Step(
            id="read",
            tool="sql.query",
            needs=["add"],
            args={"sql": "SELECT body FROM scratch.notes WHERE id = 5"},
        ),
    )
    assert result.succeeded, result.failures()
    assert result.steps["add"].output["side_effects"] == {
        "statement": "INSERT",
        "tables": ["scratch.notes"],
    }
    assert result.steps["read"].output["rows"] == [{"body": "five"}]


async def test_tables_of_duckdb_sources_work_by_their_short_name(fresh: Path) -> None:
    """Regression: the guard and its error messages advertise DuckDB-file tables by their short
    name ("the tables are: ledger, notes, ..."), but the engine only resolves them
    qualified: `SELECT * FROM ledger` / `INSERT INTO notes` fail with a Catalog Error."""
    settings = settings_for(fresh, writable=True)
    assert (await query(settings, "SELECT count(*) AS n FROM ledger"))["rows"] == [{"n": 2}]
    result = await query(settings, "INSERT INTO notes VALUES (4, 'four')")
    assert result["side_effects"] == {"statement": "INSERT", "tables": ["notes"]}
    assert (await query(settings, "SELECT body FROM notes WHERE id = 4"))["rows"] == [
        {"body": "four"}
    ]


async def test_sql_schema_describes_duckdb_sources(data: Path) -> None:
    """Regression: sql.schema runs `DESCRIBE "ledger"` for a DuckDB-file source and crashes with a
    raw duckdb.CatalogException."""
    result = await sql_plugin.schema.fn(context=context(settings_for(data)), sample_rows=1)
    tables = {t["table"]: t for t in result["tables"]}
    assert sorted(tables) == ["ledger", "orders", "products"]
    assert tables["ledger"]["source"] == "books" and tables["ledger"]["row_count"] == 2
    assert TOKEN not in json.dumps(result)


async def test_settings_differing_only_in_limits_share_a_writable_source(fresh: Path) -> None:
    """Regression: engines are cached per whole SqlSettings, limits included; a second engine for
    the same writable DuckDB file fails to ATTACH it ("Unique file handle conflict"), with
    a raw duckdb.ResourceInUseException (failure mode tool_error)."""
    first = settings_for(fresh, writable=True)
    second = settings_for(fresh, writable=True, max_rows=5)
    assert (await query(first, "SELECT count(*) AS n FROM scratch.notes"))["rows"] == [{"n": 1}]
    assert (await query(second, "SELECT count(*) AS n FROM scratch.notes"))["rows"] == [{"n": 1}]


async def test_parallel_first_use_of_a_writable_source(fresh: Path) -> None:
    """Regression: two sql.query steps starting at once both miss the engine cache and both build
    an engine; the second cannot ATTACH the writable file and its step fails."""
    result = await run_plan(
        settings_for(fresh, writable=True),
        Step(id="a", tool="sql.query", args={"sql": "SELECT count(*) AS n FROM scratch.notes"}),
        Step(id="b", tool="sql.query", args={"sql": "SELECT count(*) AS n FROM products"}),
    )
    assert result.succeeded, [(s.id, s.error) for s in result.failures()]


# -- dialects -----------------------------------------------------------------------------

DIALECTS: list[tuple[str, str, list[dict[str, Any]]]] = [
    (
        "postgres",
        "SELECT name, price::int AS p FROM products WHERE name ILIKE 'g%' "
        "ORDER BY name LIMIT 1 OFFSET 1",
        [{"name": "Gizmo", "p": 15}],
    ),
    (
        "mysql",
        "SELECT `name` FROM `products` ORDER BY `id` LIMIT 1, 2",
        [{"name": "Gadget"}, {"name": "Gizmo"}],
    ),
    (
        "sqlite",
        "SELECT name, CAST(price AS INTEGER) AS p FROM products "
        "WHERE category = 'tools' ORDER BY id",
        [{"name": "Widget", "p": 10}, {"name": "Gizmo", "p": 15}],
    ),
    (
        "snowflake",
        "SELECT name, IFF(price > 10, 'high', 'low') AS band FROM products ORDER BY id",
        [
            {"name": "Widget", "band": "low"},
            {"name": "Gadget", "band": "high"},
            {"name": "Gizmo", "band": "high"},
        ],
    ),
    (
        "bigquery",
        "SELECT `name`, SAFE_DIVIDE(price, 0) AS d FROM products "
        "WHERE STARTS_WITH(name, 'G') ORDER BY id",
        [{"name": "Gadget", "d": None}, {"name": "Gizmo", "d": None}],
    ),
]


@pytest.mark.parametrize(("dialect", "sql", "rows"), DIALECTS, ids=[d[0] for d in DIALECTS])
async def test_dialects_transpile_and_run(
    data: Path, dialect: str, sql: str, rows: list[dict[str, Any]]
) -> None:
    assert (await query(settings_for(data), sql, dialect=dialect))["rows"] == rows


DIALECT_ERRORS: list[tuple[str, str, type[DagenticError], str]] = [
    (
        "klingon",
        "SELECT 1",
        ARGS,
        "sql.query: unknown dialect 'klingon': Unknown dialect 'klingon'.",
    ),
    (
        "postgre",
        "SELECT 1",
        ARGS,
        "sql.query: unknown dialect 'postgre': Unknown dialect 'postgre'. Did you mean postgres?",
    ),
    (
        "postgres",
        "SELECT (1",
        ARGS,
        "sql.query: the SQL does not parse as postgres: Expecting ) at line 1, column 9",
    ),
    (
        "mysql",
        "SELECT (1",
        ARGS,
        "sql.query: the SQL does not parse as mysql: Expecting ) at line 1, column 9",
    ),
    ("postgres", "COPY products TO '{root}/out.csv'", POLICY, not_allowed("COPY")),
    ("postgres", "COPY (SELECT * FROM products) TO STDOUT", POLICY, not_allowed("COPY")),
    ("postgres", "SET search_path TO books", POLICY, not_allowed("SET")),
    ("postgres", "SELECT current_setting('allowed_paths')", POLICY, function("current_setting")),
    (
        "postgres",
        "SELECT * FROM products WHERE name ILIKE 'g%'; DROP TABLE products",
        POLICY,
        STACKED_2,
    ),
    ("mysql", "SELECT * FROM products; DROP TABLE products", POLICY, STACKED_2),
    ("sqlite", "ATTACH DATABASE '{root}/x.db' AS x", POLICY, not_allowed("ATTACH")),
    ("sqlite", "PRAGMA table_info(products)", POLICY, not_allowed("PRAGMA")),
    ("snowflake", "SELECT * FROM read_csv('{canary}')", POLICY, table_function("read_csv")),
    ("bigquery", "SELECT 1; DROP TABLE products", POLICY, STACKED_2),
    (
        "bigquery",
        "INSERT INTO books.ledger VALUES (3, 1.0, 'x')",
        POLICY,
        read_only("INSERT", "books.ledger"),
    ),
]


@pytest.mark.parametrize(
    ("dialect", "sql", "error", "message"),
    DIALECT_ERRORS,
    ids=[f"{d[0]}: {d[1][:40]}" for d in DIALECT_ERRORS],
)
async def test_dialect_errors_and_attacks(
    data: Path, dialect: str, sql: str, error: type[DagenticError], message: str
) -> None:
    exc = await refused(settings_for(data), sql.format(**paths(data)), dialect=dialect)
    assert (type(exc), exc.message) == (error, message.format(**paths(data)))
    assert failure_mode_of(exc) is error.failure_mode


# -- the canary ---------------------------------------------------------------------------


def test_the_canary_is_real(data: Path) -> None:
    """The token is on disk, so every "never returned" assertion above means something."""
    assert TOKEN in (data / "canary.csv").read_text()
    assert TOKEN in (data / "shop" / "secret.txt").read_text()
    with duckdb.connect() as con:  # an unguarded connection can read it
        assert con.execute(f"SELECT * FROM '{data / 'canary.csv'}'").fetchall() == [(TOKEN,)]
