"""`dagentic run --backend ray` as a user runs it: plans/revenue.yaml on the test cluster
gives the outputs it gives in process, and an unreachable cluster is a clear error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_cluster import ROOT, RayCluster

DAGENTIC = str(Path(sys.executable).with_name("dagentic"))


def dagentic(
    *args: str, env: dict[str, str], cwd: Path, netns: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [DAGENTIC, *args]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    return subprocess.run(command, env=env, cwd=cwd, text=True, capture_output=True, timeout=600)


def test_revenue_gives_the_same_outputs_on_ray_as_in_process(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    env = {
        **ray_cluster.env,
        "DAGENTIC_RUNS_DIR": str(tmp_path / "runs"),
        "DAGENTIC_JOURNAL__ENABLED": "false",
    }
    env.pop("PYTHONPATH", None)
    plan = str(ROOT / "plans" / "revenue.yaml")
    local = dagentic("run", plan, "--json", "--backend", "process", env=env, cwd=ROOT)
    assert local.returncode == 0, local.stderr
    remote = dagentic(
        "run",
        plan,
        "--json",
        "--backend",
        "ray",
        env={**env, "DAGENTIC_RAY__ADDRESS": ray_cluster.address},
        cwd=ROOT,
        netns=ray_cluster.name,
    )
    assert remote.returncode == 0, remote.stderr
    on_ray, in_process = json.loads(remote.stdout), json.loads(local.stdout)
    for outputs in (on_ray["outputs"], in_process["outputs"]):
        for page in outputs["news"]:
            page.pop("retrieved_at")  # when the search ran: the one thing that differs
    assert on_ray["outputs"] == in_process["outputs"]
    assert on_ray["outputs"]  # the plan's answer, not nothing
    traced = dagentic("trace", on_ray["run_id"], env=env, cwd=ROOT)
    assert traced.returncode == 0, traced.stderr
    # under each step, where its call ran
    assert re.search(r"\n  ray task +node [0-9a-f]{8} pid \d+ ", traced.stdout), traced.stdout


def test_a_ray_client_address_runs_the_plan_and_its_trace_joins(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    env = {
        **ray_cluster.env,
        "DAGENTIC_RUNS_DIR": str(tmp_path / "runs"),
        "DAGENTIC_JOURNAL__ENABLED": "false",
        "DAGENTIC_RAY__ADDRESS": ray_cluster.client_address,
    }
    env.pop("PYTHONPATH", None)
    plan = str(ROOT / "plans" / "hello.yaml")
    done = dagentic(
        "run", plan, "--json", "--backend", "ray", env=env, cwd=ROOT, netns=ray_cluster.name
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outputs"]["summary"] == "greeted 3 people"
    traced = dagentic("trace", result["run_id"], env=env, cwd=ROOT)
    assert traced.returncode == 0, traced.stderr
    assert len(re.findall(r"\n  ray task +node [0-9a-f]{8} pid \d+ ", traced.stdout)) == 4


@pytest.mark.parametrize("address", ["127.0.0.1:9", "ray://127.0.0.1:9"])
def test_an_unreachable_cluster_stops_the_run_before_it_starts(
    tmp_path: Path, address: str
) -> None:
    env = {**os.environ, "DAGENTIC_RAY__ADDRESS": address, "DAGENTIC_RUNS_DIR": str(tmp_path)}
    done = dagentic(
        "run", str(ROOT / "plans" / "hello.yaml"), "--backend", "ray", env=env, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot reach the Ray cluster at {address} (Connection refused); start one "
        "with `ray start --head` or set ray.address (DAGENTIC_RAY__ADDRESS) to its head\n"
    )
