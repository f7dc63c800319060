"""Durable journal benchmark: what the run journal (SQLite, group commit) adds per no-op
step, and how long resuming a half-done run takes.

Run:  .venv/bin/python tests/benchmarks/bench_journal.py [--repeat 9] [--json FILE]

Workloads (tracing off; the journal in a temporary folder):
  chain-200    200 no-op steps, each needing the previous one
  fanout-500   500 independent no-op steps
      each timed with the journal off (journal=None) and on (the durable journal of the
      settings: SQLite in runs_dir), the two taking turns; a run with the journal on
      ends once its end is committed, so every commit of the run is in its time; the
      CPU time of the process (all its threads: the journal's writer too) is shown beside
  resume-2000  a run of 2,000 no-op steps cancelled once 1,000 had succeeded, resumed
      by a new executor on a journal opened again (as after a restart): the time of
      Executor.resume, from reading the journal to the end of the run (the other 1,000
      steps run), and of the reading alone (the run's events, folded)

Targets on the 2-core reference machine: the journal adds at most 50 µs per no-op step;
resuming takes at most 1 s.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_executor import chain, fanout, noop
from dagentic import Executor, Plan, Settings, Step, ToolContext, ToolRegistry, tool
from dagentic.durable import DurableJournal, open_store, store_location
from dagentic.durable.resume import fold
from stats import make_parser, per_step_us, python_version, verdict, write_results

TARGET_ADDED_US = 50.0
TARGET_RESUME_S = 1.0
BACKEND = "asyncio"
_CUTTER: dict[str, Any] = {"executor": None}


@tool(name="bench.cut", side_effects="none")
async def cut(ctx: ToolContext) -> None:
    """Cancel the run it is part of, when armed (the first run); else do nothing."""
    executor = _CUTTER.pop("executor", None)
    if executor is not None:
        executor.cancel(ctx.run_id)
        await anyio.sleep_forever()


TOOLS = ToolRegistry([noop, cut])


def settings(runs_dir: Path) -> Settings:
    # Defaults, but blind to any dagentic.toml or DAGENTIC_* variables around the benchmark.
    return Settings(_env_prefix="DAGENTIC_BENCH_UNUSED_", runs_dir=runs_dir)  # type: ignore[call-arg]


def half_done(n: int) -> Plan:
    """``n`` no-op steps: ``n/2`` at once, then ``cut`` after all of them (it cancels the
    first run), then ``n/2 - 1`` after it."""
    half = n // 2
    steps = [Step(id=f"a{i}", tool="bench.noop") for i in range(half)]
    steps.append(Step(id="cut", tool="bench.cut", needs=[f"a{i}" for i in range(half)]))
    steps += [Step(id=f"b{i}", tool="bench.noop", needs=["cut"]) for i in range(half - 1)]
    return Plan(name=f"half-done-{n}", steps=steps)


def journal(runs_dir: Path) -> DurableJournal:
    """The durable journal of the settings (what ``Executor``'s default ``journal=`` opens),
    of its own: the caller closes it."""
    return DurableJournal(open_store(store_location(settings(runs_dir))))


def time_modes(plan: Plan, runs_dir: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Median run time per step with the journal off and on, the two taking turns so that
    the machine's slow moments spread over both."""
    s, durable = settings(runs_dir), journal(runs_dir)
    try:
        return _time_modes(plan, s, durable, repeat)
    finally:
        durable.close()


def _time_modes(
    plan: Plan, s: Settings, durable: DurableJournal, repeat: int
) -> dict[str, dict[str, float]]:
    executors = {
        "off": Executor(TOOLS, settings=s, journal=None, tracing=None),
        "on": Executor(TOOLS, settings=s, journal=durable, tracing=None),
    }
    compiled = executors["off"].compile(plan)
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in executors}

    def once(name: str) -> tuple[float, float]:
        executor = executors[name]

        async def run() -> tuple[float, float]:
            begin, cpu = time.perf_counter(), time.process_time()
            result = await executor.run(compiled)
            elapsed = time.perf_counter() - begin, time.process_time() - cpu
            assert result.succeeded, result.error
            return elapsed

        gc.collect()
        return anyio.run(run, backend=BACKEND)

    for name in executors:
        once(name)  # warm up (and the journal's file exists)
    names = list(executors)
    for turn in range(repeat):
        for name in names[turn % 2 :] + names[: turn % 2]:
            wall, cpu = once(name)
            times[name][0].append(wall)
            times[name][1].append(cpu)
    n = len(plan.steps)
    row = {
        name: {
            "run_median_s": statistics.median(wall),
            "us_per_step": per_step_us(wall, n),
            "cpu_us_per_step": per_step_us(cpu, n),
        }
        for name, (wall, cpu) in times.items()
    }
    on, off = row["on"], row["off"]
    on["added_us_per_step"] = on["us_per_step"] - off["us_per_step"]
    on["added_cpu_us_per_step"] = on["cpu_us_per_step"] - off["cpu_us_per_step"]
    return row


