"""``sql.query`` and ``sql.schema`` on a real DuckDB: results, limits, JSON-safety of every
DuckDB type, parameters, concurrency, timeouts, planner-friendly errors, sources and the
bundled sample data.

No mocks: the tools run with the arguments validated by their own schema (as the executor
does), or inside real plans on :class:`dagentic.Executor` with the installed plugins.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import anyio
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
    ToolContext,
    ToolError,
    load_tools,
)
from dagentic.plugins.sql import SAMPLE_DATA, engine_for, query, schema
from pydantic import ValidationError

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

TOOLS = load_tools()
NUMBERS = 10_000  # rows of numbers.csv
HEAVY = "SELECT sum(hash(a.range * b.range)) AS h FROM range(100000) AS a, range(100000) AS b"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def sql_settings(**sql: Any) -> Settings:
    """Settings blind to dagentic.toml and DAGENTIC_* variables, with these sql ones."""
    return blind_settings(sql=sql)


async def run_query(settings: Settings, sql: str, **args: Any) -> dict[str, Any]:
    """Call sql.query as the executor does: arguments through the tool's own schema."""
    validated = query.args_model.model_validate({"sql": sql, **args}).__dict__
    return await query.fn(**validated, context=ToolContext("run", "step", 1, settings))


async def run_schema(settings: Settings, **args: Any) -> dict[str, Any]:
    validated = schema.args_model.model_validate(args).__dict__
    return await schema.fn(**validated, context=ToolContext("run", "step", 1, settings))


async def run_plan(settings: Settings, *steps: Step, **outputs: str) -> RunResult:
    plan = Plan(name="sql", steps=list(steps), outputs=outputs)
    return await Executor(TOOLS, settings=settings).run(plan)


