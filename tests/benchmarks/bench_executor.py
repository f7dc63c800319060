"""Executor benchmark: scheduling overhead, makespan against the critical path, memory.

Run:  .venv/bin/python tests/benchmarks/bench_executor.py [--repeat 7] [--json FILE]

Workloads (tracing off, no journal, default settings; --backend trio for trio):
  chain-200       200 no-op steps, each needing the previous one
  fanout-500      500 independent no-op steps
  layered-10x20   10 layers of 20 no-op steps, each needing all 20 of the layer before
  sleep-fanout-50 50 independent steps sleeping 0.1 s          (critical path 0.1 s)
  mixed           branches 0.05+0.05, 0.2 and 0.1+0.1+0.1 s      (critical path 0.3 s)
  anyio-floor-50  50 bare anyio tasks sleeping 0.1 s: the floor any anyio scheduler pays
  memory-2000     tracemalloc peak of running a 2,000-step fan-out, per step

Targets on the 2-core reference machine: overhead <= 40 us per no-op step, makespan within
2% of the critical path, <= 3 KB per step.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from typing import Any

import anyio
from dagentic import Executor, Plan, Settings, Step, ToolRegistry, compile_plan, tool
from stats import make_parser, per_step_us, python_version, verdict, write_results

TARGET_OVERHEAD_US = 40.0
TARGET_MAKESPAN_RATIO = 1.02
TARGET_BYTES_PER_STEP = 3 * 1024


@tool(name="bench.noop", side_effects="none")
async def noop() -> None:
    """Do nothing."""


@tool(name="bench.sleep", side_effects="none")
async def sleep(seconds: float) -> float:
    """Sleep.

    Args:
        seconds: How long.
    """
    await anyio.sleep(seconds)
    return seconds


TOOLS = ToolRegistry([noop, sleep])
BACKEND = "asyncio"


def _plan(name: str, steps: list[Step]) -> Plan:
    return Plan(name=name, steps=steps)


def chain(n: int) -> Plan:
    return _plan(
        f"chain-{n}",
        [Step(id=f"s{i}", tool="bench.noop", needs=[f"s{i - 1}"] if i else []) for i in range(n)],
    )


def fanout(n: int) -> Plan:
    return _plan(f"fanout-{n}", [Step(id=f"s{i}", tool="bench.noop") for i in range(n)])


def layered(layers: int, width: int) -> Plan:
    steps = []
    for layer in range(layers):
        before = [f"l{layer - 1}_{j}" for j in range(width)] if layer else []
        steps += [Step(id=f"l{layer}_{j}", tool="bench.noop", needs=before) for j in range(width)]
    return _plan(f"layered-{layers}x{width}", steps)


def sleep_fanout(n: int, seconds: float) -> Plan:
    return _plan(
        f"sleep-fanout-{n}",
        [Step(id=f"s{i}", tool="bench.sleep", args={"seconds": seconds}) for i in range(n)],
    )


def mixed() -> Plan:
    def s(sid: str, seconds: float, *needs: str) -> Step:
        return Step(id=sid, tool="bench.sleep", args={"seconds": seconds}, needs=list(needs))

    return _plan(
        "mixed",
        [
            s("a1", 0.05),
            s("a2", 0.05, "a1"),
            s("b1", 0.2),
            s("c1", 0.1),
            s("c2", 0.1, "c1"),
            s("c3", 0.1, "c2"),
            Step(id="join", tool="bench.noop", needs=["a2", "b1", "c3"]),
        ],
    )


def _executor() -> Executor:
    # Defaults, but blind to any dagentic.toml or DAGENTIC_* variables around the benchmark.
    settings = Settings(_env_prefix="DAGENTIC_BENCH_UNUSED_")  # type: ignore[call-arg]
    return Executor(TOOLS, settings=settings, tracing=None, journal=None)


def time_run(plan: Plan, repeat: int) -> dict[str, Any]:
    executor = _executor()
    compiled = compile_plan(plan, TOOLS)
    compile_times, run_times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        compile_plan(plan, TOOLS)
        compile_times.append(time.perf_counter() - start)

        async def once() -> float:
            begin = time.perf_counter()
            result = await executor.run(compiled)
            elapsed = time.perf_counter() - begin
            assert result.succeeded, result.error
            return elapsed

        gc.collect()
        run_times.append(anyio.run(once, backend=BACKEND))
    n = len(plan.steps)
    return {
        "steps": n,
        "run_median_s": statistics.median(run_times),
        "per_step_us": per_step_us(run_times, n),
        "compile_per_step_us": per_step_us(compile_times, n),
    }


def makespan(plan: Plan, critical_path: float, repeat: int) -> dict[str, Any]:
    timing = time_run(plan, repeat)
    return {
        "steps": timing["steps"],
        "critical_path_s": critical_path,
        "makespan_median_s": timing["run_median_s"],
        "ratio": timing["run_median_s"] / critical_path,
    }


def anyio_floor(n: int, seconds: float, repeat: int) -> dict[str, Any]:
    """The same fan-out as bare anyio tasks: what any anyio scheduler pays at least
    (task spawns, and the event loop's 1 ms timer granularity)."""

    async def once() -> float:
        begin = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(n):
                group.start_soon(anyio.sleep, seconds)
        return time.perf_counter() - begin

    times = [anyio.run(once, backend=BACKEND) for _ in range(repeat)]
    return {
        "tasks": n,
        "makespan_median_s": statistics.median(times),
        "ratio": statistics.median(times) / seconds,
    }


def memory(n: int) -> dict[str, Any]:
    plan = fanout(n)
    executor = _executor()
    compiled = compile_plan(plan, TOOLS)
    anyio.run(executor.run, compiled, backend=BACKEND)  # warm caches and imports
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    anyio.run(executor.run, compiled, backend=BACKEND)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    compiled_again = compile_plan(plan, TOOLS)
    anyio.run(executor.run, compiled_again, backend=BACKEND)
    peak_with_compile = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {
        "steps": n,
        "peak_bytes_per_step": peak / n,
        "peak_bytes_per_step_with_compile": peak_with_compile / n,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (smoke test).")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    quick, repeat = args.quick, (1 if args.quick else args.repeat)
    global BACKEND
    BACKEND = args.backend

    results: dict[str, Any] = {
        "chain-200": time_run(chain(20 if quick else 200), repeat),
        "fanout-500": time_run(fanout(50 if quick else 500), repeat),
        "layered-10x20": time_run(layered(3 if quick else 10, 5 if quick else 20), repeat),
        "sleep-fanout-50": makespan(sleep_fanout(50, 0.1), 0.1, repeat),
        "anyio-floor-50": anyio_floor(50, 0.1, repeat),
        "mixed": makespan(mixed(), 0.3, repeat),
        "memory-2000": memory(200 if quick else 2000),
    }
    overhead = max(results[k]["per_step_us"] for k in ("chain-200", "fanout-500", "layered-10x20"))
    ratio = max(results[k]["ratio"] for k in ("sleep-fanout-50", "mixed"))
    per_step = results["memory-2000"]["peak_bytes_per_step"]
    results["targets"] = {
        "overhead_us_per_step": {
            "worst": overhead,
            "target": TARGET_OVERHEAD_US,
            "met": overhead <= TARGET_OVERHEAD_US,
        },
        "makespan_ratio": {
            "worst": ratio,
            "target": TARGET_MAKESPAN_RATIO,
            "met": ratio <= TARGET_MAKESPAN_RATIO,
        },
        "bytes_per_step": {
            "worst": per_step,
            "target": TARGET_BYTES_PER_STEP,
            "met": per_step <= TARGET_BYTES_PER_STEP,
        },
    }

    print(f"executor benchmark (median of {repeat}, Python {python_version()}, {BACKEND})")
    for name in ("chain-200", "fanout-500", "layered-10x20"):
        r = results[name]
        print(
            f"  {name:16} {r['steps']:5} steps  run {r['run_median_s'] * 1e3:8.2f} ms  "
            f"{r['per_step_us']:6.1f} us/step  (validate+compile "
            f"{r['compile_per_step_us']:6.1f} us/step)"
        )
    for name in ("sleep-fanout-50", "mixed"):
        r = results[name]
        print(
            f"  {name:16} makespan {r['makespan_median_s'] * 1e3:8.2f} ms  critical path "
            f"{r['critical_path_s'] * 1e3:.0f} ms  ratio {r['ratio']:.4f}"
        )
    r = results["anyio-floor-50"]
    print(
        f"  {'anyio-floor-50':16} makespan {r['makespan_median_s'] * 1e3:8.2f} ms  (50 bare "
        f"anyio tasks sleeping 100 ms)  ratio {r['ratio']:.4f}"
    )
    r = results["memory-2000"]
    print(
        f"  {'memory-2000':16} peak {r['peak_bytes_per_step']:.0f} B/step running "
        f"({r['peak_bytes_per_step_with_compile']:.0f} B/step with validation)"
    )
    for key, target in results["targets"].items():
        print(
            f"  target {key}: worst {target['worst']:.3f} vs {target['target']} -> "
            f"{verdict(target['met'])}"
        )
    write_results(results, args.json_file, echo=True)
    return results


if __name__ == "__main__":
    main()
