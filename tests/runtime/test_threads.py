"""Worker threads are the process's: one limit (``worker_threads``) for every sync tool and
every blocking call dagentic makes, however many runs and executors share the process."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from dagentic import Executor, RunResult, ToolRegistry, run_in_thread, tool
from dagentic.threads import set_worker_threads, thread_limiter

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio


class Gauge:
    """How many calls are inside at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def blocking_tool(gauge: Gauge) -> ToolRegistry:
    @tool(name="probe.block", side_effects="none")
    def block(seconds: float) -> float:
        """Block its thread for a while.

        Args:
            seconds: How long.
        """
        with gauge:
            time.sleep(seconds)
        return seconds

    return ToolRegistry([block])


async def test_300_concurrent_runs_of_a_sync_tool_stay_within_the_thread_limit() -> None:
    # One executor per run, as 300 independent callers in one process would have: each
    # executor used to bring its own pool (300 runs started 1,504 threads; some failed with
    # "can't start new thread").
    gauge = Gauge()
    tools = blocking_tool(gauge)
    settings = blind_settings(worker_threads=8, tracing={"exporter": "none"})
    plan = {
        "name": "threads",
        "steps": [
            {"id": f"s{i}", "tool": "probe.block", "args": {"seconds": 0.02}} for i in range(4)
        ],
    }
    before = threading.active_count()
    peak_threads = before
    results: list[RunResult] = []

    async def one() -> None:
        results.append(await Executor(tools, settings=settings, tracing=None).run(plan))

    async def watch() -> None:
        nonlocal peak_threads
        while True:
            peak_threads = max(peak_threads, threading.active_count())
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as outer:
        outer.start_soon(watch)
        async with anyio.create_task_group() as runs:
            for _ in range(300):
                runs.start_soon(one)
        outer.cancel_scope.cancel()

    assert len(results) == 300
    assert [r.status.value for r in results] == ["succeeded"] * 300
    assert gauge.peak == 8  # never more sync calls at once than worker_threads
    # worker_threads more threads than before at most (idle workers included), and a
    # couple of the event loop's own (trio starts one to run its thread cache)
    assert peak_threads - before <= 8 + 2, (before, peak_threads)


async def test_every_executor_and_run_in_thread_share_one_limit() -> None:
    gauge = Gauge()
    tools = blocking_tool(gauge)
    plan = {
        "name": "shared",
        "steps": [
            {"id": f"s{i}", "tool": "probe.block", "args": {"seconds": 0.05}} for i in range(3)
        ],
    }
    first = Executor(tools, settings=blind_settings(worker_threads=2), tracing=None)
    second = Executor(tools, settings=blind_settings(worker_threads=2), tracing=None)

    def blocking_call() -> None:  # dagentic's own blocking work (a DuckDB call, say)
        with gauge:
            time.sleep(0.05)

    async with anyio.create_task_group() as group:
        group.start_soon(first.run, plan)
        group.start_soon(second.run, plan)
        for _ in range(3):
            group.start_soon(run_in_thread, blocking_call)

    assert gauge.peak == 2
    assert thread_limiter().total_tokens == 2


async def test_the_last_setting_sizes_the_limiter_of_a_running_loop() -> None:
    set_worker_threads(3)
    assert thread_limiter().total_tokens == 3
    Executor(ToolRegistry(), settings=blind_settings(worker_threads=5), tracing=None)
    assert thread_limiter().total_tokens == 5
    with pytest.raises(ValueError, match="worker_threads must be at least 1, not 0"):
        set_worker_threads(0)
    set_worker_threads(16)
