"""The Ray backend on a real two-node cluster (tests/ray_cluster.py): placement, outputs
by reference, lost workers and nodes, cancellation, timeouts, traces, and an unreachable
cluster."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import (
    ClusterError,
    Executor,
    FailureMode,
    RunResult,
    RunStatus,
    Settings,
    StepStatus,
    ToolContext,
    ToolRegistry,
    Tracing,
    tool,
)
from dagentic.ray_backend import RayBackend
from dagentic.settings import RaySettings
from dagentic.spans import FastTracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.ray_cluster import RayCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # both event loops are covered by test_behaviour.py


@tool(name="probe.where", side_effects="none")
def where(label: str = "") -> dict[str, Any]:
    """Say which Ray node and process ran this call.

    Args:
        label: Returned as it is.
    """
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "label": label}


@tool(name="probe.big", side_effects="none")
def big(size: int) -> str:
    """Return a string of ``size`` characters.

    Args:
        size: How many.
    """
    return "x" * size


@tool(name="probe.length", side_effects="none")
def length(text: str) -> int:
    """Count characters.

    Args:
        text: The text.
    """
    return len(text)


@tool(name="probe.hold", side_effects="none")
def hold(pid_file: str, seconds: float = 60.0) -> dict[str, Any]:
    """Write this process's id to ``pid_file`` (once: a second run finds it there) and
    wait ``seconds`` the first time.

    Args:
        pid_file: Where.
        seconds: How long the first call waits.
    """
    import ray

    path = Path(pid_file)
    first = not path.exists()
    path.write_text(str(os.getpid()))
    if first:
        time.sleep(seconds)
    return {"node": ray.get_runtime_context().get_node_id(), "first": first}


hold_once = tool(name="probe.hold_once", side_effects="write", idempotent=False)(hold.fn)


@tool(name="probe.context", side_effects="none")
def context_of(context: ToolContext) -> dict[str, Any]:
    """The call's context, as the tool sees it."""
    context.mark_untrusted("sql:scratch")
    return {"run": context.run_id, "step": context.step_id, "key": context.idempotency_key}


@pytest.fixture
def probes(tools: ToolRegistry) -> ToolRegistry:
    return ToolRegistry([*tools, where, big, length, hold, hold_once, context_of])


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = FastTracerProvider([self.exporter], shutdown_on_exit=False)
        self.tracing = Tracing(self.provider)

    def spans(self) -> list[Any]:
        self.tracing.flush()
        return list(self.exporter.get_finished_spans())


def plan(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "name": "ray", "steps": list(steps)}


def node_ids() -> dict[str, str]:
    """Custom resource naming a node -> its node id."""
    import ray

    return {
        name: node["NodeID"]
        for node in ray.nodes()
        if node["Alive"]
        for name in node["Resources"]
        if name.startswith("node_")
    }


async def run_while(
    executor: Executor,
    the_plan: dict[str, Any],
    meanwhile: Callable[[], Awaitable[Any]],
    **options: Any,
) -> RunResult:
    """Run ``the_plan``; while it runs, ``meanwhile()`` does something to it."""
    outcome: dict[str, RunResult] = {}

    async def run() -> None:
        outcome["result"] = await executor.run(the_plan, **options)

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await meanwhile()
    return outcome["result"]


async def kill_when_started(pid_file: Path) -> None:
    os.kill(await wait_for_file(pid_file), signal.SIGKILL)


async def wait_for_file(path: Path, timeout: float = 60.0) -> int:
    with anyio.fail_after(timeout):
        while not path.exists() or not path.read_text():
            await anyio.sleep(0.05)
    return int(path.read_text())


