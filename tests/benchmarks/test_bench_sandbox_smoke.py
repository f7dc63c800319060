"""The sandbox benchmark must keep working; its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).parent


def test_sandbox_benchmark_runs_and_reports_every_workload() -> None:
    spec = importlib.util.spec_from_file_location("bench_sandbox", HERE / "bench_sandbox.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--quick"])
    assert set(results) == {
        "docker-cold",
        "docker-warm",
        "process",
        "throughput-docker",
        "throughput-docker-cold",
        "throughput-process",
        "targets",
    }
    for name in ("docker-cold", "docker-warm", "process"):
        assert results[name]["runs"] == 3
        assert set(results[name]) == {"runs", "p50_ms", "p95_ms", "min_ms", "max_ms", "mean_ms"}
        assert 0 < results[name]["min_ms"] <= results[name]["p50_ms"] <= results[name]["max_ms"]
    for name in ("throughput-docker", "throughput-docker-cold", "throughput-process"):
        assert results[name]["snippets"] == 8
        assert results[name]["snippets_per_s"] > 0
    assert set(results["targets"]) == {"docker_warm_p50_ms", "docker_cold_p50_ms", "process_p50_ms"}
    assert {t["target"] for t in results["targets"].values()} == {80.0, 400.0, 40.0}
