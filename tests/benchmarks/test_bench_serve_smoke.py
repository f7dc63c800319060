"""The dagentic serve benchmark must keep working (tiny: 6 runs of 3 steps, with the
kill -9 and restart); its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_serve", HERE / "bench_serve.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_serve_benchmark_runs_every_run_once_through_a_kill_and_a_restart(
    capsys: object,
) -> None:
    results = load_bench().main(["--runs", "6", "--steps", "3", "--alone", "2"])
    steady, killed = results["steady"], results["kill"]
    for phase in (steady, killed):
        assert (phase["runs"], phase["steps"], phase["all_succeeded_once"]) == (6, 3, True)
        assert phase["submit_p95_ms"] >= phase["submit_p50_ms"] > 0
    assert killed["answered_before_kill"] + killed["unanswered"] == 6
    assert killed["interrupted"] + killed["finished_before_kill"] <= 6
