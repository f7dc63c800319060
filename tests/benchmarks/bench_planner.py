"""Planner benchmark: how often a model turns plain-English goals into valid plans, and at
what cost in model calls, tokens and time.

Run:  .venv/bin/python tests/benchmarks/bench_planner.py [--model local] [--repairs 2]
          [--goals FILE] [--limit N] [--execute] [--quick] [--json FILE]

Each goal of tests/benchmarks/goals.yaml (questions over the sample database, the local
news index and code, some needing two or three tools, two needing a capability nobody
provides) is planned by dagentic.LLMPlanner over every installed tool (dagentic.load_tools())
with --repairs repair rounds (default 2), through dagentic.models.metered.Metered so each
model call and its tokens are counted. Per goal it records the outcome
  valid_first_try     the first plan validated
  valid_after_repair  a repair round made it valid (attempts > 1)
  invalid_tool        still invalid after the last repair, which named a tool nobody provides
  invalid_args        ... whose arguments did not fit a tool's schema
  plan_invalid        ... for any other reason (JSON, structure, references, expressions)
  missing_capability  the model answered {"missing_capability": ...}
  error               a model call failed (ModelError, timeout, ...)
and the class of every rejected attempt (invalid_tool, invalid_args or plan_invalid, as
dagentic.planner.attempt_mode classes it), counted per attempt and for the final outcome
in the summary ("failure classes"),
and the model calls, input/output tokens, wall time, and the tools the plan uses against
the tools a good plan would use (`tools` in goals.yaml: reported, never graded). The two
goals marked `expect: missing_capability` are right only when the model says so; a
missing_capability answer to any other goal counts as a false refusal.

--execute also runs every valid plan with dagentic.Executor (web.search on a fresh local
index and no cache, in a temporary folder; code.python in the sandbox settings' backend)
and records the run's status and failure modes. Off by default: the benchmark measures
planning.

--model takes what `dagentic ask --model` takes: `local` (the bundled Gemma 3 270M GGUF on
llama-cpp-python, the default), `local:PATH.gguf`, or `openai:NAME` for any
OpenAI-compatible endpoint, configured by the usual settings (dagentic.toml or DAGENTIC_*
variables: model.base_url, model.api_key or OPENAI_API_KEY, model.structured_output).
The same command measures another model, e.g. the same GGUF behind llama-cpp-python's
server, or any model behind vLLM / Ollama (structured_output json_schema, the default):

  .venv/bin/python -m llama_cpp.server --model MODEL.gguf --port 8000 &
  DAGENTIC_MODEL__BASE_URL=http://127.0.0.1:8000/v1 DAGENTIC_MODEL__STRUCTURED_OUTPUT=json_object \\
      .venv/bin/python tests/benchmarks/bench_planner.py --model openai:NAME

--quick plans two goals (the first goal and the first `expect: missing_capability` goal)
with no repairs, for the smoke test. Wall time per goal is that of its model calls; with
the local model, calls after the first reuse the cached prompt prefix (system prompt and
tool list), so the first goal takes longer. There is no target: the numbers describe the model
(temperature and seed come from the model settings; the local model is deterministic).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import yaml
from dagentic import (
    DagenticError,
    Executor,
    PlanningError,
    Settings,
    ToolRegistry,
    close_sandboxes,
    load_tools,
)
from dagentic.agent import planning_context
from dagentic.graph import CompiledPlan
from dagentic.models import Model, make_model
from dagentic.models.metered import Metered
from dagentic.planner import LLMPlanner, MissingCapabilityError, attempt_mode
from stats import describe, make_parser, python_version, write_results

HERE = Path(__file__).parent
GOALS = HERE / "goals.yaml"
CLASSES = ("invalid_tool", "invalid_args", "plan_invalid")  # of a rejected attempt
OUTCOMES = ("valid_first_try", "valid_after_repair", *CLASSES, "missing_capability", "error")
EXPECTS = ("plan", "missing_capability")
DEFAULT_REPAIRS = 2
EXECUTE_TIMEOUT = 120.0
SHORT = {
    "sql.query": "sql",
    "sql.schema": "schema",
    "web.search": "search",
    "web.fetch": "fetch",
    "code.python": "python",
    "notify.log": "log",
}


# --------------------------------------------------------------------------- goals


def load_goals(path: str | Path = GOALS) -> list[dict[str, Any]]:
    """The goals of a goals file, checked: id, text, tools, expect (default ``plan``)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    items = data.get("goals") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a mapping with a non-empty list `goals`")
    goals, seen = [], set()
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: goal {n} is not a mapping")
        gid, text = item.get("id"), item.get("text")
        tools, expect = item.get("tools", []), item.get("expect", "plan")
        if not isinstance(gid, str) or not gid or gid in seen:
            raise ValueError(f"{path}: goal {n} needs a unique string id, got {gid!r}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: goal {gid} needs a text")
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise ValueError(f"{path}: goal {gid}: tools must be a list of tool names")
        if expect not in EXPECTS:
            raise ValueError(f"{path}: goal {gid}: expect must be one of {EXPECTS}")
        seen.add(gid)
        goals.append(
            {
                "id": gid,
                "text": " ".join(text.split()),
                "tools": list(tools),
                "expect": expect,
                "missing": item.get("missing"),
            }
        )
    return goals


