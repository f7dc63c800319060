"""Sandbox benchmark: latency of a trivial snippet per backend, and throughput.

Run:  .venv/bin/python tests/benchmarks/bench_sandbox.py [--repeat 30] [--json FILE]

Every run executes ``result = 1 + 1`` with the default limits and must return 2.
Latency (p50 and p95 over --repeat runs, after one untimed run per backend):
  docker-cold   DockerSandbox(pool_size=0): each run creates and starts a container
  docker-warm   DockerSandbox(pool_size=2): before each run the pool is full again and its
                harnesses have preloaded numpy/pandas, so every run takes a warm container;
                only ``sb.run`` is timed, never the wait for the pool
  process       ProcessSandbox: bubblewrap namespaces + rlimits
Throughput: 50 snippets, 4 at a time, per backend (snippets/s, pool waits included):
  throughput-docker       DockerSandbox(pool_size=4), pool full when the clock starts
  throughput-docker-cold  DockerSandbox(pool_size=0), for comparison
  throughput-process      ProcessSandbox

Targets on the 2-core reference machine: docker warm p50 <= 80 ms, docker cold p50
<= 400 ms, process p50 <= 40 ms.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from dagentic.isolation import Sandbox
from dagentic.sandbox.bubblewrap import ProcessSandbox, process_available
from dagentic.sandbox.container import (
    _OWNER,
    LABEL,
    OWNER_LABEL,
    DockerSandbox,
    _client,
    docker_available,
)
from stats import latency_line, make_parser, python_version, summary, verdict, write_results

SNIPPET = "result = 1 + 1"
TARGET_WARM_P50_MS = 80.0
TARGET_COLD_P50_MS = 400.0
TARGET_PROCESS_P50_MS = 40.0
SETTLE = 1.0  # seconds a refilled pool is left to preload numpy/pandas before a warm run


async def once(sandbox: Sandbox) -> float:
    """Seconds one run of the snippet takes; it must succeed."""
    start = time.perf_counter()
    outcome = await sandbox.run(SNIPPET)
    elapsed = time.perf_counter() - start
    if not outcome.ok or outcome.result != 2:
        raise RuntimeError(f"{sandbox.name}: the snippet failed: {outcome!r}")
    return elapsed


def _our_containers() -> tuple[int, int]:
    """(running, all) sandbox containers owned by this process."""
    client = _client()
    try:
        filters = {"label": [LABEL, f"{OWNER_LABEL}={_OWNER}"]}
        return (
            len(client.api.containers(filters=filters)),
            len(client.api.containers(all=True, filters=filters)),
        )
    finally:
        client.close()


async def wait_for_pool(size: int, settle: float, timeout: float = 60.0) -> None:
    """Until exactly ``size`` containers of ours run (the used ones removed), then
    ``settle`` seconds for their harnesses to finish preloading."""
    deadline = time.monotonic() + timeout
    while await anyio.to_thread.run_sync(_our_containers) != (size, size):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the warm pool did not reach {size} containers in {timeout}s")
        await anyio.sleep(0.02)
    await anyio.sleep(settle)


async def latency(
    sandbox: Sandbox, repeat: int, before_each: Callable[[], Awaitable[None]] | None = None
) -> dict[str, Any]:
    try:
        if before_each is not None:
            await before_each()
        await once(sandbox)  # imports, engine connection, reaping: not what we measure
        times = []
        for _ in range(repeat):
            if before_each is not None:
                await before_each()
            times.append(await once(sandbox))
    finally:
        await sandbox.aclose()
    return summary(times)


async def throughput(
    sandbox: Sandbox,
    snippets: int,
    concurrency: int,
    before: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    try:
        if before is not None:
            await before()
        left = snippets

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await once(sandbox)

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker)
        seconds = time.perf_counter() - start
    finally:
        await sandbox.aclose()
    return {
        "snippets": snippets,
        "concurrency": concurrency,
        "seconds": seconds,
        "snippets_per_s": snippets / seconds,
    }


async def measure(repeat: int, snippets: int, concurrency: int, settle: float) -> dict[str, Any]:
    for name, probe in (("docker", docker_available), ("process", process_available)):
        reason = await probe()
        if reason is not None:
            raise SystemExit(f"bench_sandbox: the {name} backend cannot run here: {reason}")
    warm_pool = 2
    pool_for_throughput = max(concurrency, 2)
    results: dict[str, Any] = {"docker-cold": await latency(DockerSandbox(pool_size=0), repeat)}
    warm = DockerSandbox(pool_size=warm_pool)
    warm.warm()
    results["docker-warm"] = await latency(warm, repeat, lambda: wait_for_pool(warm_pool, settle))
    results["process"] = await latency(ProcessSandbox(), repeat)
    pooled = DockerSandbox(pool_size=pool_for_throughput)
    pooled.warm()
    results["throughput-docker"] = await throughput(
        pooled, snippets, concurrency, lambda: wait_for_pool(pool_for_throughput, settle)
    )
    results["throughput-docker"]["pool_size"] = pool_for_throughput
    results["throughput-docker-cold"] = await throughput(
        DockerSandbox(pool_size=0), snippets, concurrency
    )
    results["throughput-docker-cold"]["pool_size"] = 0
    results["throughput-process"] = await throughput(ProcessSandbox(), snippets, concurrency)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="Timed runs per backend.")
    parser.add_argument(
        "--quick", action="store_true", help="3 runs each, 8 snippets for throughput (smoke test)."
    )
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    snippets, concurrency = (8 if args.quick else 50), 4
    settle = SETTLE / 2 if args.quick else SETTLE

    results = anyio.run(measure, repeat, snippets, concurrency, settle, backend="asyncio")
    checks = {
        "docker_warm_p50_ms": ("docker-warm", TARGET_WARM_P50_MS),
        "docker_cold_p50_ms": ("docker-cold", TARGET_COLD_P50_MS),
        "process_p50_ms": ("process", TARGET_PROCESS_P50_MS),
    }
    results["targets"] = {
        key: {
            "value": results[name]["p50_ms"],
            "target": target,
            "met": results[name]["p50_ms"] <= target,
        }
        for key, (name, target) in checks.items()
    }

    print(
        f"sandbox benchmark ({repeat} runs of {SNIPPET!r} per backend, Python {python_version()})"
    )
    targets = {
        "docker-warm": TARGET_WARM_P50_MS,
        "docker-cold": TARGET_COLD_P50_MS,
        "process": TARGET_PROCESS_P50_MS,
    }
    for name in ("docker-cold", "docker-warm", "process"):
        r = results[name]
        print(
            latency_line(name, r, width=12, digits=1)
            + f"  target p50 <= {targets[name]:.0f} ms -> {verdict(r['p50_ms'] <= targets[name])}"
        )
    for name in ("throughput-docker", "throughput-docker-cold", "throughput-process"):
        r = results[name]
        print(
            f"  {name:22} {r['snippets_per_s']:6.1f} snippets/s  ({r['snippets']} "
            f"snippets, {r['concurrency']} at a time, {r['seconds']:.2f} s)"
        )
    write_results(results, args.json_file, echo=True)
    return results


if __name__ == "__main__":
    main()
