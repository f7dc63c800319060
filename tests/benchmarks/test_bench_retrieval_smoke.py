"""The retrieval benchmark must keep working; its numbers are read, not asserted (the test
embedder hashes words: it says nothing about embeddings)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_retrieval", HERE / "bench_retrieval.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    return bench


def test_the_retrieval_benchmark_reports_every_set_mode_and_measure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "retrieval.json"
    started = time.perf_counter()
    results = bench.main(["--embedder", "hash", "--json", str(out)])
    assert time.perf_counter() - started < 30
    assert results["embedder"] == "test-hash"
    assert set(results["sets"]) == {"memory", "tools", "routing"}
    for name, measured in results["sets"].items():
        ks = bench.KS[name]
        assert measured["queries"] >= 20 and measured["documents"] >= 10
        for mode in bench.MODES:
            r = measured[mode]
            assert {f"recall@{k}" for k in ks} | {"mrr", "latency"} == set(r)
            assert all(0 <= r[f"recall@{k}"] <= 1 for k in ks) and 0 <= r["mrr"] <= 1
            assert [r[f"recall@{k}"] for k in ks] == sorted(r[f"recall@{k}"] for k in ks)
        assert isinstance(measured["fused_never_worse"], bool)
    memory = results["sets"]["memory"]
    assert memory["documents"] >= 40 and memory["queries"] >= 25
    assert set(memory["index"]) == {*bench.MODES, "variants", "fusion"}
    assert results["sets"]["tools"]["fusion"] == [1.0, 0.0]  # tool selection: lexical
    assert results["sets"]["routing"]["documents"] >= 8
    assert results["sets"]["routing"]["queries"] >= 30
    # words in common suffice for the lexical side of these sets, whatever the embedder
    assert results["sets"]["tools"]["lexical"]["recall@10"] > 0.8
    assert results["sets"]["routing"]["lexical"]["recall@3"] > 0.6
    assert json.loads(out.read_text(encoding="utf-8")) == results
    printed = capsys.readouterr().out
    assert "fused never worse than lexical or embedding alone" in printed


def test_the_sets_name_only_what_they_hold() -> None:
    bench = load_bench()
    documents, queries = bench.memory_set()
    assert len({d.id for d in documents}) == len(documents) >= 40
    assert all(q.relevant for q in queries) and len(queries) >= 25
    plans, goals = bench.routing_set()
    names = {p.id for p in plans}
    assert all(g.relevant <= names for g in goals)
    assert len({next(iter(g.relevant)) for g in goals}) >= 8