async def test_steps_land_on_the_nodes_their_resources_name(
    probes: ToolRegistry, ray_settings: Settings
) -> None:
    traced = Traced()
    result = await Executor(
        probes, settings=ray_settings, journal=None, tracing=traced.tracing
    ).run(
        plan(
            {"id": "on_head", "tool": "probe.where", "resources": {"node_head": 1}},
            {"id": "on_b", "tool": "probe.where", "resources": {"node_b": 1, "num_cpus": 0.5}},
        )
    )
    assert result.status is RunStatus.SUCCEEDED, result.steps
    nodes = node_ids()
    assert result.steps["on_head"].output["node"] == nodes["node_head"]
    assert result.steps["on_b"].output["node"] == nodes["node_b"]
    step_spans = {
        s.attributes["dagentic.step.id"]: s
        for s in traced.spans()
        if s.name.startswith("execute_tool")
    }
    assert step_spans["on_b"].attributes["dagentic.ray.node_id"] == nodes["node_b"]
    assert step_spans["on_b"].attributes["dagentic.ray.pid"] == result.steps["on_b"].output["pid"]


async def test_the_tasks_span_joins_the_runs_trace_under_its_step(
    probes: ToolRegistry, ray_settings: Settings
) -> None:
    traced = Traced()
    result = await Executor(
        probes, settings=ray_settings, journal=None, tracing=traced.tracing
    ).run(plan({"id": "a", "tool": "probe.where"}))
    assert result.status is RunStatus.SUCCEEDED
    spans = traced.spans()
    step = next(s for s in spans if s.name == "execute_tool probe.where")
    task = next(s for s in spans if s.name == "ray.task probe.where")
    assert task.context.trace_id == step.context.trace_id
    assert task.parent.span_id == step.context.span_id
    assert task.attributes["dagentic.ray.pid"] == result.steps["a"].output["pid"]
    assert step.start_time <= task.start_time <= task.end_time <= step.end_time


async def test_a_large_output_reaches_the_next_step_by_reference(
    probes: ToolRegistry, ray_settings: Settings
) -> None:
    ray_settings.ray.by_reference_bytes = 100_000
    traced = Traced()
    result = await Executor(
        probes, settings=ray_settings, journal=None, tracing=traced.tracing
    ).run(
        plan(
            {"id": "make", "tool": "probe.big", "args": {"size": 3_000_000}},
            {"id": "small", "tool": "probe.big", "args": {"size": 10}},
            {"id": "count", "tool": "probe.length", "args": {"text": "${{ steps.make.output }}"}},
            {
                "id": "count_small",
                "tool": "probe.length",
                "args": {"text": "${{ steps.small.output }}"},
            },
        )
    )
    assert result.status is RunStatus.SUCCEEDED, result.steps
    assert result.steps["count"].output == 3_000_000
    assert len(result.steps["make"].output) == 3_000_000  # the driver's copy, for the result
    by_step = {
        s.attributes["dagentic.step.id"]: s.attributes
        for s in traced.spans()
        if s.name.startswith("execute_tool")
    }
    assert by_step["count"]["dagentic.ray.by_reference"] == ("text",)
    assert "dagentic.ray.by_reference" not in by_step["count_small"]


async def test_the_tool_context_travels_and_taint_comes_back(
    probes: ToolRegistry, ray_settings: Settings
) -> None:
    result = await Executor(probes, settings=ray_settings, journal=None).run(
        plan({"id": "c", "tool": "probe.context"}), run_id="r1"
    )
    assert result.steps["c"].output == {"run": "r1", "step": "c", "key": "r1/c"}
    assert result.steps["c"].provenance.trusted is False
    assert result.steps["c"].provenance.untrusted_from == ("sql:scratch",)


async def test_a_killed_worker_is_run_again_for_an_idempotent_tool(
    probes: ToolRegistry, ray_settings: Settings, tmp_path: Path
) -> None:
    traced = Traced()
    pid_file = tmp_path / "pid"
    executor = Executor(probes, settings=ray_settings, journal=None, tracing=traced.tracing)
    result = await run_while(
        executor,
        plan({"id": "long", "tool": "probe.hold", "args": {"pid_file": str(pid_file)}}),
        partial(kill_when_started, pid_file),
    )
    step = result.steps["long"]
    assert step.status is StepStatus.SUCCEEDED, step.error
    assert step.output["first"] is False
    assert step.attempts == 1  # a lost worker is not an attempt of the tool's
    span = next(s for s in traced.spans() if s.name == "execute_tool probe.hold")
    lost = [e for e in span.events if e.name == "dagentic.ray.lost"]
    assert len(lost) == 1 and lost[0].attributes["dagentic.ray.rerun"] == 1
    assert "WorkerCrashedError" in lost[0].attributes["dagentic.ray.reason"]


