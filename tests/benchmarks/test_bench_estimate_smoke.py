"""The estimate and tool-selection benchmarks must keep working; their numbers are read,
not asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from dagentic import load_tools

HERE = Path(__file__).parent


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_estimate_benchmark_runs_a_plan_and_reports_its_ratios() -> None:
    results = load("bench_estimate").main(["--runs", "2", "--plans", "mixed"])
    (first, second) = results["plans"]["mixed"]["runs"]
    assert (first["history_runs"], second["history_runs"]) == (0, 1)
    assert first["p50"] == 4.0  # no history: the default latency, four steps on the path
    assert results["median_ratio"] == second["ratio"] > 0


def test_the_synthetic_tools_are_200_valid_tools_beside_the_built_in_ones() -> None:
    made = load("bench_tool_selection").synthetic_tools()
    names = {t.name for t in made}
    assert len(made) == len(names) == 200
    assert not names & {t.name for t in load_tools()}
