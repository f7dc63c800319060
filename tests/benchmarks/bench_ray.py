"""Ray backend benchmark: dagentic's cost per step on Ray against Ray's own floor, and what
one and two nodes on this machine give against running in process.

Run (as root: the cluster lives in a network namespace the benchmark makes, as in the
tests, see tests/ray_cluster.py):

    .venv/bin/python tests/benchmarks/bench_ray.py [--repeat 3] [--json FILE]

``--keep-idle-workers`` starts the nodes as docs/how-to/ray.md advises (Ray stops idle
workers after one second by default, and a new worker imports dagentic on its first call).

Workloads, each timed ``--repeat`` times after one warm-up round (median shown):

  floor-500      Ray alone: 500 trivial tasks submitted at once, then ``ray.get``
  fanout-500     dagentic: a plan of 500 independent no-op steps on the Ray backend
  floor-chain    Ray alone: 100 trivial tasks one after another (each waited for)
  chain-100      dagentic: 100 no-op steps, each needing the one before
      the overhead is dagentic's time per step minus Ray's per task, both ways
      (throughput and latency); target: at most 2 ms above the floor
  sleep-2000     2,000 independent steps that sleep 20 ms (async, 0.1 CPU each)
  spin-200       200 independent steps that each burn about 100 ms of CPU (1 CPU each)
      in process, on Ray with one node, and with two nodes (one CPU each)
  runs-100x20    100 plan runs of 20 no-op steps each, at once, on two nodes

The no-op and sleep tools ask for 0.1 CPU (ten calls at once per one-CPU node), the spin
tool for one CPU, the Ray floor's task for 0.1 CPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.*

from dagentic import Executor, Plan, Step, ToolRegistry, tool
from stats import make_parser, python_version, write_results

from tests.blind import blind_settings
from tests.ray_cluster import RayCluster

TARGET_OVERHEAD_MS = 2.0
LIGHT = {"num_cpus": 0.1}


@tool(name="bench.noop", side_effects="none", resources=LIGHT)
def noop() -> None:
    """Do nothing."""


@tool(name="bench.sleep", side_effects="none", resources=LIGHT)
async def sleep(seconds: float) -> float:
    """Sleep.

    Args:
        seconds: How long.
    """
    await anyio.sleep(seconds)
    return seconds


@tool(name="bench.spin", side_effects="none", resources={"num_cpus": 1})
def spin(seconds: float) -> int:
    """Burn about ``seconds`` of CPU.

    Args:
        seconds: How much.
    """
    end, count = time.thread_time() + seconds, 0
    while time.thread_time() < end:
        count += 1
    return count


TOOLS = ToolRegistry([noop, sleep, spin])


def plan(name: str, steps: list[Step]) -> Plan:
    return Plan(version=1, name=name, steps=steps)


def fanout(n: int, tool_name: str = "bench.noop", **args: Any) -> Plan:
    return plan(f"{tool_name}-{n}", [Step(id=f"s{i}", tool=tool_name, args=args) for i in range(n)])


def chain(n: int) -> Plan:
    return plan(
        f"chain-{n}",
        [Step(id=f"s{i}", tool="bench.noop", needs=[f"s{i - 1}"] if i else []) for i in range(n)],
    )


def executor(backend: str, address: str | None) -> Executor:
    settings = blind_settings()
    settings.concurrency = 2_000
    settings.execution.backend = backend  # type: ignore[assignment]
    settings.ray.address = address
    return Executor(TOOLS, settings=settings, journal=None, tracing=None)


def timed(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """The median seconds of ``work`` over ``repeat`` runs, after one to warm up."""
    times = []
    for round_ in range(repeat + 1):
        started = time.perf_counter()
        anyio.run(work)
        if round_:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run_ok(ex: Executor, p: Plan) -> None:
    result = await ex.run(p)
    assert result.status.value == "succeeded", result.steps


def floor(repeat: int, fanout_n: int, chain_n: int) -> tuple[float, float]:
    """Ray's own seconds per trivial task: all at once, and one after another."""
    import ray

    @ray.remote(num_cpus=0.1, max_retries=0)
    def trivial() -> None:
        return None

    async def at_once() -> None:
        ray.get([trivial.remote() for _ in range(fanout_n)])

    async def in_turn() -> None:
        for _ in range(chain_n):
            await trivial.remote()

    return timed(at_once, repeat) / fanout_n, timed(in_turn, repeat) / chain_n


