"""The planner benchmark must keep working with the real local model; its numbers are read,
not asserted. The goals file must stay well-formed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from dagentic import load_tools

HERE = Path(__file__).parent
RECORD = {
    "id",
    "text",
    "expect",
    "expected_tools",
    "outcome",
    "attempts",
    "first_try_valid",
    "valid_after_repair",
    "plan_tools",
    "steps",
    "checks",
    "overlap",
    "problems",
    "attempt_modes",
    "missing",
    "error",
    "plan",
    "execution",
    "wall_s",
    "model_calls",
    "failed_calls",
    "input_tokens",
    "output_tokens",
    "tokens",
    "missing_capability_correct",
}
STATS = {"median", "mean", "min", "max"}


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_planner", HERE / "bench_planner.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_goals_file_parses_with_enough_unique_goals_over_installed_tools() -> None:
    bench = load_bench()
    goals = bench.load_goals(HERE / "goals.yaml")
    assert len(goals) >= 20
    ids = [g["id"] for g in goals]
    assert len(ids) == len(set(ids))
    installed = {t.name for t in load_tools()}
    for goal in goals:
        assert goal["text"] and set(goal["tools"]) <= installed, goal
    refuse = [g for g in goals if g["expect"] == "missing_capability"]
    assert len(refuse) == 2 and all(not g["tools"] for g in refuse)
    assert sum(1 for g in goals if len(g["tools"]) >= 2) >= 5
    assert {"sql.query", "web.search", "code.python"} <= {t for g in goals for t in g["tools"]}
    quick = bench.quick_goals(goals)
    assert [g["expect"] for g in quick] == ["plan", "missing_capability"]


def test_goals_file_errors_are_reported(tmp_path: Path) -> None:
    bench = load_bench()
    bad = tmp_path / "goals.yaml"
    bad.write_text("goals:\n  - {id: a, text: x}\n  - {id: a, text: y}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unique"):
        bench.load_goals(bad)
    bad.write_text("goals:\n  - {id: a, text: x, expect: maybe}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expect"):
        bench.load_goals(bad)


@pytest.mark.timeout(600)
def test_planner_benchmark_quick_with_the_local_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no dagentic.toml around; --execute writes only in a temp dir
    bench = load_bench()
    out = tmp_path / "bench.json"
    results = bench.main(["--quick", "--execute", "--model", "local", "--json", str(out)])

    assert set(results) == {"model", "config", "environment", "summary", "goals", "seconds"}
    assert results["config"] == {
        **results["config"],
        "goals": 2,
        "repairs": 0,
        "quick": True,
        "execute": True,
    }
    assert results["model"]["spec"] == "local" and results["model"]["name"]
    records = results["goals"]
    assert [r["expect"] for r in records] == ["plan", "missing_capability"]
    for r in records:
        assert set(r) == RECORD
        assert r["outcome"] in bench.OUTCOMES
        assert r["outcome"] != "valid_after_repair"  # no repairs in --quick
        assert r["model_calls"] == r["attempts"] == 1  # one call, nothing else
        assert r["input_tokens"] > 0 and r["output_tokens"] > 0
        assert r["tokens"] == r["input_tokens"] + r["output_tokens"]
        assert r["wall_s"] > 0
        valid = r["outcome"] == "valid_first_try"
        assert r["first_try_valid"] is valid
        assert (r["plan"] is not None) is valid is (r["overlap"] is not None)
        assert (r["execution"] is not None) is valid
        if valid:
            assert r["plan_tools"] and r["steps"] >= 1
            assert r["execution"]["status"] in ("succeeded", "failed", "cancelled")

    s = results["summary"]
    assert s["goals"] == 2 and s["plan_goals"] == 1 and s["missing_capability_goals"] == 1
    assert set(s["counts"]) == set(bench.OUTCOMES)
    classes = s["failure_classes"]
    assert set(classes["per_attempt"]) == set(classes["final"]) == set(bench.CLASSES)
    assert (
        classes["attempts_rejected"]
        == sum(classes["per_attempt"].values())
        == sum(len(r["attempt_modes"]) for r in records)
    )
    assert classes["final"] == {k: s["counts"][k] for k in bench.CLASSES}
    assert all(set(r["attempt_modes"]) <= set(bench.CLASSES) for r in records)
    assert sum(s["counts"].values()) == 2
    assert s["counts"]["valid_after_repair"] == 0
    assert abs(sum(s["shares"].values()) - 1) < 1e-9
    assert s["valid"] == s["counts"]["valid_first_try"]
    m = s["missing_capability"]
    assert m["expected"] == 1 and 0 <= m["correct"] <= 1 and 0 <= m["false_refusals"] <= 1
    assert (
        sum(r["outcome"] == "missing_capability" for r in records)
        == s["counts"]["missing_capability"]
        == m["correct"] + m["false_refusals"]
    )
    assert set(s["per_goal"]) == {
        "model_calls",
        "input_tokens",
        "output_tokens",
        "tokens",
        "wall_s",
    }
    for name, st in s["per_goal"].items():
        assert set(st) == STATS
        assert st["min"] <= st["median"] <= st["max"]
        assert s["totals"][name] == pytest.approx(sum(r[name] for r in records))
    assert s["totals"]["model_calls"] == 2
    assert s["execution"]["runs"] == s["valid"] == sum(s["execution"]["status"].values())
    assert json.loads(out.read_text(encoding="utf-8")) == results

    printed = capsys.readouterr().out
    assert all(r["id"] in printed for r in records)
    assert "valid on first try" in printed and "plan_invalid" in printed
    assert "missing_capability" in printed and "wall time (s) per goal" in printed