def interrupted_run(runs_dir: Path, plan: Plan) -> str:
    """A run of ``plan`` cancelled by its ``cut`` step, half of it done; its id."""
    durable = journal(runs_dir)
    try:
        executor = Executor(TOOLS, settings=settings(runs_dir), journal=durable, tracing=None)
        _CUTTER["executor"] = executor
        result = anyio.run(executor.run, plan, backend=BACKEND)
    finally:
        durable.close()  # the process that ran it is gone
    assert result.status.value == "cancelled", result.status
    done = sum(r.status.value == "succeeded" for r in result.steps.values())
    assert done == len(plan.steps) // 2, done
    return result.run_id


def time_resume(n: int, runs_dir: Path, repeat: int) -> dict[str, Any]:
    """Resume a run of ``n`` steps of which ``n/2`` succeeded, ``repeat`` times (a new
    interrupted run each time, the journal closed and opened again before resuming)."""
    plan = half_done(n)
    totals, reads = [], []
    for _ in range(repeat):
        run_id = interrupted_run(runs_dir, plan)
        durable = journal(runs_dir)  # as after a restart: the journal is opened anew
        try:
            begin = time.perf_counter()
            steps = fold(durable.store.events(run_id))
            reads.append(time.perf_counter() - begin)
            assert sum(st.status == "succeeded" for st in steps.values()) == n // 2
            executor = Executor(TOOLS, settings=settings(runs_dir), journal=durable, tracing=None)

            async def resume(executor: Executor = executor, run_id: str = run_id) -> float:
                begin = time.perf_counter()
                result = await executor.resume(run_id)
                elapsed = time.perf_counter() - begin
                assert result.succeeded, result.error
                return elapsed

            gc.collect()
            totals.append(anyio.run(resume, backend=BACKEND))
        finally:
            durable.close()
    return {
        "steps": n,
        "done_before": n // 2,
        "resume_median_s": statistics.median(totals),
        "resume_max_s": max(totals),
        "read_median_s": statistics.median(reads),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (smoke test).")
    args = parser.parse_args(argv)
    quick, repeat = args.quick, (1 if args.quick else args.repeat)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        for name, plan in (
            ("chain-200", chain(20 if quick else 200)),
            ("fanout-500", fanout(50 if quick else 500)),
        ):
            results[name] = time_modes(plan, runs_dir / name, repeat)
        results["resume-2000"] = time_resume(
            200 if quick else 2000, runs_dir / "resume", 1 if quick else max(3, repeat // 2)
        )
    added = max(results[k]["on"]["added_us_per_step"] for k in ("chain-200", "fanout-500"))
    resume = results["resume-2000"]["resume_median_s"]
    results["targets"] = {
        "added_us_per_step": {
            "worst": added,
            "target": TARGET_ADDED_US,
            "met": added <= TARGET_ADDED_US,
        },
        "resume_s": {"worst": resume, "target": TARGET_RESUME_S, "met": resume <= TARGET_RESUME_S},
    }

    print(f"journal benchmark (median of {repeat}, Python {python_version()}, {BACKEND})")
    for name in ("chain-200", "fanout-500"):
        off, on = results[name]["off"], results[name]["on"]
        print(
            f"  {name:12} journal off {off['us_per_step']:6.1f} µs/step  on "
            f"{on['us_per_step']:6.1f} µs/step  (+{on['added_us_per_step']:.1f} µs/step; "
            f"CPU of all threads {off['cpu_us_per_step']:.1f} -> {on['cpu_us_per_step']:.1f}, "
            f"+{on['added_cpu_us_per_step']:.1f})"
        )
    r = results["resume-2000"]
    print(
        f"  {'resume-2000':12} {r['done_before']} of {r['steps']} steps done: resume "
        f"{r['resume_median_s'] * 1e3:.0f} ms (max {r['resume_max_s'] * 1e3:.0f} ms), of "
        f"which reading the journal {r['read_median_s'] * 1e3:.0f} ms"
    )
    t = results["targets"]
    print(
        f"  target: the journal adds {t['added_us_per_step']['worst']:.1f} µs/step at worst "
        f"(<= {TARGET_ADDED_US:g}): {verdict(t['added_us_per_step']['met'])}"
    )
    print(
        f"  target: resuming takes {t['resume_s']['worst']:.3f} s (<= {TARGET_RESUME_S:g}): "
        f"{verdict(t['resume_s']['met'])}"
    )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
