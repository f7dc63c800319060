"""The tracing benchmark must keep working; its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent
MODES = ("off", "noop", "noop+metrics", "jsonl", "jsonl+metrics")


def load_bench() -> ModuleType:
    sys.path.insert(0, str(HERE))  # it imports the plans of bench_executor
    spec = importlib.util.spec_from_file_location("bench_tracing", HERE / "bench_tracing.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_tracing_benchmark_reports_every_mode_and_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    results = load_bench().main(["--quick", "--json", str(out)])
    plans = {"chain-50", "fanout-50", "layered-5x10"}
    assert set(results) == plans | {"targets"}
    for plan in plans:
        assert set(results[plan]) == set(MODES)
        for mode in MODES:
            row = results[plan][mode]
            assert row["loop_us_per_step"] > 0 and row["total_us_per_step"] > 0
            if mode != "off":
                assert "added_total_us" in row and "added_loop_us" in row
    assert set(results["targets"]) == set(MODES) - {"off"}
    assert json.loads(out.read_text()) == results
    printed = capsys.readouterr().out
    assert "µs/step" in printed and "target jsonl+metrics" in printed
