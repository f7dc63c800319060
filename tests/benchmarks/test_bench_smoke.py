"""The benchmark scripts must keep working; their numbers are checked by reading them, not
by timed tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_executor_benchmark_runs_and_reports_every_workload(backend: str) -> None:
    spec = importlib.util.spec_from_file_location("bench_executor", HERE / "bench_executor.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--quick", "--backend", backend])
    assert set(results) == {
        "chain-200",
        "fanout-500",
        "layered-10x20",
        "sleep-fanout-50",
        "anyio-floor-50",
        "mixed",
        "memory-2000",
        "targets",
    }
    assert results["mixed"]["ratio"] >= 1.0
    assert results["memory-2000"]["peak_bytes_per_step"] > 0
