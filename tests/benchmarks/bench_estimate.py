"""Estimate benchmark: how close is `dagentic estimate` to what the next run takes?

Run:  .venv/bin/python tests/benchmarks/bench_estimate.py [--runs 5] [--plans NAME ...]
          [--json FILE]

Each plan runs --runs times (default 5) in a fresh runs dir (so its journal holds only
this benchmark's runs). Before each run its estimate is made as `dagentic estimate` makes
it (dagentic.estimate over the journal's history, read then); the run's wall time is then
divided by the estimate's p50. The first run has no history (the tools' typical latencies
and the defaults); the later ones learn from the runs before them.

Plans:
  sleep-fanout-50  bench_executor.py's: 50 independent steps sleeping 0.1 s, in process
  mixed            bench_executor.py's: branches 0.05+0.05, 0.2 and 0.1+0.1+0.1 s, in process
  hello            plans/hello.yaml, with `dagentic run` (a new process each time)
  revenue          plans/revenue.yaml: SQL on the sample data, code.python in the sandbox,
                   web.search on the local index, with `dagentic run`
  publish          plans/publish.yaml with `dagentic run --yes`

Printed per plan and run: the estimate (p50, p90), the run's wall time and their ratio;
then per plan the median ratio of the runs that had history (target: between 0.8 and
1.25), and the median over all plans. Not a timed test: the numbers describe this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from bench_executor import TOOLS as BENCH_TOOLS
from bench_executor import mixed, sleep_fanout
from dagentic import Executor, Settings, compile_plan, load_tools
from dagentic.estimate import estimate_plan
from dagentic.executor import resolve_inputs
from dagentic.graph import load_plan
from dagentic.history import read_history
from stats import make_parser, python_version, verdict

ROOT = Path(__file__).resolve().parents[2]
DAGENTIC = str(Path(sys.executable).parent / "dagentic")
LOW, HIGH = 0.8, 1.25
IN_PROCESS = {"sleep-fanout-50": lambda: sleep_fanout(50, 0.1), "mixed": mixed}
SCRIPTED = {"hello": [], "revenue": [], "publish": ["--yes"]}


def settings_for(runs_dir: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_prefix="DAGENTIC_BENCH_UNUSED_", runs_dir=runs_dir, tracing={"exporter": "none"}
    )


def in_process(name: str, runs_dir: Path) -> tuple[Any, float]:
    """Estimate, then run, one of bench_executor's plans in this process."""
    settings = settings_for(runs_dir)
    compiled = compile_plan(IN_PROCESS[name](), BENCH_TOOLS)
    estimate = estimate_plan(compiled, {}, settings=settings, history=read_history(settings))
    result = anyio.run(Executor(BENCH_TOOLS, settings=settings, tracing=None).run, compiled)
    assert result.succeeded, result.error
    return estimate, result.usage.wall_time


def with_cli(name: str, runs_dir: Path) -> tuple[Any, float]:
    """Estimate as `dagentic estimate` does, then `dagentic run` the plan file."""
    settings = settings_for(runs_dir)
    path = ROOT / "plans" / f"{name}.yaml"
    compiled = load_plan(path, load_tools())
    values = resolve_inputs(compiled.plan, {})
    estimate = estimate_plan(compiled, values, settings=settings, history=read_history(settings))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")},
        "DAGENTIC_RUNS_DIR": str(runs_dir),
    }
    done = subprocess.run(
        [DAGENTIC, "run", str(path), "--json", *SCRIPTED[name]],
        capture_output=True,
        text=True,
        env=env,
        cwd=runs_dir,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"dagentic run {path} failed ({done.returncode}):\n{done.stderr}")
    return estimate, json.loads(done.stdout)["usage"]["wall_time"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="Runs per plan (default 5).")
    parser.add_argument(
        "--plans",
        nargs="+",
        default=[*IN_PROCESS, *SCRIPTED],
        choices=[*IN_PROCESS, *SCRIPTED],
        help="Which plans (default: all).",
    )
    args = parser.parse_args(argv)
    print(
        f"estimate benchmark: {args.runs} runs of {', '.join(args.plans)}; Python "
        f"{python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"  {'plan':16} {'run':>3} {'p50':>8} {'p90':>8} {'took':>8} {'took/p50':>9}  history")
    plans: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in args.plans:
        runs = []
        with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
            for n in range(1, args.runs + 1):
                runner = in_process if name in IN_PROCESS else with_cli
                estimate, took = runner(name, Path(tmp))
                ratio = took / estimate.wall_p50 if estimate.wall_p50 > 0 else None
                runs.append(
                    {
                        "p50": estimate.wall_p50,
                        "p90": estimate.wall_p90,
                        "took": took,
                        "ratio": ratio,
                        "history_runs": estimate.history_runs,
                    }
                )
                shown = "-" if ratio is None else f"{ratio:.2f}"
                print(
                    f"  {name:16} {n:>3} {estimate.wall_p50:>7.3f}s {estimate.wall_p90:>7.3f}s "
                    f"{took:>7.3f}s {shown:>9}  {estimate.history_runs} runs",
                    flush=True,
                )
        learned = [r["ratio"] for r in runs[1:] if r["ratio"] is not None]
        plans[name] = {
            "runs": runs,
            "first_ratio": runs[0]["ratio"],
            "median_ratio": statistics.median(learned) if learned else None,
            "within_p90": sum(r["took"] <= r["p90"] for r in runs[1:]),
        }
    medians = [p["median_ratio"] for p in plans.values() if p["median_ratio"] is not None]
    overall = statistics.median(medians) if medians else None
    results = {
        "config": {"runs": args.runs, "plans": args.plans},
        "environment": {"python": python_version(), "cpus": os.cpu_count()},
        "plans": plans,
        "median_ratio": overall,
        "seconds": time.perf_counter() - t0,
    }
    print("median took/p50 of the runs with history (target 0.8 .. 1.25), and of the first run:")
    for name, plan in plans.items():
        median = plan["median_ratio"]
        met = median is not None and LOW <= median <= HIGH
        first = plan["first_ratio"]
        print(
            f"  {name:16} {'-' if median is None else f'{median:.2f}':>5} "
            f"({verdict(met)}); first run {'-' if first is None else f'{first:.2f}'}; within "
            f"the p90 {plan['within_p90']}/{len(plan['runs']) - 1}"
        )
    if overall is not None:
        print(
            f"  {'all plans':16} {overall:.2f} ({verdict(LOW <= overall <= HIGH)}), "
            f"{results['seconds']:.0f} s in all"
        )
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
