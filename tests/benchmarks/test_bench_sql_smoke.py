"""The SQL benchmark must keep working; its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent
WORKLOADS = ("guard", "duckdb", "tool", "tool-trivial", "plan-step")


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sql", HERE / "bench_sql.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("data", ["default", "generated"])
def test_sql_benchmark_runs_and_reports_every_workload(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "bench.json"
    argv = ["--quick", "--json", str(out)] + (["--generated"] if data == "generated" else [])
    results = bench.main(argv)
    assert set(results) == {*WORKLOADS, "query", "guard_share_of_tool", "targets"}
    for name in WORKLOADS:
        assert set(results[name]) == {"runs", "p50_ms", "p95_ms", "min_ms", "max_ms", "mean_ms"}
        assert results[name]["runs"] == 5
        assert 0 < results[name]["min_ms"] <= results[name]["p50_ms"] <= results[name]["max_ms"]
    query = results["query"]
    assert set(query) == {"bytes", "rows_returned", "sales_rows", "data"}
    assert 1000 <= query["bytes"] <= 1500
    assert query["rows_returned"] > 0
    if data == "generated":
        assert query == {**query, "data": "generated", "sales_rows": 100_000}
    assert 0 < results["guard_share_of_tool"] < 1
    assert set(results["targets"]) == {"guard_p50_ms"}
    assert results["targets"]["guard_p50_ms"]["target"] == 2.0
    assert json.loads(out.read_text(encoding="utf-8")) == results
    printed = capsys.readouterr().out
    assert "target guard_p50_ms:" in printed
