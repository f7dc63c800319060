"""The web.search benchmark must keep working; its numbers are read, not asserted."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent
SUMMARY = {"runs", "p50_ms", "p95_ms", "min_ms", "max_ms", "mean_ms"}


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_web", HERE / "bench_web.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_web_benchmark_runs_and_reports_every_measurement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "bench.json"
    started = time.perf_counter()
    results = bench.main(["--quick", "--json", str(out)])
    assert time.perf_counter() - started < 15
    quick = bench.QUICK
    assert set(results) == {
        "corpus",
        "build",
        "refresh",
        "refresh_changed",
        "index",
        "query",
        "query_by_kind",
        "tool",
        "ratios",
        "targets",
        "environment",
    }

    corpus = results["corpus"]
    assert corpus["documents"] == quick["docs"] == sum(corpus["formats"].values())
    assert set(corpus["formats"]) == {"md", "txt", "html"}
    assert corpus["formats"]["md"] > corpus["formats"]["txt"] > 0
    assert corpus["formats"]["html"] > 0
    assert corpus["documents"] * 100 <= corpus["words_approx"]
    assert corpus["vocabulary"] >= 2000

    assert results["build"]["documents"] == quick["docs"]
    assert results["build"]["seconds"] > 0 and results["build"]["docs_per_second"] > 0
    assert results["refresh"]["unchanged"] == quick["docs"]
    assert results["refresh_changed"]["updated"] == max(1, quick["docs"] // 100)
    assert results["index"]["bytes"] > 0 and results["index"]["files"] > 0

    for name, runs in (("query", quick["queries"]), ("tool", quick["tool_queries"])):
        assert set(results[name]) >= SUMMARY
        assert results[name]["runs"] == runs
        assert 0 < results[name]["min_ms"] <= results[name]["p50_ms"] <= results[name]["max_ms"]
        assert 0 < results[name]["results_mean"] <= 5
    assert 0 <= results["query"]["empty_share"] < 0.5
    assert set(results["query_by_kind"]) == {"plain", "site", "recency"}
    assert sum(s["runs"] for s in results["query_by_kind"].values()) == quick["queries"]

    assert set(results["ratios"]) == {
        "refresh_over_build",
        "refresh_changed_over_build",
        "tool_over_query_p50",
        "query_p95_over_p50",
    }
    assert results["ratios"]["refresh_over_build"] < 1
    assert set(results["targets"]) == {"query_p50_ms"}
    target = results["targets"]["query_p50_ms"]
    assert target["target"] == 20.0 and target["value"] == results["query"]["p50_ms"]
    assert target["met"] is (target["value"] <= 20.0)
    assert json.loads(out.read_text(encoding="utf-8")) == results

    printed = capsys.readouterr().out
    assert f"{quick['docs']} documents" in printed
    last = printed.splitlines()[-1]
    assert last.startswith("target query_p50_ms: ")
    assert last.endswith(("ms (target 20 ms) met", "ms (target 20 ms) MISSED"))


def test_the_generated_documents_are_the_same_for_the_same_seed(tmp_path: Path) -> None:
    bench = load_bench()
    first, second = (bench.Writer(7).document(i) for i in (3, 3))
    assert first == second
    assert bench.Writer(7).document(3) != bench.Writer(8).document(3)
    assert bench.generate(tmp_path / "a", 20, 7) == bench.generate(tmp_path / "b", 20, 7)

    def files(folder: Path) -> list[tuple[Path, bytes]]:
        return sorted(
            (p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file()
        )

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert len(files(tmp_path / "a")) == 20