def quick_goals(goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first goal to plan and the first goal nobody can plan."""
    first = next((g for g in goals if g["expect"] == "plan"), goals[0])
    missing = next((g for g in goals if g["expect"] == "missing_capability"), None)
    return [first] + ([missing] if missing is not None else [])


# --------------------------------------------------------------------------- measuring


def overlap(used: list[str], expected: list[str]) -> dict[str, Any]:
    """The tools a plan uses against the tools a good plan would use."""
    u, e = set(used), set(expected)
    return {
        "common": sorted(u & e),
        "missing": sorted(e - u),
        "extra": sorted(u - e),
        "recall": len(u & e) / len(e) if e else None,
        "jaccard": len(u & e) / len(u | e) if u | e else None,
        "exact": u == e,
    }


async def execute(
    compiled: CompiledPlan, tools: ToolRegistry, settings: Settings, timeout: float
) -> dict[str, Any]:
    """Run one valid plan; its status and failure modes."""
    executor = Executor(tools, settings=settings)
    t0 = time.perf_counter()
    try:
        run = await executor.run(compiled, timeout=timeout)
    except DagenticError as exc:
        mode = exc.failure_mode.value if exc.failure_mode else "error"
        return {
            "status": "failed",
            "failure_mode": mode,
            "message": exc.message[:300],
            "steps": 0,
            "steps_failed": 0,
            "step_failure_modes": {},
            "wall_s": time.perf_counter() - t0,
        }
    modes = Counter(s.error.failure_mode.value for s in run.steps.values() if s.error is not None)
    return {
        "status": run.status.value,
        "failure_mode": run.error.failure_mode.value if run.error else None,
        "message": run.error.message[:300] if run.error else None,
        "steps": len(run.steps),
        "steps_failed": sum(1 for s in run.steps.values() if s.error is not None),
        "step_failure_modes": dict(sorted(modes.items())),
        "wall_s": time.perf_counter() - t0,
    }


async def plan_goal(
    model: Model,
    tools: ToolRegistry,
    goal: dict[str, Any],
    repairs: int,
    run_settings: Settings | None,
    timeout: float,
    context: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Plan one goal through a fresh meter, with the planning context an Agent would give
    (the planning_context tools' outputs); what happened and what it cost."""
    metered = Metered(model)
    planner = LLMPlanner(metered.using("plan"), tools, max_repairs=repairs)
    record: dict[str, Any] = {
        "id": goal["id"],
        "text": goal["text"],
        "expect": goal["expect"],
        "expected_tools": goal["tools"],
        "outcome": None,
        "attempts": 0,
        "first_try_valid": False,
        "valid_after_repair": False,
        "plan_tools": [],
        "steps": 0,
        "checks": 0,
        "overlap": None,
        "problems": [],
        "attempt_modes": [],  # the class of each rejected attempt, in order
        "missing": None,
        "error": None,
        "plan": None,
        "execution": None,
    }
    compiled = None
    t0 = time.perf_counter()
    try:
        result = await planner.plan(goal["text"], context=context)
    except MissingCapabilityError as exc:
        record["outcome"] = "missing_capability"
        record["missing"] = str(exc.fields.get("missing", exc.message))[:300]
    except PlanningError as exc:
        record["outcome"] = exc.failure_mode.value  # the last attempt's class
        record["problems"] = [p.message[:300] for p in exc.problems[:5]]
        record["attempt_modes"] = [attempt_mode(a).value for a in exc.attempts]
    except DagenticError as exc:  # the model call failed
        record["outcome"] = "error"
        record["error"] = {
            "failure_mode": exc.failure_mode.value if exc.failure_mode else None,
            "type": type(exc).__name__,
            "message": exc.message[:300],
        }
    else:
        compiled = result.compiled
        steps = compiled.plan.steps
        record["outcome"] = "valid_first_try" if result.attempts == 1 else "valid_after_repair"
        record["first_try_valid"] = result.attempts == 1
        record["valid_after_repair"] = result.attempts > 1
        record["attempts"] = result.attempts
        record["problems"] = [p[0][:300] for p in result.problems if p]
        record["attempt_modes"] = [m.value for m in result.failure_modes]
        record["plan_tools"] = sorted({s.tool for s in steps if s.tool})
        record["steps"] = sum(1 for s in steps if s.tool)
        record["checks"] = sum(1 for s in steps if s.check is not None)
        record["overlap"] = overlap(record["plan_tools"], goal["tools"])
        record["plan"] = compiled.plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    record["wall_s"] = time.perf_counter() - t0
    calls = metered.calls
    record["model_calls"] = len(calls)
    record["failed_calls"] = sum(1 for c in calls if c.error is not None)
    if not record["attempts"]:
        record["attempts"] = len(calls)
    record["input_tokens"] = sum(c.input_tokens for c in calls)
    record["output_tokens"] = sum(c.output_tokens for c in calls)
    record["tokens"] = record["input_tokens"] + record["output_tokens"]
    record["missing_capability_correct"] = (record["outcome"] == "missing_capability") == (
        goal["expect"] == "missing_capability"
    )
    if compiled is not None and run_settings is not None:
        record["execution"] = await execute(compiled, tools, run_settings, timeout)
    return record


def summarize(records: list[dict[str, Any]], executed: bool) -> dict[str, Any]:
    n = len(records)
    counts = Counter(r["outcome"] for r in records)
    counts_all = {k: counts.get(k, 0) for k in OUTCOMES}
    share = {k: (v / n if n else 0.0) for k, v in counts_all.items()}
    valid = counts_all["valid_first_try"] + counts_all["valid_after_repair"]
    to_plan = [r for r in records if r["expect"] == "plan"]
    to_refuse = [r for r in records if r["expect"] == "missing_capability"]
    plans = [r for r in records if r["overlap"] is not None]
    graded = [r for r in plans if r["overlap"]["recall"] is not None]
    summary: dict[str, Any] = {
        "goals": n,
        "plan_goals": len(to_plan),
        "missing_capability_goals": len(to_refuse),
        "counts": counts_all,
        "shares": share,
        "valid": valid,
        "valid_share": valid / n if n else 0.0,
        "failure_classes": {
            "per_attempt": {k: sum(r["attempt_modes"].count(k) for r in records) for k in CLASSES},
            "attempts_rejected": sum(len(r["attempt_modes"]) for r in records),
            "attempts": sum(r["attempts"] for r in records),
            "final": {k: counts_all[k] for k in CLASSES},
        },
        "valid_share_of_plan_goals": (
            sum(1 for r in to_plan if r["outcome"].startswith("valid")) / len(to_plan)
        )
        if to_plan
        else None,
        "missing_capability": {
            "expected": len(to_refuse),
            "correct": sum(1 for r in to_refuse if r["outcome"] == "missing_capability"),
            "false_refusals": sum(1 for r in to_plan if r["outcome"] == "missing_capability"),
        },
        "tools": {
            "plans": len(plans),
            "exact_share": (sum(1 for r in graded if r["overlap"]["exact"]) / len(graded))
            if graded
            else None,
            "recall_mean": statistics.fmean(r["overlap"]["recall"] for r in graded)
            if graded
            else None,
            "jaccard_mean": statistics.fmean(r["overlap"]["jaccard"] for r in graded)
            if graded
            else None,
            "plans_with_extra_tools": sum(1 for r in plans if r["overlap"]["extra"]),
            "used": dict(sorted(Counter(t for r in plans for t in r["plan_tools"]).items())),
        },
        "per_goal": {
            key: describe([float(r[key]) for r in records])
            for key in ("model_calls", "input_tokens", "output_tokens", "tokens", "wall_s")
        },
        "totals": {
            key: sum(r[key] for r in records)
            for key in ("model_calls", "input_tokens", "output_tokens", "tokens", "wall_s")
        },
    }
    if executed:
        runs = [r["execution"] for r in records if r["execution"] is not None]
        summary["execution"] = {
            "runs": len(runs),
            "status": dict(sorted(Counter(x["status"] for x in runs).items())),
            "failure_modes": dict(
                sorted(Counter(x["failure_mode"] for x in runs if x["failure_mode"]).items())
            ),
            "step_failure_modes": dict(
                sorted(sum((Counter(x["step_failure_modes"]) for x in runs), Counter()).items())
            ),
            "succeeded_share_of_plan_goals": (
                sum(1 for x in runs if x["status"] == "succeeded") / len(to_plan)
            )
            if to_plan
            else None,
        }
    return summary


# --------------------------------------------------------------------------- report


def _tools(names: list[str]) -> str:
    return ",".join(SHORT.get(t, t) for t in names) or "-"


def header(executed: bool) -> str:
    line = (
        f"{'goal':30} {'outcome':22} {'att':>3} {'in_tok':>6} {'out_tok':>7} "
        f"{'wall_s':>6}  {'plan tools':21} {'expected':21} {'recall':>6}"
    )
    return line + ("  run" if executed else "")


def row(r: dict[str, Any], executed: bool) -> str:
    outcome = r["outcome"]
    if r["expect"] == "missing_capability":
        outcome += " ok" if r["missing_capability_correct"] else " (!)"
    elif outcome == "missing_capability":
        outcome += " (!)"
    recall = r["overlap"]["recall"] if r["overlap"] else None
    line = (
        f"{r['id'][:30]:30} {outcome:22} {r['attempts']:>3} {r['input_tokens']:>6} "
        f"{r['output_tokens']:>7} {r['wall_s']:>6.1f}  {_tools(r['plan_tools']):21} "
        f"{_tools(r['expected_tools']):21} "
        f"{'-' if recall is None else f'{recall:.2f}':>6}"
    )
    if executed:
        run = r["execution"]
        line += (
            "  -"
            if run is None
            else f"  {run['status']}{'/' + run['failure_mode'] if run['failure_mode'] else ''}"
        )
    return line


def report(results: dict[str, Any]) -> None:
    s, cfg = results["summary"], results["config"]
    n = s["goals"]
    c = s["counts"]

    def frac(k: int) -> str:
        return f"{k}/{n} ({k / n:.0%})" if n else "0/0"

    def num(v: float | None, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    print(
        "(!): a plan for a goal that needs a missing capability, or a refusal of one that does not"
    )
    print(f"summary: {n} goals, {cfg['repairs']} repairs, model {results['model']['name']}")
    print(f"  valid on first try      {frac(c['valid_first_try'])}")
    print(
        f"  valid after repair      {frac(c['valid_after_repair'])}   "
        f"valid in all {frac(s['valid'])}"
    )
    for k in CLASSES:
        print(f"  {k:24}{frac(c[k])}")
    fc = s["failure_classes"]
    per = ", ".join(f"{k} {fc['per_attempt'][k]}" for k in CLASSES)
    final = ", ".join(f"{k} {fc['final'][k]}" for k in CLASSES)
    print(
        f"  rejected attempts       {fc['attempts_rejected']} of {fc['attempts']}: {per}; "
        f"final: {final}"
    )
    print(
        f"  missing_capability      {frac(c['missing_capability'])}: correct on "
        f"{s['missing_capability']['correct']}/{s['missing_capability']['expected']} "
        f"goals that need it, false refusals "
        f"{s['missing_capability']['false_refusals']}/{s['plan_goals']}"
    )
    if c["error"]:
        print(f"  error                   {frac(c['error'])}")
    t = s["tools"]
    print(
        f"  tools of valid plans    exactly the expected set {num(t['exact_share'], '.0%')}, "
        f"mean recall {num(t['recall_mean'], '.2f')}, mean jaccard "
        f"{num(t['jaccard_mean'], '.2f')}, with extra tools {t['plans_with_extra_tools']}"
        f"/{t['plans']}; used {t['used']}"
    )
    for key, label, fmt in (
        ("model_calls", "model calls", ".2f"),
        ("input_tokens", "input tokens", ".0f"),
        ("output_tokens", "output tokens", ".0f"),
        ("wall_s", "wall time (s)", ".1f"),
    ):
        st = s["per_goal"][key]
        print(
            f"  {label + ' per goal':24}median {num(st['median'], fmt)}, mean "
            f"{num(st['mean'], fmt)} (min {num(st['min'], fmt)}, max {num(st['max'], fmt)})"
        )
    tot = s["totals"]
    print(
        f"  totals                  {tot['model_calls']} model calls, {tot['input_tokens']} "
        f"input + {tot['output_tokens']} output tokens, {tot['wall_s']:.0f} s planning "
        f"(+ {results['model']['load_s']:.1f} s model load)"
    )
    if "execution" in s:
        x = s["execution"]
        print(
            f"  --execute               {x['runs']} runs: {x['status']}; failure modes "
            f"{x['failure_modes']}; failed steps {x['step_failure_modes']}"
        )


# --------------------------------------------------------------------------- main


async def measure(
    args: argparse.Namespace, goals: list[dict[str, Any]], repairs: int
) -> dict[str, Any]:
    settings = Settings()  # the model settings the user configured (files, DAGENTIC_*)
    model = make_model(settings, args.model)
    tools = load_tools()
    load_s = 0.0
    if hasattr(model, "load"):  # local: load the GGUF before the clock starts
        t0 = time.perf_counter()
        await anyio.to_thread.run_sync(model.load)
        load_s = time.perf_counter() - t0
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-planner-") as tmp:
        run_settings = None
        if args.execute:
            run_settings = Settings(  # the user's, with the web index and cache in tmp
                web={
                    "local": {"index_dir": Path(tmp) / "index"},
                    "cache_dir": Path(tmp) / "cache",
                    "cache_ttl": 0.0,
                }
            )
        print(
            f"planner benchmark: {len(goals)} goals, {repairs} repairs, model "
            f"{model.name} ({args.model}), {len(tools)} tools, Python "
            f"{python_version()}, {os.cpu_count()} CPUs",
            flush=True,
        )
        context = await planning_context(Executor(tools, settings=run_settings or settings))
        print(f"planning context from: {', '.join(context) or 'none'}", flush=True)
        print(header(args.execute), flush=True)
        try:
            for goal in goals:
                record = await plan_goal(
                    model, tools, goal, repairs, run_settings, args.execute_timeout, context
                )
                records.append(record)
                print(row(record, args.execute), flush=True)
        finally:
            if args.execute:
                await close_sandboxes()
    return {"model": {"spec": args.model, "name": model.name, "load_s": load_s}, "records": records}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--model", default="local", help="local, local:PATH.gguf or openai:NAME (default: local)."
    )
    parser.add_argument(
        "--repairs",
        type=int,
        default=DEFAULT_REPAIRS,
        help=f"Repair rounds of an invalid plan (default {DEFAULT_REPAIRS}).",
    )
    parser.add_argument("--goals", default=str(GOALS), help="The goals file (YAML).")
    parser.add_argument("--limit", type=int, help="Only the first N goals.")
    parser.add_argument(
        "--execute", action="store_true", help="Also run every valid plan with dagentic.Executor."
    )
    parser.add_argument(
        "--execute-timeout",
        type=float,
        default=EXECUTE_TIMEOUT,
        help=f"Seconds per executed plan (default {EXECUTE_TIMEOUT:g}).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="Two goals (one to plan, one to refuse), no repairs."
    )
    args = parser.parse_args(argv)
    if args.repairs < 0:
        parser.error("--repairs must be >= 0")

    all_goals = load_goals(args.goals)
    if args.quick:
        goals, repairs = quick_goals(all_goals), 0
    else:
        goals, repairs = all_goals[: args.limit] if args.limit else all_goals, args.repairs

    t0 = time.perf_counter()
    measured = anyio.run(measure, args, goals, repairs, backend="asyncio")
    records = measured["records"]
    results = {
        "model": measured["model"],
        "config": {
            "goals_file": str(args.goals),
            "goals": len(goals),
            "repairs": repairs,
            "limit": args.limit,
            "quick": args.quick,
            "execute": args.execute,
        },
        "environment": {"python": python_version(), "cpus": os.cpu_count()},
        "summary": summarize(records, args.execute),
        "goals": records,
        "seconds": time.perf_counter() - t0,
    }
    report(results)
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