def rows_json_bytes(rows: list[dict[str, Any]]) -> int:
    """Size of the rows as the UTF-8 JSON a run result carries them in."""
    return len(json.dumps(rows, ensure_ascii=False).encode("utf-8"))


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder source: numbers.csv (10,000 rows), people.csv (unicode, a NULL) and a
    file that is not data."""
    folder = tmp_path_factory.mktemp("shop")
    lines = ["n,label"] + [f"{n},row-{n}" for n in range(NUMBERS)]
    (folder / "numbers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "people.csv").write_text(
        "id,name,score,joined\n"
        "1,Ana,9.5,2024-01-02\n"
        "2,Björn Ø,7.25,2024-02-29\n"
        "3,李雷,,2024-03-01\n"
        "4,O'Brien,10,2024-04-30\n",
        encoding="utf-8",
    )
    (folder / "notes.txt").write_text("not a table\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def shop(shop_dir: Path) -> Settings:
    return sql_settings(sources={"shop": {"path": str(shop_dir)}})


# -- results ---------------------------------------------------------------------------


async def test_result_has_typed_columns_rows_as_objects_and_a_row_count(shop: Settings) -> None:
    result = await run_query(shop, "SELECT id, name, score, joined FROM people ORDER BY id")
    assert result == {
        "columns": [
            {"name": "id", "type": "BIGINT"},
            {"name": "name", "type": "VARCHAR"},
            {"name": "score", "type": "DOUBLE"},
            {"name": "joined", "type": "DATE"},
        ],
        "rows": [
            {"id": 1, "name": "Ana", "score": 9.5, "joined": "2024-01-02"},
            {"id": 2, "name": "Björn Ø", "score": 7.25, "joined": "2024-02-29"},
            {"id": 3, "name": "李雷", "score": None, "joined": "2024-03-01"},
            {"id": 4, "name": "O'Brien", "score": 10.0, "joined": "2024-04-30"},
        ],
        "row_count": 4,
        "truncated": False,
    }


async def test_limit_returns_that_many_rows_of_a_10000_row_query_and_says_truncated(
    shop: Settings,
) -> None:
    result = await run_query(shop, "SELECT n, label FROM numbers ORDER BY n", limit=5)
    assert result["rows"] == [{"n": n, "label": f"row-{n}"} for n in range(5)]
    assert result["row_count"] == 5
    assert result["truncated"] is True


async def test_row_cap_is_enforced_while_fetching_so_a_ten_billion_row_query_returns_fast(
    tmp_path: Path, shop_dir: Path
) -> None:
    # Materialising 10^10 rows first would blow the 2 s timeout (or the memory limit).
    settings = sql_settings(sources={"shop": {"path": str(shop_dir)}}, timeout=2.0)
    start = time.monotonic()
    result = await run_query(settings, "SELECT i FROM range(10000000000) AS t(i)", limit=5)
    assert time.monotonic() - start < 2.0
    assert result["rows"] == [{"i": i} for i in range(5)]
    assert result["truncated"] is True


async def test_exactly_limit_rows_is_not_truncated(shop: Settings) -> None:
    result = await run_query(shop, "SELECT n FROM numbers WHERE n < 5 ORDER BY n", limit=5)
    assert result["row_count"] == 5
    assert result["truncated"] is False


async def test_limit_above_max_rows_is_capped_by_the_setting(shop_dir: Path) -> None:
    settings = sql_settings(sources={"shop": {"path": str(shop_dir)}}, max_rows=10)
    capped = await run_query(settings, "SELECT n FROM numbers ORDER BY n", limit=100)
    assert capped["rows"] == [{"n": n} for n in range(10)]
    assert capped["truncated"] is True
    default = await run_query(settings, "SELECT n FROM numbers ORDER BY n")
    assert default["row_count"] == 10
    assert default["truncated"] is True
    below = await run_query(settings, "SELECT n FROM numbers ORDER BY n", limit=3)
    assert below["row_count"] == 3


@pytest.mark.parametrize("limit", [0, -3])
async def test_a_limit_below_one_is_rejected_by_the_argument_schema(limit: int) -> None:
    # Today limit=0 returns sql.max_rows rows and limit=-3 returns no rows "truncated".
    with pytest.raises(ValidationError):
        query.args_model.model_validate({"sql": "SELECT 1", "limit": limit})


async def test_wide_rows_past_max_bytes_are_cut_and_the_rows_fit_in_max_bytes(
    shop_dir: Path,
) -> None:
    settings = sql_settings(sources={"shop": {"path": str(shop_dir)}}, max_bytes=4096)
    result = await run_query(
        settings, "SELECT i AS id, rpad('', 500, 'x') AS text FROM range(100) AS t(i) ORDER BY i"
    )
    assert result["truncated"] is True
    assert 0 < result["row_count"] < 100
    assert result["row_count"] == len(result["rows"])
    assert [r["id"] for r in result["rows"]] == list(range(result["row_count"]))
    assert rows_json_bytes(result["rows"]) <= 4096


@pytest.mark.parametrize("char", ["x", "é", "日", "🦆"], ids=["ascii", "latin", "cjk", "emoji"])
async def test_rows_never_exceed_max_bytes_of_utf8_json_whatever_the_row_width(
    shop_dir: Path, char: str
) -> None:
    settings = sql_settings(sources={"shop": {"path": str(shop_dir)}}, max_bytes=1024)
    too_big = []
    for width in range(1, 120):
        result = await run_query(
            settings,
            "SELECT i AS id, rpad('', ?, ?) AS text FROM range(200) AS t(i) ORDER BY i",
            params=[width, char],
        )
        assert result["truncated"] is True
        size = rows_json_bytes(result["rows"])
        if size > 1024:
            too_big.append((width, result["row_count"], size))
    assert too_big == [], "(width, rows, UTF-8 JSON bytes) over max_bytes=1024"


async def test_a_single_row_wider_than_max_bytes_gives_no_rows_and_truncated(
    shop_dir: Path,
) -> None:
    settings = sql_settings(sources={"shop": {"path": str(shop_dir)}}, max_bytes=1024)
    result = await run_query(settings, "SELECT rpad('', 5000, 'x') AS text")
    assert result == {
        "columns": [{"name": "text", "type": "VARCHAR"}],
        "rows": [],
        "row_count": 0,
        "truncated": True,
    }


async def test_scalar_functions_named_like_table_functions_are_allowed(shop: Settings) -> None:
    # repeat() and histogram() are also DuckDB table functions; as scalar/aggregate calls
    # they read nothing but their arguments.
    result = await run_query(
        shop, "SELECT repeat('ab', 3) AS r, histogram(n % 3) AS h FROM numbers WHERE n < 6"
    )
    assert result["columns"] == [
        {"name": "r", "type": "VARCHAR"},
        {"name": "h", "type": "MAP(BIGINT, UBIGINT)"},
    ]
    assert result["rows"] == [{"r": "ababab", "h": {"0": 2, "1": 2, "2": 2}}]


# -- JSON-safety of every DuckDB type ---------------------------------------------------

TYPES = [
    # (SQL expression, DuckDB type as reported, JSON value)
    ("true", "BOOLEAN", True),
    ("(-128)::TINYINT", "TINYINT", -128),
    ("32767::SMALLINT", "SMALLINT", 32767),
    ("(-2147483648)::INTEGER", "INTEGER", -2147483648),
    ("9223372036854775807::BIGINT", "BIGINT", 9223372036854775807),
    (
        "170141183460469231731687303715884105727::HUGEINT",
        "HUGEINT",
        170141183460469231731687303715884105727,
    ),
    ("255::UTINYINT", "UTINYINT", 255),
    ("65535::USMALLINT", "USMALLINT", 65535),
    ("4294967295::UINTEGER", "UINTEGER", 4294967295),
    ("18446744073709551615::UBIGINT", "UBIGINT", 18446744073709551615),
    (
        "340282366920938463463374607431768211455::UHUGEINT",
        "UHUGEINT",
        340282366920938463463374607431768211455,
    ),
    ("1.5::FLOAT", "FLOAT", 1.5),
    ("0.1::DOUBLE", "DOUBLE", 0.1),
    ("'nan'::DOUBLE", "DOUBLE", None),
    ("'inf'::DOUBLE", "DOUBLE", None),
    ("'-inf'::DOUBLE", "DOUBLE", None),
    ("'nan'::FLOAT", "FLOAT", None),
    ("'-inf'::FLOAT", "FLOAT", None),
    ("12.00::DECIMAL(10,2)", "DECIMAL(10,2)", 12),
    ("12.34::DECIMAL(10,2)", "DECIMAL(10,2)", 12.34),
    ("(-0.5)::DECIMAL(3,1)", "DECIMAL(3,1)", -0.5),
    (
        "123456789012345678901234567890.0::DECIMAL(38,1)",
        "DECIMAL(38,1)",
        123456789012345678901234567890,
    ),
    ("DATE '2026-03-01'", "DATE", "2026-03-01"),
    ("TIME '13:45:30.25'", "TIME", "13:45:30.250000"),
    ("TIMESTAMP '2026-03-01 13:45:30.123456'", "TIMESTAMP", "2026-03-01T13:45:30.123456"),
    ("TIMESTAMP_S '2026-03-01 13:45:30'", "TIMESTAMP_S", "2026-03-01T13:45:30"),
    ("TIMETZ '13:45:30+02'", "TIME WITH TIME ZONE", "13:45:30+02:00"),
    ("INTERVAL '1 day 2 hours'", "INTERVAL", 93600.0),  # seconds
    ("INTERVAL '1 month'", "INTERVAL", 2592000.0),  # a month counts 30 days
    (
        "'12345678-1234-5678-1234-567812345678'::UUID",
        "UUID",
        "12345678-1234-5678-1234-567812345678",
    ),
    ("'\\xAA\\xFFab'::BLOB", "BLOB", "qv9hYg=="),  # base64 of b"\xaa\xffab"
    ("''::BLOB", "BLOB", ""),
    ("'héllo ✓ 日本 🦆'", "VARCHAR", "héllo ✓ 日本 🦆"),
    ("'10110'::BIT", "BIT", "10110"),
    ("'b'::ENUM('a', 'b')", "ENUM('a', 'b')", "b"),
    ("[1, 2, NULL]", "INTEGER[]", [1, 2, None]),
    ("[[1, 2], []]", "INTEGER[][]", [[1, 2], []]),
    ("[1.5, 'nan'::DOUBLE]::DOUBLE[2]", "DOUBLE[2]", [1.5, None]),
    (
        "{'a': 1, 'b': 'x', 'c': NULL::INTEGER}",
        "STRUCT(a INTEGER, b VARCHAR, c INTEGER)",
        {"a": 1, "b": "x", "c": None},
    ),
    ("MAP {'k': 1, 'j': 2}", "MAP(VARCHAR, INTEGER)", {"k": 1, "j": 2}),
    ("MAP {1: 'one', 2: 'two'}", "MAP(INTEGER, VARCHAR)", {"1": "one", "2": "two"}),
    ("MAP {[1]: 'x'}", "MAP(INTEGER[], VARCHAR)", {"key": [[1]], "value": ["x"]}),
    (
        "union_value(num := 2)::UNION(num INTEGER, str VARCHAR)",
        "UNION(num INTEGER, str VARCHAR)",
        2,
    ),
    (
        "union_value(str := 'two')::UNION(num INTEGER, str VARCHAR)",
        "UNION(num INTEGER, str VARCHAR)",
        "two",
    ),
    ("'{\"a\": [1, 2]}'::JSON", "JSON", '{"a": [1, 2]}'),  # JSON text, not parsed
    ("NULL", '"NULL"', None),
    ("NULL::TIMESTAMP", "TIMESTAMP", None),
    (
        "[{'d': DATE '2026-01-02', 'b': '\\x00'::BLOB, 'f': 'inf'::DOUBLE, "
        "'m': MAP {'k': [TIME '01:02:03']}}]",
        "STRUCT(d DATE, b BLOB, f DOUBLE, m MAP(VARCHAR, TIME[]))[]",
        [{"d": "2026-01-02", "b": "AA==", "f": None, "m": {"k": ["01:02:03"]}}],
    ),
]


@pytest.mark.parametrize(
    ("expression", "type_name", "expected"), TYPES, ids=[t[1] + ":" + t[0][:30] for t in TYPES]
)
async def test_every_duckdb_type_comes_back_as_strict_json(
    shop: Settings, expression: str, type_name: str, expected: Any
) -> None:
    result = await run_query(shop, f"SELECT {expression} AS v")
    assert result["columns"] == [{"name": "v", "type": type_name}]
    value = result["rows"][0]["v"]
    assert value == expected
    assert type(value) is type(expected)
    # allow_nan=False: NaN/Infinity are not JSON, and must not reach the output.
    assert json.loads(json.dumps(result, allow_nan=False)) == result


async def test_timestamptz_is_iso_text_with_an_offset_for_the_same_instant(shop: Settings) -> None:
    result = await run_query(shop, "SELECT TIMESTAMPTZ '2026-03-01 13:45:30+02' AS v")
    assert result["columns"] == [{"name": "v", "type": "TIMESTAMP WITH TIME ZONE"}]
    value = result["rows"][0]["v"]
    assert isinstance(value, str)
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None  # the offset is the host's time zone
    assert parsed == dt.datetime(2026, 3, 1, 11, 45, 30, tzinfo=dt.UTC)


async def test_one_result_holding_every_type_serialises_as_strict_json(shop: Settings) -> None:
    columns = ", ".join(f"{expression} AS c{i}" for i, (expression, _, _) in enumerate(TYPES))
    result = await run_query(
        shop, f"SELECT {columns}, TIMESTAMPTZ '2026-03-01 13:45:30+02' AS tz FROM range(3)"
    )
    assert result["row_count"] == 3
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert [result["rows"][0][f"c{i}"] for i in range(len(TYPES))] == [t[2] for t in TYPES]


# -- parameters ------------------------------------------------------------------------


async def test_placeholders_bind_strings_numbers_and_null(shop: Settings) -> None:
    result = await run_query(
        shop, "SELECT ? AS s, ? AS i, ? AS f, ? AS nothing", params=["text ✓", 7, 2.5, None]
    )
    assert result["rows"] == [{"s": "text ✓", "i": 7, "f": 2.5, "nothing": None}]
    people = await run_query(
        shop, "SELECT id FROM people WHERE name = ? OR score > ? ORDER BY id", params=["O'Brien", 9]
    )
    assert people["rows"] == [{"id": 1}, {"id": 4}]


async def test_a_parameter_is_a_value_never_sql(shop: Settings) -> None:
    result = await run_query(
        shop, "SELECT count(*) AS n FROM people WHERE name = ?", params=["x' OR '1'='1"]
    )
    assert result["rows"] == [{"n": 0}]


async def test_too_few_params_is_invalid_args_naming_the_missing_placeholder(
    shop: Settings,
) -> None:
    with pytest.raises(InvalidArgsError) as caught:
        await run_query(shop, "SELECT ? AS a, ? AS b", params=["x"])
    assert caught.value.message == (
        "sql.query: Invalid Input Error: Values were not provided for the following parameters: 2"
    )


async def test_params_missing_entirely_is_invalid_args(shop: Settings) -> None:
    with pytest.raises(InvalidArgsError) as caught:
        await run_query(shop, "SELECT ? AS a")
    assert caught.value.message == (
        "sql.query: Invalid Input Error: Values were not provided for the following parameters: 1"
    )


async def test_too_many_params_is_invalid_args_naming_the_excess(shop: Settings) -> None:
    with pytest.raises(InvalidArgsError) as caught:
        await run_query(shop, "SELECT ? AS a", params=["x", 2])
    assert caught.value.message == (
        "sql.query: Invalid Input Error: Parameter argument/count "
        "mismatch, identifiers of the excess parameters: 2"
    )


# -- concurrency -----------------------------------------------------------------------


async def test_twenty_parallel_queries_on_one_engine_each_get_their_own_rows(
    shop: Settings,
) -> None:
    engine = await engine_for(shop)
    results: dict[int, dict[str, Any]] = {}

    async def one(key: int) -> None:
        results[key] = await run_query(
            shop,
            "SELECT n, label, ? AS key FROM numbers WHERE n % 20 = ? ORDER BY n",
            params=[key, key],
        )

    async with anyio.create_task_group() as group:
        for key in range(20):
            group.start_soon(one, key)
    assert await engine_for(shop) is engine
    for key in range(20):
        expected = [{"n": n, "label": f"row-{n}", "key": key} for n in range(key, NUMBERS, 20)]
        assert results[key]["rows"] == expected, key
        assert results[key]["truncated"] is False


async def test_parallel_plan_steps_query_at_once_and_each_gets_its_own_result(
    shop: Settings,
) -> None:
    sql = "SELECT count(*) AS c, sum(n) AS s FROM numbers, range(100) AS r WHERE n % 8 = ?"
    steps = [Step(id=f"q{k}", tool="sql.query", args={"sql": sql, "params": [k]}) for k in range(8)]
    fanned = Step(
        id="each",
        tool="sql.query",
        foreach=list(range(8)),
        args={
            "sql": "SELECT ? AS k, count(*) AS c FROM numbers WHERE n % 8 = ?",
            "params": ["${{ item }}", "${{ item }}"],
        },
    )
    result = await run_plan(shop, *steps, fanned)
    assert result.succeeded, result.error
    for k in range(8):
        expected = {"c": NUMBERS // 8 * 100, "s": sum(range(k, NUMBERS, 8)) * 100}
        assert result.steps[f"q{k}"].output["rows"] == [expected]
    assert [item["rows"] for item in result.steps["each"].output] == [
        [{"k": k, "c": NUMBERS // 8}] for k in range(8)
    ]
    started = [result.steps[f"q{k}"].started_at for k in range(8)]
    finished = [result.steps[f"q{k}"].finished_at for k in range(8)]
    assert max(started) < min(finished), "the independent steps did not overlap"


# -- timeouts --------------------------------------------------------------------------


async def test_a_query_past_the_timeout_is_interrupted_and_the_engine_still_works(
    shop_dir: Path,
) -> None:
    settings = sql_settings(sources={"shop": {"path": str(shop_dir)}}, timeout=0.5)
    engine = await engine_for(settings)
    start = time.monotonic()
    result = await run_plan(settings, Step(id="slow", tool="sql.query", args={"sql": HEAVY}))
    elapsed = time.monotonic() - start
    step = result.steps["slow"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TIMEOUT
    assert step.error.message == (
        "sql.query: the query did not finish within 0.5s and was interrupted"
    )
    assert step.error.details == {"timeout": 0.5}
    assert elapsed < 5, elapsed
    assert await engine_for(settings) is engine
    after = await run_query(settings, "SELECT count(*) AS c FROM numbers")
    assert after["rows"] == [{"c": NUMBERS}]


# -- planner-friendly errors -----------------------------------------------------------


async def test_unknown_column_is_invalid_args_with_candidates_columns_and_tables(
    shop: Settings,
) -> None:
    result = await run_plan(
        shop, Step(id="q", tool="sql.query", args={"sql": "SELECT nme FROM people"})
    )
    error = result.steps["q"].error
    assert error is not None
    assert error.failure_mode is FailureMode.INVALID_ARGS
    assert error.message == (
        'sql.query: Binder Error: Referenced column "nme" not found in FROM clause!\n'
        'Candidate bindings: "name", "joined"\n'
        "\n"
        "LINE 1: SELECT nme FROM people\n"
        "               ^^^\n"
        "Columns of people: id BIGINT, name VARCHAR, score DOUBLE, joined DATE\n"
        "Tables: numbers, people (sql.schema describes them)"
    )


async def test_unknown_table_is_invalid_args_with_did_you_mean(shop: Settings) -> None:
    with pytest.raises(InvalidArgsError) as caught:
        await run_query(shop, "SELECT * FROM peple")
    assert caught.value.message == (
        "sql.query: unknown table 'peple' (did you mean people?); the tables are: numbers, "
        "people (sql.schema describes them)"
    )


# -- sources ---------------------------------------------------------------------------


async def test_a_folder_source_gives_one_view_per_data_file(shop: Settings) -> None:
    engine = await engine_for(shop)
    assert engine.tables == {"numbers": "shop", "people": "shop"}  # notes.txt is no table
    result = await run_query(
        shop,
        "SELECT p.name, n.label FROM people AS p "
        "JOIN numbers AS n ON n.n = p.id ORDER BY p.id LIMIT 2",
    )
    assert result["rows"] == [
        {"name": "Ana", "label": "row-1"},
        {"name": "Björn Ø", "label": "row-2"},
    ]


def _write_parquet(path: Path) -> None:
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(k, t)) "
            f"TO '{path}' (FORMAT parquet)"
        )


FILE_SOURCES = {
    "data.csv": lambda p: p.write_text("k,t\n1,a\n2,b\n", encoding="utf-8"),
    "data.tsv": lambda p: p.write_text("k\tt\n1\ta\n2\tb\n", encoding="utf-8"),
    "data.parquet": _write_parquet,
    "data.json": lambda p: p.write_text(
        '[{"k": 1, "t": "a"}, {"k": 2, "t": "b"}]', encoding="utf-8"
    ),
    "data.jsonl": lambda p: p.write_text(
        '{"k": 1, "t": "a"}\n{"k": 2, "t": "b"}\n', encoding="utf-8"
    ),
}


@pytest.mark.parametrize("name", sorted(FILE_SOURCES))
async def test_a_single_file_source_is_one_view_named_after_the_source(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    FILE_SOURCES[name](path)
    settings = sql_settings(sources={"things": {"path": str(path)}})
    result = await run_query(settings, "SELECT k, t FROM things ORDER BY k")
    assert result["rows"] == [{"k": 1, "t": "a"}, {"k": 2, "t": "b"}]
    assert (await engine_for(settings)).tables == {"things": "things"}


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    path = tmp_path / "bank.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE accounts (id INTEGER, owner VARCHAR)")
        con.execute("INSERT INTO accounts VALUES (1, 'ann'), (2, 'bo')")
    return path


async def test_a_duckdb_file_is_readable_as_source_dot_table(bank: Path) -> None:
    settings = sql_settings(sources={"bank": {"path": str(bank)}})
    result = await run_query(settings, "SELECT id, owner FROM bank.accounts ORDER BY id")
    assert result["rows"] == [{"id": 1, "owner": "ann"}, {"id": 2, "owner": "bo"}]


async def test_a_duckdb_file_table_is_readable_unqualified(bank: Path) -> None:
    # The guard accepts `accounts` and sql.schema lists it so; DuckDB must find it too.
    settings = sql_settings(sources={"bank": {"path": str(bank)}})
    result = await run_query(settings, "SELECT id, owner FROM accounts ORDER BY id")
    assert result["rows"] == [{"id": 1, "owner": "ann"}, {"id": 2, "owner": "bo"}]


async def test_sql_schema_describes_a_duckdb_file_source(bank: Path) -> None:
    settings = sql_settings(sources={"bank": {"path": str(bank)}})
    described = await run_schema(settings, sample_rows=1)
    assert described == {
        "tables": [
            {
                "table": "accounts",
                "source": "bank",
                "columns": [
                    {"name": "id", "type": "INTEGER"},
                    {"name": "owner", "type": "VARCHAR"},
                ],
                "row_count": 2,
                "sample": [{"id": 1, "owner": "ann"}],
            }
        ]
    }


@pytest.mark.parametrize("neighbour", ["alone", "next to a writable source"])
async def test_a_duckdb_file_is_attached_read_only_even_past_the_guard(
    bank: Path, tmp_path: Path, neighbour: str
) -> None:
    sources: dict[str, Any] = {"bank": {"path": str(bank)}}
    if neighbour != "alone":
        ledger = tmp_path / "ledger.duckdb"
        with duckdb.connect(str(ledger)) as con:
            con.execute("CREATE TABLE entries (id INTEGER)")
        sources["ledger"] = {"path": str(ledger), "allow_write": True}
    settings = sql_settings(sources=sources)
    with pytest.raises(PolicyBlockedError) as caught:
        await run_query(settings, "INSERT INTO bank.accounts VALUES (3, 'eve')")
    assert caught.value.message == (
        "sql.query: refused: INSERT into 'bank.accounts': its source does not allow writes "
        "(set allow_write: true on the source to permit them)"
    )
    engine = await engine_for(settings)
    with pytest.raises(DagenticError) as bypass:  # layer 1 skipped: layer 2 must hold
        await engine.run(  # announced as a write, so it reaches DuckDB when one may be
            "INSERT INTO bank.accounts VALUES (3, 'eve')",
            None,
            max_rows=10,
            max_bytes=10_000,
            timeout=5,
            write_to="bank",
        )
    with duckdb.connect(str(bank), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM accounts").fetchone() == (2,)
    if neighbour == "alone":  # no source may be written: the engine's own check refuses
        assert bypass.value.message == (
            "sql.query: refused by the engine: INSERT is not a single read-only query"
        )
    else:  # the file is attached read-only
        assert bypass.value.message.startswith(
            "sql.query: refused by the engine: Invalid Input Error: Cannot execute statement "
            'of type "INSERT" on database "bank" which is attached in read-only mode'
        )
    # A guard refusing a write is policy_blocked, whichever layer refused it.
    assert bypass.value.failure_mode is FailureMode.POLICY_BLOCKED


async def test_a_missing_source_path_is_a_tool_error_naming_the_source_and_the_fix(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere"
    settings = sql_settings(sources={"warehouse": {"path": str(missing)}})
    result = await run_plan(settings, Step(id="q", tool="sql.query", args={"sql": "SELECT 1"}))
    error = result.steps["q"].error
    assert error is not None
    assert error.failure_mode is FailureMode.TOOL_ERROR
    assert error.message == (
        f"sql: source 'warehouse': {missing.resolve()} does not exist; fix the sql.sources setting"
    )


async def test_a_folder_without_data_files_is_a_tool_error(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no tables here\n", encoding="utf-8")
    settings = sql_settings(sources={"docs": {"path": str(tmp_path)}})
    with pytest.raises(ToolError) as caught:
        await run_schema(settings)
    assert caught.value.failure_mode is FailureMode.TOOL_ERROR
    assert caught.value.message == (
        f"sql: source 'docs': {tmp_path.resolve()} holds no .csv, .parquet or .json files"
    )


async def test_a_file_of_an_unknown_kind_is_a_tool_error(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK")
    settings = sql_settings(sources={"book": {"path": str(path)}})
    with pytest.raises(ToolError) as caught:
        await run_query(settings, "SELECT 1")
    assert caught.value.message == (
        "sql: source 'book': book.xlsx is not a .duckdb, .csv, "
        ".parquet or .json file, nor a folder of them"
    )


async def test_two_sources_defining_the_same_table_is_a_tool_error_naming_both(
    tmp_path: Path,
) -> None:
    for folder in ("east", "west"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "items.csv").write_text("id\n1\n", encoding="utf-8")
    settings = sql_settings(
        sources={"east": {"path": str(tmp_path / "east")}, "west": {"path": str(tmp_path / "west")}}
    )
    with pytest.raises(ToolError) as caught:  # today: a bare duckdb.CatalogException
        await run_query(settings, "SELECT * FROM items")
    assert "'items'" in caught.value.message
    assert "'east'" in caught.value.message
    assert "'west'" in caught.value.message


async def test_sql_schema_gives_tables_columns_types_row_counts_and_samples(shop: Settings) -> None:
    described = await run_schema(shop, sample_rows=2)
    assert described == {
        "tables": [
            {
                "table": "numbers",
                "source": "shop",
                "columns": [{"name": "n", "type": "BIGINT"}, {"name": "label", "type": "VARCHAR"}],
                "row_count": NUMBERS,
                "sample": [{"n": 0, "label": "row-0"}, {"n": 1, "label": "row-1"}],
            },
            {
                "table": "people",
                "source": "shop",
                "columns": [
                    {"name": "id", "type": "BIGINT"},
                    {"name": "name", "type": "VARCHAR"},
                    {"name": "score", "type": "DOUBLE"},
                    {"name": "joined", "type": "DATE"},
                ],
                "row_count": 4,
                "sample": [
                    {"id": 1, "name": "Ana", "score": 9.5, "joined": "2024-01-02"},
                    {"id": 2, "name": "Björn Ø", "score": 7.25, "joined": "2024-02-29"},
                ],
            },
        ]
    }
    json.dumps(described, allow_nan=False)


# -- the bundled sample data -----------------------------------------------------------

needs_sample = pytest.mark.skipif(
    not (SAMPLE_DATA / "sales.csv").exists(), reason="plugins/sql/sample_data is not generated"
)
SAMPLE_TABLES = {"customers": 300, "orders": 2000, "products": 40, "regions": 5, "sales": 4120}


@needs_sample
async def test_sql_schema_of_the_sample_data_lists_its_five_tables() -> None:
    described = await run_schema(sql_settings(), sample_rows=1)
    tables = {t["table"]: t for t in described["tables"]}
    assert {name: t["row_count"] for name, t in tables.items()} == SAMPLE_TABLES
    assert {t["source"] for t in described["tables"]} == {"sample"}
    assert [c["name"] for c in tables["sales"]["columns"]] == [
        "order_id",
        "product_id",
        "region",
        "quarter",
        "quantity",
        "amount",
    ]
    assert all(len(t["sample"]) == 1 for t in described["tables"])


@needs_sample
async def test_revenue_by_region_runs_as_a_plan_on_the_sample_data() -> None:
    result = await run_plan(
        sql_settings(),
        Step(id="tables", tool="sql.schema", args={"sample_rows": 0}),
        Step(
            id="revenue",
            tool="sql.query",
            args={"sql": "SELECT region, sum(amount) FROM sales GROUP BY 1 ORDER BY 2 DESC"},
        ),
        top="${{ steps.revenue.output.rows[0].region }}",
        regions="${{ steps.revenue.output.row_count }}",
    )
    assert result.succeeded, result.error
    assert result.outputs == {"top": "North", "regions": 5}
    output = result.steps["revenue"].output
    assert output["columns"] == [
        {"name": "region", "type": "VARCHAR"},
        {"name": "sum(amount)", "type": "DOUBLE"},
    ]
    by_region = {r["region"]: r["sum(amount)"] for r in output["rows"]}
    assert sorted(by_region) == ["Central", "East", "North", "South", "West"]
    assert sum(by_region.values()) == pytest.approx(615394.85, abs=0.01)
    assert by_region["North"] == pytest.approx(146249.85, abs=0.01)
    assert by_region["West"] == pytest.approx(139901.50, abs=0.01)
    assert {t["table"] for t in result.steps["tables"].output["tables"]} == set(SAMPLE_TABLES)