async def test_a_killed_worker_fails_a_tool_that_is_not_idempotent(
    probes: ToolRegistry, ray_settings: Settings, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    executor = Executor(probes, settings=ray_settings, journal=None)
    once = {
        "id": "once",
        "tool": "probe.hold_once",
        "args": {"pid_file": str(pid_file)},
        "retry": {"attempts": 3},
    }
    result = await run_while(executor, plan(once), partial(kill_when_started, pid_file))
    step = result.steps["once"]
    assert step.status is StepStatus.FAILED
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    assert step.attempts == 1
    assert step.error.message.startswith(
        "tool 'probe.hold_once': its Ray worker was lost during the call (WorkerCrashedError: "
    )
    assert step.error.message.endswith("not run again because the tool is not idempotent")


async def test_a_call_on_a_node_that_leaves_is_placed_again(
    probes: ToolRegistry, ray_settings: Settings, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    leaving = ray_cluster.start_node("node_flex")
    pid_file = tmp_path / "pid"
    executor = Executor(probes, settings=ray_settings, journal=None)
    first_node: list[str] = []

    async def replace_the_node() -> None:
        await wait_for_file(pid_file)
        first_node.append(node_ids()["node_flex"])
        ray_cluster.kill_node(leaving)
        await anyio.to_thread.run_sync(ray_cluster.start_node, "node_flex")

    flex = {
        "id": "flex",
        "tool": "probe.hold",
        "args": {"pid_file": str(pid_file)},
        "resources": {"node_flex": 1},
    }
    step = (await run_while(executor, plan(flex), replace_the_node)).steps["flex"]
    assert step.status is StepStatus.SUCCEEDED, step.error
    assert step.output["node"] != first_node[0]


async def test_a_timeout_ends_the_task_and_its_worker(
    probes: ToolRegistry, ray_settings: Settings, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    result = await Executor(probes, settings=ray_settings, journal=None).run(
        plan(
            {
                "id": "slow",
                "tool": "probe.hold",
                "args": {"pid_file": str(pid_file), "seconds": 300},
                "timeout": "2s",
            }
        )
    )
    assert time.monotonic() - started < 120  # far below the tool's 300 s
    step = result.steps["slow"]
    assert step.error.failure_mode is FailureMode.TIMEOUT
    await _gone(int(pid_file.read_text()))


async def test_cancelling_a_run_cancels_its_ray_tasks(
    probes: ToolRegistry, ray_settings: Settings, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    executor = Executor(probes, settings=ray_settings, journal=None)
    pids: list[int] = []

    async def cancel_when_started() -> None:
        pids.append(await wait_for_file(pid_file))
        executor.cancel("to-cancel")

    slow = {"id": "slow", "tool": "probe.hold", "args": {"pid_file": str(pid_file), "seconds": 300}}
    result = await run_while(executor, plan(slow), cancel_when_started, run_id="to-cancel")
    assert result.status is RunStatus.CANCELLED
    assert result.steps["slow"].error.failure_mode is FailureMode.CANCELLED
    await _gone(pids[0])


async def _gone(pid: int) -> None:
    with anyio.fail_after(60):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await anyio.sleep(0.05)


def test_an_unreachable_cluster_is_a_clear_error_at_once() -> None:
    backend = RayBackend(RaySettings(address="127.0.0.1:9"))
    started = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        backend.start()
    assert time.monotonic() - started < 30
    assert str(caught.value) == (
        "cannot reach the Ray cluster at 127.0.0.1:9 (Connection refused); start one with "
        "`ray start --head` or set ray.address (DAGENTIC_RAY__ADDRESS) to its head"
    )


# Ray Client's message when the server the head starts for a client died (ray#63202)
CLIENT_SERVER_DIED = (
    "Initialization failure from server:\nTraceback (most recent call last):\n"
    '  File "proxier.py", line 769, in Datapath\n'
    "RuntimeError: Starting Ray client server failed. See ray_client_server_23000.err for "
    "detailed logs.\n"
)


def fake_init(monkeypatch: pytest.MonkeyPatch, *errors: BaseException) -> list[dict[str, Any]]:
    """ray.init raising ``errors`` one per call, then connecting; the calls it got."""
    import ray

    calls: list[dict[str, Any]] = []
    pending = list(errors)

    def init(**options: Any) -> None:
        calls.append(options)
        if pending:
            raise pending.pop(0)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    return calls


def test_a_ray_client_server_that_died_at_its_start_is_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagentic.ray_backend.cluster import connect

    settings = RaySettings(address="auto")
    calls = fake_init(monkeypatch, *[ConnectionAbortedError(CLIENT_SERVER_DIED)] * 2)
    connect(settings)
    assert len(calls) == 3

    calls = fake_init(monkeypatch, *[ConnectionAbortedError(CLIENT_SERVER_DIED)] * 3)
    with pytest.raises(ClusterError) as caught:
        connect(settings)
    assert len(calls) == 3
    assert str(caught.value) == (
        "cannot use the Ray cluster at auto: ConnectionAbortedError: Initialization failure "
        "from server: RuntimeError: Starting Ray client server failed. See "
        "ray_client_server_23000.err for detailed logs.; Ray's client server died as it "
        "started 3 times (ray-project/ray#63202): start the head with "
        "GRPC_ENABLE_FORK_SUPPORT=false in its environment, or use the head's GCS address "
        "(HOST:6379) instead of ray://"
    )


def test_other_ray_client_failures_are_not_retried_and_name_the_heads_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagentic.ray_backend.cluster import connect

    other = ConnectionAbortedError(
        "Initialization failure from server:\nTraceback (most recent call last):\n"
        "ValueError: runtime_env " + "x" * 1000
    )
    calls = fake_init(monkeypatch, other)
    with pytest.raises(ClusterError) as caught:
        connect(RaySettings(address="auto"))
    assert len(calls) == 1
    assert str(caught.value) == (
        "cannot use the Ray cluster at auto: ConnectionAbortedError: Initialization failure "
        "from server: " + ("ValueError: runtime_env " + "x" * 1000)[:300]
    )


async def test_a_call_no_node_can_take_fails_at_once_naming_the_resource(
    probes: ToolRegistry, ray_settings: Settings
) -> None:
    result = await Executor(probes, settings=ray_settings, journal=None).run(
        plan({"id": "gpu", "tool": "probe.where", "resources": {"gpu_a100": 1}})
    )
    error = result.steps["gpu"].error
    assert error.failure_mode is FailureMode.TOOL_ERROR
    assert error.message.startswith(
        "tool 'probe.where' needs {gpu_a100: 1} of one node, and no node of the Ray cluster "
        "offers that (they offer: CPU, "
    )
    assert error.message.endswith(
        "; give a node the resource (ray start --resources), or change the step's resources: "
        "or ray.tool_resources"
    )


@tool(name="probe.counter", side_effects="none", stateful=True)
def counter() -> dict[str, int]:
    """Count this process's calls (state an actor keeps; in the environment, as the test
    module travels by value and its globals with it)."""
    calls = int(os.environ.get("PROBE_CALLS", "0")) + 1
    os.environ["PROBE_CALLS"] = str(calls)
    return {"calls": calls, "pid": os.getpid()}


async def test_a_stateful_tools_calls_go_to_one_actor_that_keeps_its_state(
    tools: ToolRegistry, ray_settings: Settings
) -> None:
    executor = Executor(ToolRegistry([*tools, counter]), settings=ray_settings, journal=None)
    results = [await executor.run(plan({"id": "c", "tool": "probe.counter"})) for _ in range(3)]
    outputs = [r.steps["c"].output for r in results]
    assert [o["calls"] for o in outputs] == [1, 2, 3]
    assert len({o["pid"] for o in outputs}) == 1
