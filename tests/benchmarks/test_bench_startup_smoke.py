"""The startup benchmark must keep working; its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent
TARGETS = ("import", "help", "validate")


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_startup", HERE / "bench_startup.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_startup_benchmark_times_every_case_against_the_floor_and_its_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    results = load_bench().main(["--repeat", "1", "--json", str(out)])
    assert set(results) == {"floor", *TARGETS}
    for row in results.values():
        assert row["runs"] == 1 and row["p50_ms"] > 0 and row["cpu_p50_ms"] >= 0
    for name in TARGETS:
        row = results[name]
        assert row["ratio_to_floor"] == pytest.approx(row["p50_ms"] / results["floor"]["p50_ms"])
        assert row["ratio_to_target"] == pytest.approx(row["p50_ms"] / 1e3 / row["target_s"])
        assert row["met"] is (row["ratio_to_target"] <= 1)
    assert json.loads(out.read_text()) == results
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("startup benchmark (median of 1, Python ")
    assert [line.split(":")[0] for line in printed[-3:]] == [f"target {n}" for n in TARGETS]


def test_a_command_that_fails_stops_the_benchmark(tmp_path: Path) -> None:
    bench = load_bench()
    with pytest.raises(SystemExit) as stopped:
        bench.start([bench.DAGENTIC, "validate", str(tmp_path / "missing.yaml")], str(tmp_path), {})
    assert str(stopped.value).startswith(f"bench_startup: {bench.DAGENTIC} validate ")
    assert " exited 2: " in str(stopped.value)