def overhead(
    address: str, repeat: int, fanout_n: int = 500, chain_n: int = 100
) -> dict[str, float]:
    floor_fanout, floor_chain = floor(repeat, fanout_n, chain_n)
    ex = executor("ray", address)
    ours_fanout = timed(lambda: run_ok(ex, fanout(fanout_n)), repeat) / fanout_n
    ours_chain = timed(lambda: run_ok(ex, chain(chain_n)), repeat) / chain_n
    return {
        "floor_fanout_ms": floor_fanout * 1e3,
        "fanout_ms": ours_fanout * 1e3,
        "fanout_overhead_ms": (ours_fanout - floor_fanout) * 1e3,
        "floor_chain_ms": floor_chain * 1e3,
        "chain_ms": ours_chain * 1e3,
        "chain_overhead_ms": (ours_chain - floor_chain) * 1e3,
    }


def workloads(
    backend: str, address: str | None, repeat: int, sleeps: int = 2_000, spins: int = 200
) -> dict[str, float]:
    ex = executor(backend, address)
    return {
        "sleep_s": timed(lambda: run_ok(ex, fanout(sleeps, "bench.sleep", seconds=0.02)), repeat),
        "spin_s": timed(lambda: run_ok(ex, fanout(spins, "bench.spin", seconds=0.1)), repeat),
    }


def many_runs(address: str, repeat: int, runs: int = 100, steps: int = 20) -> dict[str, float]:
    ex = executor("ray", address)

    async def all_at_once() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(runs):
                group.start_soon(run_ok, ex, chain(steps))

    seconds = timed(all_at_once, repeat)
    return {"runs_s": seconds, "runs_ms_per_step": seconds / (runs * steps) * 1e3}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--keep-idle-workers",
        action="store_true",
        help="start the nodes as docs/how-to/ray.md advises (idle workers kept 10 minutes); "
        "default: Ray's own setting (one second)",
    )
    args = parser.parse_args()
    cluster = RayCluster(f"dgb{os.getpid()}", Path(f"/tmp/dgb{os.getpid()}"))
    if not args.keep_idle_workers:
        cluster.env.pop("RAY_idle_worker_killing_time_threshold_ms")
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)  # before Ray loads
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    results: dict[str, Any] = {"python": python_version(), "ray": ray.__version__}
    print(f"Ray {ray.__version__}, Python {python_version()}, repeat {args.repeat}")
    try:
        results["in_process"] = workloads("process", None, args.repeat)
        cluster.create()
        cluster.temp_dir.mkdir(parents=True, exist_ok=True)
        with cluster.inside():
            cluster.start_node("node_head", head=True)
            ray.init(address=cluster.address, log_to_driver=False)
            results["ray_1_node"] = workloads("ray", cluster.address, args.repeat)
            cluster.start_node("node_b")
            results["ray_2_nodes"] = workloads("ray", cluster.address, args.repeat)
            results["overhead"] = overhead(cluster.address, args.repeat)
            results["many_runs"] = many_runs(cluster.address, args.repeat)
            ray.shutdown()
    finally:
        cluster.destroy()
    print(f"{'workload':<28}{'in process':>12}{'ray 1 node':>12}{'ray 2 nodes':>13}")
    for key, label in (
        ("sleep_s", "sleep-2000 (20 ms), s"),
        ("spin_s", "spin-200 (100 ms CPU), s"),
    ):
        row = [results[k][key] for k in ("in_process", "ray_1_node", "ray_2_nodes")]
        print(f"{label:<28}{row[0]:>12.2f}{row[1]:>12.2f}{row[2]:>13.2f}")
    o = results["overhead"]
    print(
        f"per step, all at once:   Ray floor {o['floor_fanout_ms']:.2f} ms, dagentic "
        f"{o['fanout_ms']:.2f} ms: +{o['fanout_overhead_ms']:.2f} ms"
    )
    print(
        f"per step, one at a time: Ray floor {o['floor_chain_ms']:.2f} ms, dagentic "
        f"{o['chain_ms']:.2f} ms: +{o['chain_overhead_ms']:.2f} ms"
    )
    m = results["many_runs"]
    print(f"runs-100x20 at once: {m['runs_s']:.2f} s ({m['runs_ms_per_step']:.2f} ms per step)")
    worst = max(o["fanout_overhead_ms"], o["chain_overhead_ms"])
    print(
        f"overhead target <= {TARGET_OVERHEAD_MS} ms: {'met' if worst <= TARGET_OVERHEAD_MS else 'NOT met'}"
    )
    write_results(results, args.json_file)


if __name__ == "__main__":
    main()
