"""The journal benchmark must keep working; its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent


def load_bench() -> ModuleType:
    sys.path.insert(0, str(HERE))  # it imports the plans of bench_executor
    spec = importlib.util.spec_from_file_location("bench_journal", HERE / "bench_journal.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_journal_benchmark_reports_both_modes_and_the_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    results = load_bench().main(["--quick", "--json", str(out)])
    assert set(results) == {"chain-200", "fanout-500", "resume-2000", "targets"}
    for plan in ("chain-200", "fanout-500"):
        assert set(results[plan]) == {"off", "on"}
        for mode in ("off", "on"):
            assert results[plan][mode]["us_per_step"] > 0
            assert results[plan][mode]["cpu_us_per_step"] >= 0
        assert "added_us_per_step" in results[plan]["on"]
    resume = results["resume-2000"]
    assert (resume["steps"], resume["done_before"]) == (200, 100)
    assert resume["resume_median_s"] > resume["read_median_s"] > 0
    assert set(results["targets"]) == {"added_us_per_step", "resume_s"}
    assert json.loads(out.read_text()) == results
    printed = capsys.readouterr().out
    assert "journal off" in printed and "µs/step" in printed and "target: resuming" in printed


def test_the_half_done_plan_has_the_asked_size() -> None:
    bench = load_bench()
    plan = bench.half_done(2000)
    assert len(plan.steps) == 2000
    assert sum(s.id.startswith("a") for s in plan.steps) == 1000
